"""The prepare stage: lint the contract against the source, apply its views, create or check
its DynamoDB tables and the control table. Called by `cutover prepare` and the prepare DAG."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cutover.contract.model import Contract
from cutover.errors import ContractError
from cutover.settings import Settings


@dataclass(frozen=True)
class PrepareReport:
    contract: str
    views: list = field(default_factory=list)  # list[ViewChange]
    tables: list = field(default_factory=list)  # list[TableChange]
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(v.action != "unchanged" for v in self.views) or any(
            t.action == "created" for t in self.tables
        )

    @property
    def drifts(self) -> list[str]:
        return [d for t in self.tables for d in t.drifts]

    def lines(self) -> list[str]:
        return self.lines_of(self.to_dict())

    @staticmethod
    def lines_of(report: dict) -> list[str]:
        out = [f"view  {v['view']}: {v['action']}" for v in report["views"]]
        for t in report["tables"]:
            out.append(f"table {t['table']}: {t['action']}")
            out.extend(f"      drift: {d}" for d in t["drifts"])
        out.extend(f"warning: {w}" for w in report["warnings"])
        if report["drifts"]:
            out.append(f"{len(report['drifts'])} drift(s) found: the tables were left as they are")
        elif not report["changed"]:
            out.append("nothing changed: views and tables already match the contract")
        return out

    def to_dict(self) -> dict:
        return {
            "contract": self.contract,
            "views": [asdict(v) for v in self.views],
            "tables": [asdict(t) for t in self.tables],
            "warnings": self.warnings,
            "changed": self.changed,
            "drifts": self.drifts,
        }


def _raise_errors(problems: list) -> None:
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ContractError([(p.path, p.message) for p in errors])


def prepare(contract: Contract, settings: Settings) -> PrepareReport:
    """Lint against the live source schema, then apply views and ensure tables. Raises
    ``ContractError`` (nothing applied) when lint finds errors."""
    from cutover.aws import dynamodb_client
    from cutover.contract.lint import lint
    from cutover.contract.source_schema import SourceSchema
    from cutover.db import connect
    from cutover.prepare.control_table import ensure_control_table
    from cutover.prepare.tables import ensure_tables
    from cutover.prepare.views import apply_views

    # offline first: a contract whose SQL is refused never reaches a connection
    _raise_errors(lint(contract))
    conn = connect(settings.mysql)
    try:
        problems = lint(contract, SourceSchema.from_connection(conn))
        _raise_errors(problems)
        views = apply_views(conn, contract)
    finally:
        conn.close()
    client = dynamodb_client(settings)
    tables = ensure_tables(client, contract, settings.table_prefix)
    tables.append(ensure_control_table(client, settings.table_prefix))
    return PrepareReport(
        contract=contract.name,
        views=views,
        tables=tables,
        warnings=[str(p) for p in problems if p.severity == "warning"]
        + _binlog_warnings(contract, settings),
    )


def _binlog_warnings(contract: Contract, settings: Settings) -> list[str]:
    """The sync's preflight, as warnings: a migration can be prepared before the binlog is
    on, but nothing follows MySQL's changes until it is."""
    from cutover.sync.mapper import DependencyIndex
    from cutover.sync.preflight import preflight

    problems = preflight(settings.mysql, sorted(DependencyIndex(contract).tables()))
    return [f"binlog: {p.line}" for p in problems]
