"""The Migrations panel in a real `airflow standalone`: the sample contract (under its own
name, in its own database and tables) is prepared, backfilled and validated, then the
panel's pages and JSON API are checked against the phase store and the reports, every route
is refused without a session, with a bad token, and to a user without access to the
contract's DAGs, and a real Chromium (Debian's, driven by Playwright) logs in, opens
Migrations from the navigation and requests an advance that Airflow then holds for
approval."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from tests.airflow_standalone import Api, ApiError, api_server, standalone
from tests.dynamo_tables import drop_tables

from cutover.aws import dynamodb_client
from cutover.contract.load import load_contract
from cutover.db import connect
from cutover.extract.staging import Staging
from cutover.panel import datadocs
from cutover.phases.store import PhaseStore
from cutover.sample.generator import load_sample
from cutover.settings import PROJECT_ROOT, Settings
from cutover.stages import phase_store, read_report, run_backfill, run_prepare, run_validate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.mysql,
    pytest.mark.dynamodb,
    pytest.mark.airflow,
    pytest.mark.browser,
]

CHROMIUM = Path("/usr/bin/chromium")
USERS = {"viewer": ("viewer", "viewer-pass"), "outsider": ("op", "outsider-pass")}


@dataclass
class Panel:
    api: Api
    name: str
    settings: Settings
    store: PhaseStore
    home: Path

    def url(self, path: str) -> str:
        return self.api.base + path


@dataclass
class Prepared:
    name: str
    contracts: Path
    settings: Settings
    env: dict[str, str]


@pytest.fixture(scope="module")
def prepared(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prepared]:
    """The sample contract under its own name, prepared, backfilled and validated."""
    root = tmp_path_factory.mktemp("panel")
    contracts = root / "contracts"
    contracts.mkdir()
    name = f"panel_{uuid.uuid4().hex[:6]}"
    doc = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    doc["cutover"]["name"] = name
    path = contracts / f"{name}.json"
    path.write_text(json.dumps(doc))
    own = replace(
        settings,
        mysql=settings.mysql.with_database(f"cutover_{name}"),
        table_prefix=f"{settings.table_prefix}{name}_",
        staging=(root / "staging").as_uri(),
    )
    contract = load_contract(str(path))
    load_sample(own, scale=1)
    run_prepare(contract, own)
    run_backfill(contract, own, partitions=2)
    run_validate(contract, own)
    m = own.mysql
    env = {
        "CUTOVER_MYSQL_URL": f"mysql://{m.user}@{m.host}:{m.port}/{m.database}",
        "CUTOVER_DYNAMODB_ENDPOINT": own.dynamodb_endpoint or "",
        "CUTOVER_TABLE_PREFIX": own.table_prefix,
        "CUTOVER_STAGING": own.staging,
    }
    try:
        yield Prepared(name, contracts, own, env)
    finally:
        client = dynamodb_client(own)
        drop_tables(client, own.table_prefix)
        admin = connect(own.mysql, database=False)
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{m.database}`")
        admin.close()


@contextmanager
def _home(factory: pytest.TempPathFactory, what: str) -> Iterator[Path]:
    home = factory.mktemp(what)
    yield home
    if os.environ.get("CUTOVER_KEEP_AIRFLOW_HOME") is None:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def panel(prepared: Prepared, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Panel]:
    """A real `airflow standalone` (scheduler, DAG processor, triggerer, API server)."""
    dag = f"/api/v2/dags/{prepared.name}__phase_gate"
    with (
        _home(tmp_path_factory, "panel-airflow") as home,
        standalone(home, prepared.contracts, prepared.env) as api,
    ):
        api.wait("the contract's DAGs to be parsed", lambda: api.call("GET", dag))
        yield Panel(api, prepared.name, prepared.settings, phase_store(prepared.settings), home)


@pytest.fixture(scope="module")
def guarded(prepared: Prepared, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Panel]:
    """Airflow's API server with an auth manager that denies ``outsider`` the contract's
    DAGs (standalone always uses the simple auth manager, which grants by role only)."""
    env = {
        **prepared.env,
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.panel_auth.ScopedSimpleAuthManager",
        "CUTOVER_TEST_DENIED_DAGS": f"{prepared.name}__",
    }
    with (
        _home(tmp_path_factory, "panel-api") as home,
        api_server(home, prepared.contracts, env, users=USERS) as api,
    ):
        yield Panel(api, prepared.name, prepared.settings, phase_store(prepared.settings), home)


def _status(panel: Panel, method: str, path: str, token: str | None, body: Any = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(panel.url(path), data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _routes(name: str) -> list[tuple[str, str, Any]]:
    asset = next(iter(datadocs.asset_names()))
    return [
        ("GET", "/migrations/", None),
        ("GET", "/migrations/api/contracts", None),
        ("GET", f"/migrations/contracts/{name}", None),
        ("GET", f"/migrations/api/contracts/{name}", None),
        ("GET", f"/migrations/contracts/{name}/datadocs/index.html", None),
        ("GET", f"/migrations/assets/{asset}", None),
        ("GET", "/migrations/static/panel.css", None),
        ("POST", f"/migrations/api/contracts/{name}/advance", {"target_phase": "dual_write"}),
        ("POST", f"/migrations/api/contracts/{name}/rollback", {"reason": "auth test"}),
        ("POST", f"/migrations/api/contracts/{name}/validate", {}),
    ]


def test_every_route_refuses_no_session_a_bad_token_and_a_user_without_access(
    guarded: Panel,
) -> None:
    panel = guarded
    outsider = panel.api.login("outsider", USERS["outsider"][1])
    viewer = panel.api.login("viewer", USERS["viewer"][1])
    for method, path, body in _routes(panel.name):
        assert _status(panel, method, path, None, body) == 401, (method, path)
        assert _status(panel, method, path, "not.a.jwt", body) in (401, 403), (method, path)
        assert _status(panel, method, path, outsider, body) == 403, (method, path)
        expected = 403 if method == "POST" else 200  # a viewer reads but may not act
        assert _status(panel, method, path, viewer, body) == expected, (method, path)
        # the same route answers the admin (actions are not sent: they would start runs)
        if method == "GET":
            assert _status(panel, method, path, panel.api.token) == 200, (method, path)


def test_the_json_api_shows_the_phase_store_and_the_last_reports(panel: Panel) -> None:
    listing = panel.api.call("GET", "/migrations/api/contracts")["contracts"]
    (entry,) = [c for c in listing if c["name"] == panel.name]
    state = panel.store.get(panel.name)
    assert entry["phase"] == {"number": state.phase.value, "name": state.phase.slug}
    assert entry["flags"]["databaseMode"] == "mysql-only"
    assert entry["next_gate"]["target"]["name"] == "dual_write"
    assert entry["next_gate"]["allowed"] is True  # prepare found no drift

    detail = panel.api.call("GET", f"/migrations/api/contracts/{panel.name}")
    backfill = read_report(Staging(panel.settings.staging), panel.name, "backfill")
    shown = detail["backfill"]
    assert shown["items"] == backfill["items_loaded"] > 0
    assert shown["rows"] == backfill["rows_extracted"]
    assert shown["quarantined"] == backfill["quarantined"] == 10
    assert shown["quarantine_reasons"] == backfill["quarantine_reasons"]
    assert shown["duration_s"] > 0 and shown["items_per_s"] == backfill["load"]["items_per_s"]
    assert len(shown["partitions"]) == len(backfill["partitions"])
    validation = read_report(Staging(panel.settings.staging), panel.name, "validate")
    assert detail["validation"]["success"] is validation["success"] is True
    assert [t["table"] for t in detail["validation"]["tables"]] == [
        t["table"] for t in validation["tables"]
    ]
    evidence = {e["kind"]: e for e in detail["next_gate"]["evidence"]}
    assert evidence["prepare"]["passes"] is True and evidence["prepare"]["age_hours"] < 1
    assert all(not paused for paused in detail["paused"].values())
    assert "password" not in json.dumps(detail).lower()


def test_data_docs_are_served_with_local_assets(panel: Panel) -> None:
    index = _get_text(panel, f"/migrations/contracts/{panel.name}/datadocs/index.html")
    assert "cdn." not in index and "https://" not in _asset_urls(index)
    assert f"{panel.name}." in index  # this contract's validation results are listed
    for url in sorted(set(_asset_refs(index)))[:20]:
        assert _status(panel, "GET", url, panel.api.token) == 200, url


def _get_text(panel: Panel, path: str) -> str:
    request = urllib.request.Request(panel.url(path))
    request.add_header("Authorization", f"Bearer {panel.api.token}")
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.read().decode()


def _asset_refs(html: str) -> list[str]:
    import re

    return re.findall(r'(?:src|href)="(/migrations/assets/[^"]+)"', html)


def _asset_urls(html: str) -> str:
    import re

    return " ".join(re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is installed by setup")
def test_a_person_opens_migrations_and_requests_an_advance(
    panel: Panel, request: pytest.FixtureRequest
) -> None:
    from playwright.sync_api import sync_playwright

    shots = _shots_dir(request)
    state = panel.store.get(panel.name)
    backfill = read_report(Staging(panel.settings.staging), panel.name, "backfill")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(panel.url("/auth/login"))
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(_admin_password())
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)
            page.get_by_role("link", name="Migrations").click()
            page.wait_for_url("**/plugin/migrations")
            frame = page.frame_locator("iframe")
            frame.get_by_role("link", name=panel.name).click()
            frame.locator("#phase").wait_for()
            page.screenshot(path=str(shots / "1-contract.png"), full_page=True)

            assert frame.locator("#phase").inner_text() == (
                f"{state.phase.value} · {state.phase.slug}"
            )
            assert (
                _number(frame.locator("#backfill-items").inner_text()) == (backfill["items_loaded"])
            )
            assert (
                _number(frame.locator("#backfill-rows").inner_text())
                == (backfill["rows_extracted"])
            )
            assert frame.locator("#validation-verdict").inner_text() == "passed"
            assert frame.locator("#gate-verdict").inner_text() == "evidence meets the gate"

            frame.locator("#advance").click()
            frame.locator("#message.pass").wait_for(timeout=30_000)
            run_id = frame.locator("#message a").inner_text()
            page.screenshot(path=str(shots / "2-advance-requested.png"), full_page=True)

            dag = f"{panel.name}__phase_gate"
            run = panel.api.call("GET", f"/api/v2/dags/{dag}/dagRuns/{run_id}")
            assert run["conf"] == {"target_phase": "dual_write"}
            assert run["triggering_user_name"] == "admin"
            panel.api.wait("the gate to wait for approval", lambda: panel.api.call(
                "GET", f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/approve"
            )["state"] == "awaiting_input")  # fmt: skip
            page.reload()
            frame = page.frame_locator("iframe")
            approvals = frame.locator("#approvals")
            approvals.wait_for()
            assert run_id in approvals.inner_text()
            link = frame.get_by_role("link", name="answer in Airflow")
            assert link.get_attribute("href") == (
                f"/dags/{dag}/runs/{run_id}/tasks/approve/required_actions"
            )
            page.screenshot(path=str(shots / "3-waiting-for-approval.png"), full_page=True)
            link.click()  # Airflow's own screen, in the UI itself (not in the panel's frame)
            page.wait_for_url(lambda url: url.endswith("/tasks/approve/required_actions"))
            page.get_by_text("Approve", exact=True).first.wait_for()
            page.screenshot(path=str(shots / "4-airflow-approval-screen.png"), full_page=True)

            # The Data Docs, with the same session, every outside host blocked: the list of
            # validation results renders from local assets.
            docs = context.new_page()
            docs.route(lambda url: not url.startswith(panel.api.base), lambda r: r.abort())
            docs.goto(panel.url(f"/migrations/contracts/{panel.name}/datadocs/index.html"))
            docs.get_by_text(f"{panel.name}.Users.parity").first.wait_for()
            docs.screenshot(path=str(shots / "5-data-docs-offline.png"), full_page=True)
        finally:
            browser.close()
    assert panel.store.get(panel.name).phase == state.phase  # nothing moved without approval
    with pytest.raises(ApiError):
        panel.api.call("GET", f"/migrations/api/contracts/{panel.name}-missing")


def _admin_password() -> str:
    from tests.airflow_standalone import PASSWORD

    return PASSWORD


def _number(text: str) -> int:
    return int(text.replace(",", "").strip())


def _shots_dir(request: pytest.FixtureRequest) -> Path:
    """Screenshots go to .local/test-output/<test> (kept after the run, for people)."""
    from cutover.settings import LOCAL_DIR

    folder = LOCAL_DIR / "test-output" / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
