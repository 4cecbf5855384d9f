"""Which backfill run is resumed: runs ordered by the time they were planned (never by the
text of their ids), the contract's hash and the plan's settings checked on resume, and the
CLI's choice (--resume RUN_ID, --new, neither). Plans are planted in a local staging area."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from cutover.backfill.checkpoints import list_runs
from cutover.backfill.driver import choose_run
from cutover.backfill.plan import RunRefused, contract_sha256, planned_settings
from cutover.backfill.run import BackfillRun
from cutover.contract.load import parse_contract
from cutover.contract.model import Contract
from cutover.extract.staging import Staging
from cutover.settings import MySQLSettings, Settings

DOC: dict[str, Any] = {
    "cutover": {"name": "widgets"},
    "tables": [
        {
            "table": "Widgets",
            "type": "single-entity",
            "source_table": "widgets",
            "pk": "code",
            "attributes": [
                {"name": "code", "type": "S", "source_table": "widgets", "source_column": "code"}
            ],
        }
    ],
}
CONTRACT = parse_contract(DOC)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
# as text "af-..." sorts after "2026...": a run found by name would be the Airflow one
CLI_ID = "20260301T130000Z-abc123"
AF_ID = "af-manual__2026-03-01T12_00_00+00_00"


def _settings(tmp_path: Path, *, database: str = "shop", prefix: str = "p_") -> Settings:
    return Settings.from_parts(
        mysql=MySQLSettings.from_url(f"mysql://root:secret@127.0.0.1:3306/{database}"),
        dynamodb_endpoint="http://127.0.0.1:8001",
        env={"CUTOVER_STAGING": (tmp_path / "staging").as_uri(), "CUTOVER_TABLE_PREFIX": prefix},
    )


def _plant(
    settings: Settings,
    run_id: str,
    planned_at: dt.datetime,
    *,
    finished_at: dt.datetime | None = None,
    contract: Contract = CONTRACT,
    partitions: int | None = None,
    legacy: bool = False,
) -> None:
    """A run as BackfillRun.plan (and finish) leave it."""
    staging = Staging(settings.staging)
    doc: dict[str, Any] = {
        "run_id": run_id,
        "contract": contract.name,
        "planned_at": planned_at.isoformat(),
        "high_water_marks": {},
        "partitions": [
            {"table": "Widgets", "entity_type": "WIDGETS", "index": 0, "lower": None, "upper": None}
        ],
    }
    if not legacy:
        doc["contract_sha256"] = contract_sha256(contract)
        doc["settings"] = planned_settings(settings, partitions)
    staging.write_json(doc, contract.name, "runs", run_id, "plan.json")
    if finished_at is not None:
        staging.write_json(
            {"run_id": run_id, "finished_at": finished_at.isoformat()},
            contract.name,
            "runs",
            run_id,
            "manifest.json",
        )


def test_the_contract_hash_ignores_layout_and_sees_every_change() -> None:
    reordered = parse_contract(dict(reversed(list(DOC.items()))))
    assert contract_sha256(reordered) == contract_sha256(CONTRACT)
    changed = parse_contract({**DOC, "cutover": {"name": "widgets", "gate": {
        "max_quarantined_rows": 3}}})  # fmt: skip
    assert contract_sha256(changed) != contract_sha256(CONTRACT)


def test_runs_are_ordered_by_the_time_they_were_planned_not_by_their_ids(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _plant(settings, AF_ID, T0)
    _plant(settings, CLI_ID, T0 + dt.timedelta(hours=1))
    assert [r.run_id for r in list_runs(CONTRACT, settings)] == [AF_ID, CLI_ID]
    assert BackfillRun(CONTRACT, settings).run_id == CLI_ID

    # the other way round: the Airflow run is the later one
    later = _settings(tmp_path / "other")
    _plant(later, CLI_ID, T0)
    _plant(later, AF_ID, T0 + dt.timedelta(hours=1))
    assert BackfillRun(CONTRACT, later).run_id == AF_ID


def test_a_finished_latest_run_supersedes_older_unfinished_ones(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _plant(settings, "20260301T100000Z-old000", T0 - dt.timedelta(hours=2))
    _plant(settings, CLI_ID, T0, finished_at=T0 + dt.timedelta(minutes=5))
    run = BackfillRun(CONTRACT, settings)
    assert run.run_id not in {CLI_ID, "20260301T100000Z-old000"} and not run.exists()


def test_the_latest_finished_run_is_the_one_that_finished_last(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    # planned first, finished last: its snapshot is the older one loaded over the other
    _plant(settings, AF_ID, T0, finished_at=T0 + dt.timedelta(hours=3))
    _plant(settings, CLI_ID, T0 + dt.timedelta(hours=1), finished_at=T0 + dt.timedelta(hours=2))
    _plant(settings, "20260301T150000Z-open00", T0 + dt.timedelta(hours=3))  # unfinished
    assert BackfillRun.latest_finished(CONTRACT, settings) == AF_ID


def test_resuming_a_run_of_a_changed_contract_is_refused_naming_both_hashes(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    old = parse_contract({**DOC, "tables": [{**DOC["tables"][0], "satisfies": ["by code"]}]})
    _plant(settings, CLI_ID, T0, contract=old)
    run = BackfillRun(CONTRACT, settings)
    assert run.run_id == CLI_ID
    with pytest.raises(RunRefused) as refused:
        run.plan()
    message = str(refused.value)
    assert CLI_ID in message and "--new" in message
    assert contract_sha256(old)[:12] in message and contract_sha256(CONTRACT)[:12] in message
    with pytest.raises(RunRefused):
        run.partitions()  # every step reads the plan through the same check


def test_resuming_with_other_partitions_or_settings_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _plant(settings, CLI_ID, T0, partitions=4)
    assert [p.id for p in BackfillRun(CONTRACT, settings, CLI_ID).plan(4)] == [
        "Widgets.WIDGETS.0000"
    ]
    assert BackfillRun(CONTRACT, settings, CLI_ID).plan(None)  # none given: the plan's
    with pytest.raises(RunRefused, match=r"--partitions 4 .*not --partitions 8.*--new"):
        BackfillRun(CONTRACT, settings, CLI_ID).plan(8)
    moved = _settings(tmp_path, prefix="q_")
    with pytest.raises(RunRefused, match=r"table prefix 'p_'.*'q_'"):
        BackfillRun(CONTRACT, moved, CLI_ID).plan()


def test_a_plan_without_a_contract_hash_is_not_resumed_blindly(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _plant(settings, CLI_ID, T0, legacy=True)
    with pytest.raises(RunRefused, match=r"did not record the contract's hash.*--new"):
        BackfillRun(CONTRACT, settings, CLI_ID).plan()


def test_the_plan_records_its_settings_but_no_password(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    recorded = planned_settings(settings, 3)
    assert recorded["partitions"] == 3
    assert recorded["mysql"] == {"host": "127.0.0.1", "port": 3306, "user": "root",
                                 "database": "shop"}  # fmt: skip
    assert recorded["table_prefix"] == "p_" and recorded["staging"] == settings.staging
    assert "secret" not in repr(recorded)


def test_choose_run_default_resume_and_new(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    af = re.escape(AF_ID)
    assert not choose_run(CONTRACT, settings).exists()  # no run yet: a new one

    _plant(settings, CLI_ID, T0, finished_at=T0 + dt.timedelta(minutes=1))
    _plant(settings, AF_ID, T0 + dt.timedelta(hours=1))
    with pytest.raises(RunRefused, match=rf"{af}.*backfill DAG.*--resume {af}.*--new"):
        choose_run(CONTRACT, settings)  # the DAG's unfinished run is left to the DAG
    assert choose_run(CONTRACT, settings, run_id=AF_ID).run_id == AF_ID
    with pytest.raises(RunRefused, match=rf"{CLI_ID} .*finished.*--new"):
        choose_run(CONTRACT, settings, run_id=CLI_ID)
    with pytest.raises(RunRefused, match=r"no planned run 'nope'.*--new"):
        choose_run(CONTRACT, settings, run_id="nope")
    fresh = choose_run(CONTRACT, settings, fresh=True)
    assert fresh.run_id not in {CLI_ID, AF_ID} and not fresh.exists()

    _plant(settings, "20260301T150000Z-open00", T0 + dt.timedelta(hours=2))
    assert choose_run(CONTRACT, settings).run_id == "20260301T150000Z-open00"
