"""The Migrations panel as a FastAPI app, mounted by the Airflow plugin at ``/migrations``.

Plugin apps are not behind Airflow's authentication by themselves: every route here
depends on Airflow's ``get_user`` (JWT from the bearer header or the UI's cookie) and asks
Airflow's auth manager about the contract's DAGs (``cutover.panel.access``). Actions trigger
the contract's DAGs through Airflow; nothing here runs a stage itself."""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from cutover.errors import CutoverError
from cutover.panel import access, airflow_state, charts
from cutover.panel.overview import ContractEntry, contract_entries, detail, summary

log = logging.getLogger("cutover.panel")

PREFIX = "/migrations"
HERE = Path(__file__).parent
STATIC = {"panel.css": "text/css", "panel.js": "text/javascript"}


def _user_dep() -> Any:
    from airflow.api_fastapi.core_api.security import get_user

    return Depends(get_user)


User = Annotated[Any, _user_dep()]


def _contracts_dir() -> Path:
    from cutover.dags.factory import contracts_dir

    return contracts_dir()


def _entry(name: str) -> ContractEntry:
    for entry in contract_entries(_contracts_dir()):
        if entry.name == name:
            return entry
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no contract named {name!r}")


def _store(entry: ContractEntry) -> Any:
    from cutover.airflow_connections import settings_for_contract
    from cutover.panel.overview import store_for

    return store_for(settings_for_contract(entry.contract))


def _storage(entry: ContractEntry) -> Any:
    """The storage URL (``CUTOVER_STAGING``) of the contract's settings, as a ``Staging``:
    its reports and the Data Docs are read from there."""
    from cutover.airflow_connections import settings_for_contract
    from cutover.extract.staging import Staging

    return Staging(settings_for_contract(entry.contract).staging)


def _guarded(entry: ContractEntry, build: Any) -> dict[str, Any]:
    """``build(store)``, or the entry with an error when the phase store cannot answer."""
    if entry.contract is None:
        return {"name": entry.name, "file": entry.path.name, "error": entry.error}
    try:
        return build(_store(entry))
    except CutoverError as exc:
        return {"name": entry.name, "file": entry.path.name, "error": str(exc)}
    except Exception as exc:
        from botocore.exceptions import ClientError

        from cutover.aws import translate_aws_error

        if isinstance(exc, ClientError) and exc.response["Error"]["Code"] == (
            "ResourceNotFoundException"
        ):
            message = "its control table does not exist yet: run the prepare DAG first"
        elif (translated := translate_aws_error(exc)) is not None:
            message = f"phase store unavailable: {translated}"
        else:
            raise
        return {"name": entry.name, "file": entry.path.name, "error": message}


def _readable(user: Any) -> list[ContractEntry]:
    """The contracts whose DAGs the user may read; 403 when there are contracts and none."""
    entries = contract_entries(_contracts_dir())
    readable = [e for e in entries if access.can_read(user, e)]
    if entries and not readable:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "no read access to any contract's DAGs")
    return readable


def _full(entry: ContractEntry) -> dict[str, Any]:
    out = _guarded(entry, lambda store: detail(entry, store, _storage(entry)))
    out["dags"] = entry.dag_ids
    out["runs"] = airflow_state.last_runs(entry.dag_ids)
    out["paused"] = airflow_state.paused(entry.dag_ids)
    out["approvals"] = airflow_state.pending_approvals(entry.dag_id("phase_gate"))
    out["data_docs"] = (
        f"{PREFIX}/contracts/{entry.name}/datadocs/index.html" if _docs_site(entry) else None
    )
    return out


def _docs_site(entry: ContractEntry) -> tuple[Any, str] | None:
    """The storage URL and the folder in it (relative) of the Data Docs site the contract's
    last validation wrote to (its report names the index's URI), or None before any
    validation, when the index is not in the contract's GX project ``gx/<contract>/`` (the
    report of another storage URL or contract) or when the storage cannot be read."""
    import posixpath

    from cutover.panel.overview import read_report
    from cutover.validate.suites import project_folder

    if entry.contract is None:
        return None
    try:
        staging = _storage(entry)
        report = read_report(staging, entry.name, "validate") or {}
        project = project_folder(entry.name)
        base = staging.uri(*project) + "/"
        index = str(report.get("data_docs") or "")
        if not index.startswith(base):
            return None
        relpath = "/".join(project) + "/" + index.removeprefix(base)
        if not staging.is_file(relpath):
            return None
    except (CutoverError, OSError) as exc:
        log.warning("no Data Docs for %s: %s", entry.name, exc)
        return None
    return staging, posixpath.dirname(relpath)


def _templates() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _charts(c: dict[str, Any]) -> dict[str, Any]:
    backfill = c.get("backfill") or {}
    routing = c.get("routing") or {}
    sync = c.get("sync") or {}
    policy = (c.get("next_gate") or {}).get("policy") or {}
    return {
        "throughput": charts.bars(
            [(p["id"], p["items_per_s"]) for p in backfill.get("partitions") or []],
            "items/s", "load throughput per partition"),
        "shadow": charts.line(
            [p["rate"] for p in routing.get("shadow_reads") or []], "mismatch rate",
            "shadow-read mismatch rate", limit=policy.get("max_shadow_mismatch_rate")),
        "outbox": charts.line(
            [p["depth"] for p in routing.get("outbox") or []], "changes", "outbox depth"),
        "sync_lag": charts.line(
            [p["lag_seconds"] for p in sync.get("series") or []], "s", "binlog sync lag",
            limit=sync.get("limit_seconds")),
    }  # fmt: skip


def _action(name: str, user: Any, suffix: str, conf: dict[str, Any]) -> JSONResponse:
    entry = _entry(name)
    dag_id = entry.dag_id(suffix)
    access.require_action(user, entry, dag_id)
    try:
        run = airflow_state.trigger(dag_id, conf, access.user_name(user))
    except airflow_state.TriggerRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    log.info("%s triggered %s (%s)", access.user_name(user), run["run_id"], dag_id)
    return JSONResponse(run, status_code=status.HTTP_201_CREATED)


def create_app() -> FastAPI:
    app = FastAPI(title="cutover Migrations", docs_url=None, redoc_url=None, openapi_url=None)
    templates = _templates()

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, user: User) -> HTMLResponse:
        rows = [_guarded(e, lambda store, e=e: summary(e, store)) for e in _readable(user)]
        html = templates.get_template("index.html").render(
            base=PREFIX, contracts=rows, user=access.user_name(user),
            contracts_dir=_contracts_dir())  # fmt: skip
        return HTMLResponse(html)

    @app.get("/contracts/{name}", response_class=HTMLResponse)
    def contract_page(name: str, user: User) -> HTMLResponse:
        entry = _entry(name)
        access.require_read(user, entry)
        c = _full(entry)
        html = templates.get_template("contract.html").render(
            base=PREFIX, c=c, charts=_charts(c), runs=c["runs"], paused=c["paused"],
            approvals=c["approvals"], data_docs=c["data_docs"])  # fmt: skip
        return HTMLResponse(html)

    @app.get("/api/contracts")
    def api_contracts(user: User) -> dict[str, Any]:
        return {"contracts": [_guarded(e, lambda store, e=e: summary(e, store))
                              for e in _readable(user)]}  # fmt: skip

    @app.get("/api/contracts/{name}")
    def api_contract(name: str, user: User) -> dict[str, Any]:
        entry = _entry(name)
        access.require_read(user, entry)
        return _full(entry)

    @app.post("/api/contracts/{name}/advance")
    def advance(name: str, user: User,
                body: Annotated[dict[str, Any], Body()]) -> JSONResponse:  # fmt: skip
        target = body.get("target_phase")
        if not isinstance(target, str):
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                "target_phase (the phase to move to) is required")  # fmt: skip
        return _action(name, user, "phase_gate", {"target_phase": target})

    @app.post("/api/contracts/{name}/rollback")
    def rollback(name: str, user: User,
                 body: Annotated[dict[str, Any], Body()]) -> JSONResponse:  # fmt: skip
        reason = body.get("reason")
        if not isinstance(reason, str) or len(reason.strip()) < 3:
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                "a reason of at least 3 characters is required")  # fmt: skip
        return _action(name, user, "rollback", {"reason": reason.strip()})

    @app.post("/api/contracts/{name}/validate")
    def validate_now(name: str, user: User) -> JSONResponse:
        return _action(name, user, "validate", {})

    @app.get("/contracts/{name}/datadocs/{path:path}")
    def data_docs(name: str, path: str, user: User) -> Response:
        from cutover.panel import datadocs

        entry = _entry(name)
        access.require_read(user, entry)
        if not _belongs(entry.name, path):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{path} is not in {name}'s Data Docs")
        site = _docs_site(entry)
        if site is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{name} has no Data Docs yet")
        staging, folder = site
        try:
            file = datadocs.doc_file(staging, folder, path)
            data = staging.read_bytes(file)
        except CutoverError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        except FileNotFoundError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{path} does not exist") from None
        if file.endswith(".html"):
            page = datadocs.rewrite_html(data.decode("utf-8"), f"{PREFIX}/assets")
            return HTMLResponse(page)
        kind = mimetypes.guess_type(file)[0] or "application/octet-stream"
        return Response(data, media_type=kind)

    @app.get("/assets/{path:path}")
    def docs_asset(path: str, user: User) -> Response:
        from cutover.panel import datadocs

        _readable(user)  # the panel's files are for people who may read some contract
        try:
            return FileResponse(datadocs.asset_file(path))
        except CutoverError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None

    @app.get("/static/{name}")
    def static(name: str, user: User) -> Response:
        _readable(user)
        if name not in STATIC:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no static file {name!r}")
        return FileResponse(HERE / "static" / name, media_type=STATIC[name])

    return app


def _belongs(contract: str, path: str) -> bool:
    """Data Docs pages are shared by every contract's suites (named ``<contract>.<table>.
    <kind>``): a contract's readers get the index, the shared styles and its own suites'
    pages. GX 1.24 writes a suite's pages in a folder per dotted part of its name
    (``validations/<contract>/<table>/<kind>/...``); a page named by the whole suite name
    (``validations/<contract>.<table>.<kind>/...``) is the contract's too."""
    parts = path.split("/")
    if path in ("", "index.html") or parts[0] == "static":
        return True
    if len(parts) < 2 or parts[0] not in ("validations", "expectations"):
        return False
    own = contract.split(".")
    nested = parts[1 : 1 + len(own)] == own and len(parts) > 1 + len(own)
    return nested or parts[1].startswith(f"{contract}.")
