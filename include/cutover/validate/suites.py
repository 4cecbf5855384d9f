"""Great Expectations is the engine of record: suites live in expectations/<contract>/ as
JSON (generated from the contract when missing, then editable) and run with GX Core over the
parity and independent-check figures; results land in GX's Data Docs.

Each contract has a GX project of its own (its stores, validation results and Data Docs
site) under the storage URL, ``<CUTOVER_STAGING>/gx/<contract>``, beside the staged files and
the reports: a contract's Data Docs list its own suites and results only, and validations of
two contracts never rebuild the same site. GX's file context works on a local folder only
(its stores and the site builder write with ``open()`` and ``os``), so ``GxWorkspace`` gives
it one: for ``file://`` the storage folder itself, for ``s3://`` a local cache
(``.local/cache/gx/<digest of the URL and contract>``) synced down from the storage before a
validation and the files it wrote synced up after, so results and Data Docs end up at the
storage URL either way. The expectation suites people edit stay in
the project's expectations/ (``CUTOVER_EXPECTATIONS_DIR``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from cutover.contract.model import Contract, Table
from cutover.extract.staging import Staging
from cutover.settings import LOCAL_DIR, PROJECT_ROOT

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
GX = "gx"  # the GX project's folder under the storage URL (GX's own name for it)
GX_CACHE_DIR = LOCAL_DIR / "cache" / "gx"
log = logging.getLogger("cutover.validate")


def suite_name(contract: Contract, table: Table, kind: str) -> str:
    return f"{contract.name}.{table.table}.{kind}"


def default_suites(contract: Contract, table: Table) -> dict[str, dict[str, Any]]:
    mostly = contract.cutover.gate.value_parity_mostly
    parity = [
        {
            "type": "expect_column_pair_values_to_be_equal",
            "kwargs": {"column_A": "expected", "column_B": "actual"},
            "meta": {"why": "every entity has as many items in DynamoDB as MySQL produces"},
        },
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "missing", "min_value": 0, "max_value": 0},
            "meta": {"why": "no key of MySQL is missing in DynamoDB"},
        },
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "extra", "min_value": 0, "max_value": 0},
            "meta": {"why": "DynamoDB holds no key that MySQL does not produce"},
        },
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "value_parity", "min_value": mostly, "max_value": 1},
            "meta": {
                "why": f"at least {mostly:.2%} of the items equal their expected value "
                "(gate.value_parity_mostly)"
            },
        },
    ]
    independent = [
        {
            "type": "expect_column_pair_values_to_be_equal",
            "kwargs": {"column_A": "source_value", "column_B": "export_value"},
            "meta": {"why": "aggregates of the MySQL base tables equal those of the export"},
        },
    ]
    return {
        "parity": {"name": suite_name(contract, table, "parity"), "expectations": parity},
        "independent": {
            "name": suite_name(contract, table, "independent"),
            "expectations": independent,
        },
    }


def expectations_dir() -> Path:
    """Where suites live: ``CUTOVER_EXPECTATIONS_DIR``, else the project's expectations/."""
    return Path(os.environ.get("CUTOVER_EXPECTATIONS_DIR") or EXPECTATIONS_DIR)


def project_folder(contract: str) -> tuple[str, str]:
    """The contract's GX project root, relative to the storage URL: ``gx/<contract>``."""
    return (GX, contract)


class GxWorkspace:
    """The local folder GX's file context works in for one contract at a storage URL (see
    the module doc): ``root`` is the contract's GX project root, ``<storage>/gx/<contract>``
    (GX keeps its project in a ``gx/`` folder of that root)."""

    def __init__(self, staging: Staging, contract: str) -> None:
        self.staging = staging
        self.folder = project_folder(contract)
        local = staging.local_path()
        self.synced = local is None
        if local is None:
            digest = hashlib.sha256(f"{staging.url}\0{contract}".encode()).hexdigest()[:16]
            self.root = GX_CACHE_DIR / digest
        else:
            self.root = local.joinpath(*self.folder)
        self._pulled: dict[str, tuple[int, int]] = {}

    def _local_files(self) -> dict[str, tuple[int, int]]:
        """(size, mtime) of every file of the local project, by path relative to its root."""
        return {
            path.relative_to(self.root).as_posix(): (stat.st_size, stat.st_mtime_ns)
            for path in self.root.rglob("*")
            if path.is_file() and (stat := path.stat())
        }

    def pull(self) -> None:
        """Bring the local folder up to date with ``<storage>/gx/<contract>`` (an S3 storage
        URL: the files missing here or of another size are downloaded)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.synced:
            return
        fetched = 0
        for rel, size in self.staging.files(*self.folder).items():
            target = self.root / rel
            if not target.is_file() or target.stat().st_size != size:
                self.staging.download(rel, target, *self.folder)
                fetched += 1
        self._pulled = self._local_files()
        log.debug("GX project: %d file(s) fetched from %s", fetched, self.staging.uri(*self.folder))

    def push(self) -> None:
        """Upload to ``<storage>/gx/<contract>`` the files GX wrote or changed since ``pull``."""
        if not self.synced:
            return
        now = self._local_files()
        changed = [rel for rel, stamp in now.items() if self._pulled.get(rel) != stamp]
        for rel in changed:
            self.staging.upload(self.root / rel, rel, *self.folder)
        self._pulled = now
        log.debug(
            "GX project: %d file(s) written to %s", len(changed), self.staging.uri(*self.folder)
        )

    def uri(self, local_url: str) -> str:
        """The storage URI of a file GX names by its local ``file://`` URL (the Data Docs
        index); "" for an empty URL."""
        if not local_url:
            return ""
        path = Path(unquote(urlparse(local_url).path)).resolve()
        rel = path.relative_to(self.root.resolve())
        return self.staging.uri(*self.folder, *rel.parts)


def suite_path(contract: Contract, table: Table, kind: str) -> Path:
    return expectations_dir() / contract.name / f"{table.table}.{kind}.json"


def ensure_suites(contract: Contract) -> list[Path]:
    """Write the generated suites that do not exist yet; never overwrite edited ones."""
    written = []
    for table in contract.tables:
        for kind, suite in default_suites(contract, table).items():
            path = suite_path(contract, table, kind)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(suite, indent=2) + "\n")
                written.append(path)
    return written


class GxRunner:
    """One GX file context with its project root at ``root`` (a ``GxWorkspace``'s);
    validates pandas frames against suites."""

    def __init__(self, root: Path) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        import great_expectations as gx

        self.gx = gx
        root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", project_root_dir=str(root))
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.context.variables.save()
        self.source = self.context.data_sources.add_or_update_pandas("cutover")

    def _batch_definition(self, asset_name: str) -> Any:
        try:
            asset = self.source.get_asset(asset_name)
        except LookupError:
            asset = self.source.add_dataframe_asset(name=asset_name)
        try:
            return asset.get_batch_definition("whole")
        except (LookupError, KeyError):
            return asset.add_batch_definition_whole_dataframe("whole")

    def _suite(self, path: Path) -> Any:
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )

        doc = json.loads(path.read_text())
        suite = self.gx.ExpectationSuite(
            name=doc["name"],
            expectations=[
                ExpectationConfiguration(
                    type=e["type"], kwargs=e["kwargs"], meta=e.get("meta")
                ).to_domain_obj()
                for e in doc["expectations"]
            ],
        )
        return self.context.suites.add_or_update(suite)

    def validate(self, path: Path, frame: Any, asset_name: str) -> dict[str, Any]:
        gx = self.gx
        suite = self._suite(path)
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(
                name=suite.name, data=self._batch_definition(asset_name), suite=suite
            )
        )
        checkpoint = self.context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=suite.name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format={"result_format": "COMPLETE"},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        (run,) = result.run_results.values()
        failed = []
        for r in run.results:
            if not r.success:
                failed.append(
                    {
                        "expectation": r.expectation_config.type,
                        "kwargs": {
                            k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"
                        },
                        "unexpected": [
                            _plain(v) for v in (r.result.get("partial_unexpected_list") or [])[:20]
                        ],
                        "unexpected_rows": [
                            int(i)
                            for i in (r.result.get("partial_unexpected_index_list") or [])[:20]
                        ],
                    }
                )
        stats = run.statistics
        return {
            "suite": suite.name,
            "suite_file": str(path),
            "success": bool(run.success),
            "statistics": {k: _plain(v) for k, v in stats.items()},
            "failed_expectations": failed,
        }

    def docs_index(self) -> str:
        sites = self.context.get_docs_sites_urls()
        return sites[0]["site_url"] if sites else ""


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
