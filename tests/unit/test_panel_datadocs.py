"""Data Docs served offline: every CDN asset the installed GX templates load is taken from an
installed package, and no path outside the asset roots or the site can be asked for."""

from __future__ import annotations

import importlib.util
import posixpath
import re
from pathlib import Path

import pytest

from cutover.errors import CutoverError, DataDocsNotFound
from cutover.panel import datadocs

pytestmark = pytest.mark.unit

BASE = "/migrations/datadocs-assets"
URL = r"(?:https?:)?//[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?:/[^\s\"'<>(){}]*)?"
_ASSET_REF = re.compile(re.escape(BASE) + r"/([^\"'()\s?#]+)")


def _gx_render_dir() -> Path:
    spec = importlib.util.find_spec("great_expectations")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "render"


def _template_snippets(text: str) -> list[tuple[str, str]]:
    """(url, html that loads it) for each external URL of a template or stylesheet; links
    (<a href>, markdown) are skipped, and any other use fails the test so a person looks."""
    found = []
    for match in re.finditer(URL, text):
        url, before = match.group(0), text[: match.start()]
        tag = before[before.rfind("<") :]
        if ">" in tag:
            tag = ""
        if tag.startswith("<a ") or before.endswith("]("):
            continue
        if tag.startswith("<script"):
            found.append((url, f'<script src="{url}"></script>'))
        elif tag.startswith("<link"):
            found.append((url, f'<link rel="stylesheet" href="{url}">'))
        elif tag.startswith("<img"):
            found.append((url, f'<img src="{url}">'))
        elif re.search(r"url\(\s*[\"']?$", before):
            found.append((url, f"<style>p {{ background: url('{url}') }}</style>"))
        elif variable := re.search(r"{%-?\s*set\s+(\w+)\s*=\s*[\"']$", before):
            uses = re.findall(rf"\b{variable.group(1)}\s*\+\s*[\"']([^\"']+)[\"']", text)
            assert uses, f"{url} is set to {variable.group(1)}, which nothing uses"
            found += [(url + name, f'<img src="{url}{name}">') for name in uses]
        else:
            pytest.fail(f"external URL {url} used in a way this test does not know: {tag!r}")
    return found


def _python_snippets(text: str) -> list[tuple[str, str]]:
    tags = re.finditer(rf"<(script|link|img)\b[^>]*?(?:src|href)=\\?[\"']({URL})", text)
    return [(m.group(2), f'<{m.group(1)} src="{m.group(2)}" href="{m.group(2)}">') for m in tags]


def _gx_external_assets() -> list[tuple[str, str]]:
    render = _gx_render_dir()
    found = []
    for path in sorted(render.rglob("*")):
        if path.suffix in (".j2", ".css", ".html"):
            found += _template_snippets(path.read_text(encoding="utf-8"))
        elif path.suffix == ".py":
            found += _python_snippets(path.read_text(encoding="utf-8"))
    return sorted(set(found))


GX_ASSETS = _gx_external_assets()


def test_the_scan_finds_the_known_cdn_assets() -> None:
    urls = {url for url, _ in GX_ASSETS}
    assert len(urls) >= 15
    assert any("jquery" in u for u in urls) and any("bootstrap-table" in u for u in urls)


@pytest.mark.parametrize(("url", "snippet"), GX_ASSETS, ids=[u for u, _ in GX_ASSETS])
def test_every_gx_cdn_asset_is_rewritten_to_an_installed_file(url: str, snippet: str) -> None:
    page = datadocs.rewrite_html(snippet, BASE)
    assert url.split("?")[0] not in page, f"{url} is not mapped in datadocs.CDN_ASSETS"
    names = _ASSET_REF.findall(page)
    if not names:  # dropped on purpose: no package ships it (see the module docstring)
        found = datadocs.cdn_asset(url)
        assert found is not None and found[1] is None
        if url.endswith("/bootstrap-table.min.js"):
            assert "$.fn.bootstrapTable = function" in page
        return
    for name in names:
        file = datadocs.asset_file(name)
        assert file.is_file() and file.stat().st_size > 0, name
        if file.suffix == ".css":
            _assert_css_references_resolve(name, file.read_text(encoding="utf-8"))


def _assert_css_references_resolve(name: str, css: str) -> None:
    """url(...) in a served stylesheet (font-awesome's ../webfonts/...) resolve to assets too."""
    for ref in re.findall(r"url\(\s*[\"']?([^\"')]+)", css):
        if ref.startswith(("data:", "#")):
            continue
        assert not re.match(r"(?:https?:)?//", ref), f"{name} loads {ref}"
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), ref.split("?")[0]))
        assert datadocs.asset_file(target).stat().st_size > 0, f"{name}: {ref}"


def test_every_named_asset_exists() -> None:
    for name in datadocs.asset_names():
        assert datadocs.asset_file(name).stat().st_size > 0


def test_links_relative_urls_and_unknown_hosts_are_left_alone() -> None:
    page = (
        '<a href="https://docs.greatexpectations.io/x">docs</a>'
        '<link rel="shortcut icon" href="./static/images/favicon.ico"/>'
        '<script src="https://example.org/unknown.js"></script>'
    )
    assert datadocs.rewrite_html(page, BASE) == page


def test_integrity_is_dropped_the_bundle_loads_once_and_the_logo_loses_its_query() -> None:
    page = datadocs.rewrite_html(
        '<script src="https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js"'
        ' integrity="sha384-x" crossorigin="anonymous"></script>\n'
        '<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js"'
        ' integrity="sha384-y" crossorigin="anonymous"></script>\n'
        '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png'
        '?d=20250101T000000Z&dataContextId=abc">',
        BASE + "/",
    )
    assert page.count("bootstrap.bundle.min.js") == 1
    assert "integrity" not in page and "crossorigin" not in page
    assert f'src="{BASE}/gx-images/logo-long.png"' in page
    assert "dataContextId" not in page


def test_a_protocol_relative_url_is_rewritten() -> None:
    page = datadocs.rewrite_html(
        '<script src="//code.jquery.com/jquery-3.7.1.min.js"></script>', ""
    )
    assert page == '<script src="/jquery/jquery.min.js"></script>'


@pytest.mark.parametrize(
    "name",
    [
        "",
        "jquery",
        "jquery/",
        "jquery/../bootstrap/css/bootstrap.min.css",
        "../etc/passwd",
        "jquery/../../../../etc/passwd",
        "/etc/passwd",
        "jquery\\..\\x",
        "./jquery/jquery.min.js",
        "jquery/nope.js",
        "font-awesome/css",
        "unknown-root/x.js",
        "jquery/jquery.min.js\x00.png",
    ],
)
def test_asset_file_refuses_unknown_names_and_traversal(name: str) -> None:
    with pytest.raises(DataDocsNotFound) as caught:
        datadocs.asset_file(name)
    assert isinstance(caught.value, CutoverError)


def test_doc_file_serves_site_files_and_refuses_the_rest(tmp_path: Path) -> None:
    from cutover.extract.staging import Staging

    storage = Staging(tmp_path.as_uri())  # a file:// storage URL; the site is in site/
    site = tmp_path / "site"
    (site / "validations").mkdir(parents=True)
    (site / "index.html").write_text("<html>index</html>")
    (site / "validations" / "run.html").write_text("<html>run</html>")
    (site / "expectations").mkdir()
    (site / "expectations" / "index.html").write_text("<html>suites</html>")
    (tmp_path / "secret.txt").write_text("no")
    (site / "escape").symlink_to(tmp_path)
    assert datadocs.doc_file(storage, "site", "index.html") == "site/index.html"
    assert datadocs.doc_file(storage, "site", "") == "site/index.html"
    assert datadocs.doc_file(storage, "site", "validations/run.html") == "site/validations/run.html"
    assert datadocs.read_doc(storage, "site", "validations/run.html") == b"<html>run</html>"
    assert datadocs.doc_file(storage, "site", "expectations") == "site/expectations/index.html"
    for bad in (
        "../secret.txt",
        "validations/../../secret.txt",
        str(tmp_path / "secret.txt"),
        "escape/secret.txt",
        "validations\\..\\..\\secret.txt",
        "missing.html",
        "validations",
    ):
        with pytest.raises(DataDocsNotFound):
            datadocs.doc_file(storage, "site", bad)
        with pytest.raises(DataDocsNotFound):
            datadocs.read_doc(storage, "site", bad)
