"""Serve Great Expectations Data Docs without the internet.

GX 1.x Data Docs load bootstrap, jQuery, font-awesome, vega and bootstrap-table from public
CDNs, and the navbar logo from GX's S3 bucket. Behind the panel, on a machine without internet,
the pages would come out unstyled and the index's list of validation results would stay empty,
because that list is drawn by bootstrap-table's JavaScript. So every page is rewritten before it
is served: each CDN URL becomes ``{asset_base}/{asset_name}``, and ``asset_file`` finds that
asset in an installed Python package (pinned in requirements.txt), located lazily from the
package's own location (``importlib.util.find_spec``), so no site-packages path is written here.

Nothing on PyPI ships bootstrap-table (nor its filter-control extension and the
``bootstrap-prefers-dark`` theme), so those tags are dropped, and in place of bootstrap-table's
script the page gets a small inline stand-in that draws the same columns and rows as a plain
bootstrap table, sorted as GX asks, each row still linking to its page. What is lost: the
search box, the per-column filters and paging; the dark theme (pages stay light).

The site itself is read from the storage URL (``CUTOVER_STAGING``, ``file://`` or ``s3://``)
through ``Staging``, the same reads for both; ``doc_file`` refuses what is not a plain path
inside the site, and on a local disk a file that a symlink takes outside it.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from cutover.errors import DataDocsNotFound

if TYPE_CHECKING:
    from cutover.extract.staging import Staging


@dataclass(frozen=True)
class AssetRoot:
    """A directory of static files inside an installed package."""

    distribution: str  # the pip name, for the error message when it is missing
    module: str
    subdir: str


@dataclass(frozen=True)
class CdnAsset:
    """One URL the Data Docs load; a URL ending in "/" is a prefix whose rest is kept."""

    url: str
    local: str | None  # the asset name under asset_base; None: no package ships it
    replacement: str = ""  # HTML put in place of a tag whose asset no package ships


# Asset names start with one of these roots; the rest is a path inside the root directory.
ASSET_ROOTS: dict[str, AssetRoot] = {
    "jquery": AssetRoot("xstatic-jquery", "xstatic.pkg.jquery", "data"),
    "bootstrap": AssetRoot("xstatic-bootstrap", "xstatic.pkg.bootstrap", "data"),
    "bootstrap-datepicker": AssetRoot(
        "xstatic-bootstrap-datepicker", "xstatic.pkg.bootstrap_datepicker", "data"
    ),
    # The whole directory, so all.min.css's url(../webfonts/...) resolve beside it.
    "font-awesome": AssetRoot("fontawesomefree", "fontawesomefree", "static/fontawesomefree"),
    "vega": AssetRoot("django-js-lib-vega-embed", "js_lib_vega_embed", "static/js_lib_vega_embed"),
    "gx-images": AssetRoot("great-expectations", "great_expectations", "render/view/static/images"),
}

# A stand-in for bootstrap-table: GX calls $(table).bootstrapTable({columns, data, ...}) and
# listens for click-row.bs.table; method calls such as 'resetSearch' do nothing here.
_TABLE_FALLBACK_JS = """
(function ($) {
  if (!$ || $.fn.bootstrapTable) { return; }
  function named(f) { f = typeof f === "function" ? f : window[f];
    return typeof f === "function" ? f : function () { return null; }; }
  function sortKey(o) {
    var col = (o.columns || []).filter(function (c) { return c.field === o.sortName; })[0];
    return (col && col.sortName) || o.sortName;
  }
  $.fn.bootstrapTable = function (o) {
    if (!o || typeof o !== "object") { return this; }
    var rows = (o.data || []).slice(), key = sortKey(o);
    if (key) {
      rows.sort(function (a, b) { return a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0; });
    }
    if (key && o.sortOrder === "desc") { rows.reverse(); }
    return this.each(function () {
      var $t = $(this).addClass("table table-bordered table-hover"), $h = $("<tr>"),
        $b = $("<tbody>");
      $.each(o.columns || [], function (_, c) { $h.append($("<th>").text(c.title || c.field)); });
      $.each(rows, function (i, row) {
        var $r = $("<tr>"), attrs = named(o.rowAttributes)(row, i) || {},
          style = named(o.rowStyle)(row, i) || {};
        $.each(attrs, function (k, v) { $r.attr(k, v); });
        $r.css(style.css || {}).addClass(style.classes || "");
        $.each(o.columns || [], function (_, c) {
          var v = row[c.field];
          $r.append($("<td>").css("text-align", c.align || "").html(v == null ? "" : String(v)));
        });
        $r.on("click", function () { $t.trigger("click-row.bs.table", [row, $r]); });
        $b.append($r);
      });
      $t.empty().append($("<thead>").append($h), $b);
    });
  };
})(window.jQuery);
"""

_GX_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"

# Every external asset the GX 1.24 Data Docs templates load (tests/unit/test_panel_datadocs.py
# fails when GX adds one that is not here).
CDN_ASSETS: tuple[CdnAsset, ...] = (
    CdnAsset("https://code.jquery.com/jquery-3.7.1.min.js", "jquery/jquery.min.js"),
    CdnAsset(
        "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css",
        "bootstrap/css/bootstrap.min.css",
    ),
    # The bundle carries Popper 1.x, which no package ships on its own; the page gets it once,
    # where popper was loaded, and the second tag (bootstrap.min.js) is dropped as a duplicate.
    CdnAsset(
        "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js",
        "bootstrap/js/bootstrap.bundle.min.js",
    ),
    CdnAsset(
        "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js",
        "bootstrap/js/bootstrap.bundle.min.js",
    ),
    CdnAsset("https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/", "font-awesome/"),
    CdnAsset(
        "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
        "bootstrap-datepicker.min.css",
        "bootstrap-datepicker/bootstrap-datepicker.standalone.css",
    ),
    CdnAsset(
        "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
        "bootstrap-datepicker.min.js",
        "bootstrap-datepicker/bootstrap-datepicker.js",
    ),
    CdnAsset("https://cdn.jsdelivr.net/npm/vega@5", "vega/vega5.js"),
    CdnAsset("https://cdn.jsdelivr.net/npm/vega-lite@5", "vega/vega-lite5.js"),
    CdnAsset("https://cdn.jsdelivr.net/npm/vega-embed@6", "vega/vega-embed6.js"),
    # The dark-mode logo: pages stay light without bootstrap-prefers-dark, so the light one fits.
    CdnAsset(_GX_IMAGES + "full_logo_dark.png", "gx-images/logo-long.png"),
    CdnAsset(_GX_IMAGES, "gx-images/"),
    CdnAsset(
        "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js",
        None,
        f"<script>{_TABLE_FALLBACK_JS}</script>",
    ),
    CdnAsset("https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css", None),
    CdnAsset(
        "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
        "bootstrap-table-filter-control.min.js",
        None,
    ),
    CdnAsset(
        "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
        "bootstrap-table-filter-control.min.css",
        None,
    ),
    CdnAsset(
        "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
        "bootstrap-table-filter-control.css",
        None,
    ),
    CdnAsset(
        "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
        "bootstrap-prefers-dark.css",
        None,
    ),
)

_EXTERNAL = re.compile(r"^(?:https?:)?//", re.IGNORECASE)
_SCRIPT_TAG = re.compile(r"<script\b[^>]*>\s*</script\s*>", re.IGNORECASE)
_LINK_OR_IMG_TAG = re.compile(r"<(?:link|img)\b[^>]*>", re.IGNORECASE)
_URL_ATTR = re.compile(r"\b(?:src|href)\s*=\s*([\"'])(.*?)\1", re.IGNORECASE | re.DOTALL)
_SRI_ATTR = re.compile(
    r"\s+(?:integrity|crossorigin)(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?", re.IGNORECASE
)
_CSS_URL = re.compile(r"url\(\s*([\"']?)((?:https?:)?//[^\"')\s]+)\1\s*\)", re.IGNORECASE)


def asset_names() -> tuple[str, ...]:
    """The asset files the rewritten pages load by name (prefix entries are left out)."""
    names = (a.local for a in CDN_ASSETS if a.local and not a.local.endswith("/"))
    return tuple(dict.fromkeys(names))


def cdn_asset(url: str) -> tuple[CdnAsset, str | None] | None:
    """The table entry for an external URL and the asset name it becomes; None if unknown."""
    if not _EXTERNAL.match(url):
        return None
    key = re.split(r"[?#]", "https:" + url if url.startswith("//") else url, maxsplit=1)[0]
    for entry in CDN_ASSETS:
        if entry.url == key:
            return entry, entry.local
    prefixes = [e for e in CDN_ASSETS if e.url.endswith("/") and key.startswith(e.url)]
    if not prefixes:
        return None
    entry = max(prefixes, key=lambda e: len(e.url))
    rest = key[len(entry.url) :]
    if not rest:
        return None  # the bare prefix names no file
    return entry, (entry.local + rest if entry.local is not None else None)


def rewrite_html(html: str, asset_base: str) -> str:
    """The page with every known CDN asset taken from ``{asset_base}/{asset_name}``.

    Script, stylesheet and image tags are rewritten (their integrity attributes dropped, since
    the local file is another build); a script already loaded earlier is not loaded twice; tags
    of assets no package ships are removed or replaced by their stand-in; CSS url() references
    in inline styles are rewritten too. Links (<a href>) and unknown URLs are left alone.
    """
    base = asset_base.rstrip("/")
    loaded: set[str] = set()

    def script(match: re.Match[str]) -> str:
        return _rewrite_tag(match.group(0), base, loaded)

    def link_or_img(match: re.Match[str]) -> str:
        return _rewrite_tag(match.group(0), base, None)

    html = _SCRIPT_TAG.sub(script, html)
    html = _LINK_OR_IMG_TAG.sub(link_or_img, html)
    return _CSS_URL.sub(lambda m: _rewrite_css_url(m, base), html)


def _rewrite_tag(tag: str, base: str, loaded: set[str] | None) -> str:
    attr = _URL_ATTR.search(tag)
    found = cdn_asset(attr.group(2)) if attr else None
    if attr is None or found is None:
        return tag
    entry, local = found
    if local is None:
        return entry.replacement
    if loaded is not None:
        if local in loaded:
            return ""
        loaded.add(local)
    tag = tag[: attr.start(2)] + f"{base}/{local}" + tag[attr.end(2) :]
    return _SRI_ATTR.sub("", tag)


def _rewrite_css_url(match: re.Match[str], base: str) -> str:
    found = cdn_asset(match.group(2))
    if found is None:
        return match.group(0)
    local = found[1]
    return f"url('{base}/{local}')" if local else "none"


@cache
def _root_dir(root: str) -> Path:
    """The root's directory, found from the package's location without running the package
    (importing great_expectations would cost seconds on the first asset served)."""
    spec = ASSET_ROOTS[root]
    try:
        found = importlib.util.find_spec(spec.module)
    except ModuleNotFoundError:
        found = None
    if found is None or not found.submodule_search_locations:
        raise DataDocsNotFound(
            f"Data Docs asset root `{root}` needs the package {spec.distribution}, which is not "
            "installed: install requirements.txt"
        )
    directory = Path(next(iter(found.submodule_search_locations))) / spec.subdir
    if not directory.is_dir():
        raise DataDocsNotFound(
            f"Data Docs asset root `{root}`: {spec.distribution} has no {spec.subdir}/ directory; "
            "reinstall the version pinned in requirements.txt"
        )
    return directory.resolve()


def _clean_parts(relpath: str, what: str) -> tuple[str, ...]:
    """The path's parts, refusing empty and absolute paths, '.', '..', backslashes and NULs."""
    path = PurePosixPath(relpath)
    if (
        not relpath
        or path.is_absolute()
        or "\\" in relpath
        or "\x00" in relpath
        or any(p in ("..", ".") for p in relpath.split("/"))
    ):
        raise DataDocsNotFound(f"{what} `{relpath}` is not a plain relative path")
    return path.parts


def _file_inside(root: Path, parts: tuple[str, ...], what: str) -> Path:
    """The file root/parts, refusing one that a symlink takes outside root."""
    name = "/".join(parts)
    file = root.joinpath(*parts).resolve()
    if not file.is_relative_to(root):
        raise DataDocsNotFound(f"{what} `{name}` lies outside its directory")
    if not file.is_file():
        raise DataDocsNotFound(f"{what} `{name}` does not exist")
    return file


def asset_file(name: str) -> Path:
    """The installed file served as ``{asset_base}/{name}``."""
    parts = _clean_parts(name, "Data Docs asset")
    if parts[0] not in ASSET_ROOTS or len(parts) < 2:
        raise DataDocsNotFound(f"Data Docs asset `{name}` is not one the panel serves")
    return _file_inside(_root_dir(parts[0]), parts[1:], "Data Docs asset")


def doc_file(staging: Staging, site: str, relpath: str) -> str:
    """The path, relative to the storage URL, of a file of the Data Docs site in the folder
    ``site`` (relative to the storage URL too); a directory means its index.html."""
    site_parts = tuple(p for p in site.split("/") if p)
    relpath = relpath or "index.html"
    parts = _clean_parts(relpath, "Data Docs page")
    if staging.is_dir(*site_parts, *parts):
        parts = (*parts, "index.html")
    name = "/".join(parts)
    root = staging.local_path(*site_parts)
    if root is not None:  # a local disk: refuse what a symlink takes outside the site
        root = root.resolve()
        if not root.joinpath(*parts).resolve().is_relative_to(root):
            raise DataDocsNotFound(f"Data Docs page `{name}` lies outside its directory")
    if not staging.is_file(*site_parts, *parts):
        raise DataDocsNotFound(f"Data Docs page `{name}` does not exist")
    return "/".join((*site_parts, *parts))


def read_doc(staging: Staging, site: str, relpath: str) -> bytes:
    """The bytes of a file of the Data Docs site (see ``doc_file``)."""
    return staging.read_bytes(doc_file(staging, site, relpath))
