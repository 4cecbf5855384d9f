"""Great Expectations is the engine of record: suites live in expectations/<contract>/ as
JSON (generated from the contract when missing, then editable) and run with GX Core over the
parity and independent-check figures; results land in GX's Data Docs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from cutover.contract.model import Contract, Table
from cutover.settings import LOCAL_DIR, PROJECT_ROOT

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
GX_DIR = LOCAL_DIR / "gx"
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


def gx_dir() -> Path:
    """The GX file context (and its Data Docs): ``CUTOVER_GX_DIR``, else .local/gx."""
    return Path(os.environ.get("CUTOVER_GX_DIR") or GX_DIR)


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
    """One GX file context under .local/gx; validates pandas frames against suites."""

    def __init__(self, root: Path | None = None) -> None:
        root = root or gx_dir()
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
