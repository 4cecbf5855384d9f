"""One storage URL for everything: the staged Parquet, checkpoints, quarantine files, stage
reports and the GX project with its Data Docs all go to ``CUTOVER_STAGING``, through the same
code path for ``s3://`` (moto's S3 server on loopback, ``tests/s3_server.py``) and ``file://``.

A cut-down sample (about 50 users) runs through the library's stages (prepare, backfill,
validate) under a contract of its own; the objects are then listed with boto3 against the S3
endpoint (files with os.walk for file://), and the panel's Data Docs route serves the site
from the same storage."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from tests.dynamo_tables import drop_tables
from tests.s3_server import S3Storage

from cutover.contract.load import load_contract
from cutover.contract.model import Contract
from cutover.db import connect
from cutover.extract.staging import Staging
from cutover.sample.generator import load_sample
from cutover.settings import LOCAL_DIR, PROJECT_ROOT, Settings
from cutover.stages import run_backfill, run_prepare, run_validate
from cutover.summary import demo_summary
from cutover.validate.suites import GxWorkspace

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb, pytest.mark.s3]


def _project(name: str) -> str:
    """The contract's GX project under the storage URL (GX keeps it in a gx/ of its root)."""
    return f"gx/{name}/gx"


def _site(name: str) -> str:
    return f"{_project(name)}/uncommitted/data_docs/local_site"


SESSION_STAGING = os.environ["CUTOVER_STAGING"]  # tests/conftest.py's, a file:// one
_SHRINK = [
    "DELETE FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE user_id > 50)",
    "DELETE FROM orders WHERE user_id > 50",
    "DELETE FROM shopping_carts WHERE user_id > 50",
    "DELETE FROM order_items WHERE product_id > 80",
    "DELETE FROM shopping_carts WHERE product_id > 80",
    "DELETE FROM products WHERE id > 80",
    "DELETE FROM users WHERE id > 50 AND id NOT IN "
    "(SELECT seller_id FROM products WHERE seller_id IS NOT NULL)",
]


@pytest.fixture(scope="module")
def sample(settings: Settings) -> Iterator[Settings]:
    """The sample database of this module, cut down; dropped afterwards."""
    name = f"cutover_storage_{uuid.uuid4().hex[:6]}"
    own = replace(settings, mysql=settings.mysql.with_database(name))
    load_sample(own, scale=1)
    conn = connect(own.mysql)
    try:
        with conn.cursor() as cur:
            for statement in _SHRINK:
                cur.execute(statement)
        conn.commit()
    finally:
        conn.close()
    try:
        yield own
    finally:
        admin = connect(settings.mysql, database=False)
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@dataclass
class Migrated:
    """The sample migrated under a contract of its own, with everything under ``url``."""

    url: str
    contract: Contract
    contract_path: Path
    settings: Settings
    started: float
    reports: dict[str, dict[str, Any]]

    @property
    def name(self) -> str:
        return self.contract.name

    @property
    def staging(self) -> Staging:
        return Staging(self.url)


def _migrate(sample: Settings, url: str, tmp: Path) -> Migrated:
    doc = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    doc["cutover"]["name"] = f"storage_{uuid.uuid4().hex[:6]}"
    path = tmp / f"{doc['cutover']['name']}.json"
    path.write_text(json.dumps(doc))
    contract = load_contract(path)
    own = replace(sample, staging=url, table_prefix=f"{sample.table_prefix}{contract.name}_")
    started = time.time()
    reports = {
        "prepare": run_prepare(contract, own),
        "backfill": run_backfill(contract, own),
        "validate": run_validate(contract, own),
    }
    return Migrated(url, contract, path, own, started, reports)


def _drop_tables(ddb: Any, prefix: str) -> None:
    drop_tables(ddb, prefix)


@pytest.fixture(scope="module")
def on_s3(
    sample: Settings, s3_storage_url: S3Storage, ddb: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Migrated]:
    migrated = _migrate(sample, s3_storage_url.url, tmp_path_factory.mktemp("s3_contract"))
    yield migrated
    _drop_tables(ddb, migrated.settings.table_prefix)
    shutil.rmtree(GxWorkspace(migrated.staging, migrated.name).root, ignore_errors=True)


@pytest.fixture(scope="module")
def on_disk(
    sample: Settings, ddb: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Migrated]:
    url = tmp_path_factory.mktemp("storage").as_uri()
    migrated = _migrate(sample, url, tmp_path_factory.mktemp("file_contract"))
    yield migrated
    _drop_tables(ddb, migrated.settings.table_prefix)


def _expected_layout(keys: list[str], m: Migrated) -> None:
    """The layout under the storage URL: the run's files, the reports and the GX project."""
    run = f"{m.name}/runs/{m.reports['backfill']['run_id']}/"
    assert any(k.startswith(run + "extract/") and k.endswith(".parquet") for k in keys), keys
    assert any(k.startswith(run + "checkpoints/") and k.endswith(".json") for k in keys), keys
    assert run + "plan.json" in keys and run + "manifest.json" in keys
    if m.reports["backfill"]["quarantined"]:
        assert any(k.startswith(run + "quarantine/") for k in keys), keys
    for stage in ("prepare", "backfill", "validate"):
        assert f"reports/{m.name}/{stage}.json" in keys
    assert f"{_project(m.name)}/great_expectations.yml" in keys
    assert f"{_site(m.name)}/index.html" in keys
    # its own project: its validation results are under gx/<contract>/ only (other tests of
    # the session share the bucket, so other contracts' projects may sit beside it)
    own = [k for k in keys if k.startswith("gx/") and f"/validations/{m.name}/" in k]
    assert own and all(k.startswith(f"gx/{m.name}/") for k in own), own
    # GX writes a suite's pages in a folder per dotted part of its name <contract>.<table>.<kind>
    pages = [k for k in keys if k.startswith(f"{_site(m.name)}/validations/{m.name}/")]
    site = [k for k in keys if k.startswith(_site(m.name))]
    assert len(pages) >= len(m.contract.tables) * 2, site  # a parity and an independent suite
    results = f"{_project(m.name)}/uncommitted/validations/{m.name}/"
    assert any(k.startswith(results) for k in keys), keys


def _nothing_written_locally(m: Migrated) -> None:
    """No report nor GX file of this run outside the storage URL (the layout before it), nor
    in the session's own storage URL (tests/conftest.py's)."""
    session = Staging(SESSION_STAGING)
    assert not session.exists("reports", m.name) and not session.exists(m.name)
    assert not (LOCAL_DIR / "reports" / m.name).exists()
    gx = LOCAL_DIR / "gx"
    if gx.exists():
        fresh = [p for p in gx.rglob("*") if p.is_file() and p.stat().st_mtime >= m.started]
        assert not fresh, fresh[:5]


def _client(m: Migrated, monkeypatch: pytest.MonkeyPatch, contracts: Path) -> Any:
    """The panel's app with a reader who may read every contract, listing only ``m``'s
    contract, its storage URL in the environment (where the panel takes it from)."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from cutover.panel import access
    from cutover.panel import app as panel_app

    monkeypatch.setattr(panel_app, "_contracts_dir", lambda: contracts)
    monkeypatch.setattr(access, "can_read", lambda user, entry: True)
    monkeypatch.setenv("CUTOVER_STAGING", m.url)
    mysql = m.settings.mysql
    monkeypatch.setenv("CUTOVER_MYSQL_URL", f"mysql://{mysql.user}@{mysql.host}:{mysql.port}/x")
    app = panel_app.create_app()
    app.dependency_overrides[get_user] = lambda: object()
    return TestClient(app)


def _panel_serves_the_site(m: Migrated, monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    contracts = tmp / "contracts"
    contracts.mkdir()
    shutil.copy(m.contract_path, contracts)
    client = _client(m, monkeypatch, contracts)
    base = f"/contracts/{m.name}/datadocs"
    index = client.get(f"{base}/index.html")
    assert index.status_code == 200, index.text
    assert f"{m.name}." in index.text and "/migrations/assets/" in index.text
    page = next(
        k
        for k in sorted(m.staging.files(*_site(m.name).split("/")))
        if k.startswith(f"validations/{m.name}/") and k.endswith(".html")
    )
    assert client.get(f"{base}/{page}").status_code == 200
    other = page.replace(f"validations/{m.name}/", "validations/other/", 1)
    assert client.get(f"{base}/{other}").status_code == 404
    # the contract's pages only, and nothing outside the site (.. sent encoded, not resolved)
    escape = client.get(f"{base}/static/%2E%2E/%2E%2E/%2E%2E/great_expectations.yml")
    assert escape.status_code == 404, escape.text


# --- s3:// ----------------------------------------------------------------------------------


def test_every_file_of_a_migration_is_an_object_in_the_bucket(
    on_s3: Migrated, s3_storage_url: S3Storage
) -> None:
    keys = s3_storage_url.keys()
    _expected_layout(keys, on_s3)
    _nothing_written_locally(on_s3)
    validate = on_s3.reports["validate"]
    assert validate["success"], [t["parity"]["differences"][:3] for t in validate["tables"]]
    for stage, report in on_s3.reports.items():
        assert report["report"] == f"{s3_storage_url.url}/reports/{on_s3.name}/{stage}.json"
    assert validate["data_docs"] == f"{s3_storage_url.url}/{_site(on_s3.name)}/index.html"
    # what was written is what the stage returned
    written = on_s3.staging.read_json("reports", on_s3.name, "backfill.json")
    assert written["items_loaded"] == on_s3.reports["backfill"]["items_loaded"] > 0
    assert written["quarantine_files"].startswith(f"{s3_storage_url.url}/{on_s3.name}/runs/")


def test_a_person_is_shown_the_s3_uris(on_s3: Migrated) -> None:
    lines = demo_summary(on_s3.staging, on_s3.name, next_step=False)
    text = "\n".join(lines)
    assert f"reports:   {on_s3.url}/reports/{on_s3.name}/{{prepare,backfill,validate}}.json" in (
        text
    )
    assert f"data docs: {on_s3.url}/{_site(on_s3.name)}/index.html" in text


def test_validation_results_accumulate_in_the_bucket_without_the_local_cache(
    on_s3: Migrated, s3_storage_url: S3Storage
) -> None:
    """The GX project comes down from the bucket before a validation: with the local cache
    gone, a second validation's Data Docs still list the first one's results."""
    table = on_s3.contract.tables[0].table
    runs = f"{_project(on_s3.name)}/uncommitted/validations/{on_s3.name}/{table}/parity/"
    before = {k for k in s3_storage_url.keys(runs) if k.endswith(".json")}
    assert len(before) == 1, before
    shutil.rmtree(GxWorkspace(on_s3.staging, on_s3.name).root)
    report = run_validate(on_s3.contract, on_s3.settings)
    after = {k for k in s3_storage_url.keys(runs) if k.endswith(".json")}
    assert len(after) == 2 and before < after, after
    index = on_s3.staging.read_text(*_site(on_s3.name).split("/"), "index.html")
    for key in after:  # both results are listed by the rebuilt index
        run_name = key.split("/")[-3]
        assert run_name in index, run_name
    assert report["data_docs"] == f"{on_s3.url}/{_site(on_s3.name)}/index.html"


def test_the_panel_serves_the_data_docs_from_the_bucket(
    on_s3: Migrated, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _panel_serves_the_site(on_s3, monkeypatch, tmp_path)


def test_an_unreachable_bucket_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from cutover.errors import CutoverError

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CutoverError) as caught:
        Staging("s3://cutover-nowhere/prefix").write_text("x", "probe.txt")
    assert "s3://cutover-nowhere/prefix" in str(caught.value)


# --- file:// --------------------------------------------------------------------------------


def test_a_file_url_gets_the_same_layout(on_disk: Migrated) -> None:
    root = Path(on_disk.url.removeprefix("file://"))
    files = sorted(
        (Path(d) / f).relative_to(root).as_posix() for d, _, names in os.walk(root) for f in names
    )
    _expected_layout(files, on_disk)
    _nothing_written_locally(on_disk)
    for stage, report in on_disk.reports.items():
        assert report["report"] == f"{on_disk.url}/reports/{on_disk.name}/{stage}.json"
    assert (
        on_disk.reports["validate"]["data_docs"]
        == f"{on_disk.url}/{_site(on_disk.name)}/index.html"
    )
    lines = demo_summary(on_disk.staging, on_disk.name, next_step=False)
    assert f"data docs: {root}/{_site(on_disk.name)}/index.html" in "\n".join(lines)


def test_the_panel_serves_the_data_docs_from_a_file_url(
    on_disk: Migrated, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _panel_serves_the_site(on_disk, monkeypatch, tmp_path)
