"""The migration contract, as typed objects.

The format is the DynamoDB modernizer workshop's ``migrationContract.json``; cutover's own
additions live in optional ``cutover`` objects at the contract, table, entity and attribute
level, which the workshop's tools ignore. Structural validation happens here (pydantic);
checks that need the whole contract or a database live in ``cutover.contract.lint``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cutover.airflow_connections import DEFAULT_DYNAMODB_CONN_ID, DEFAULT_MYSQL_CONN_ID

AttrType = Literal["S", "N", "B", "SS", "NS", "BS", "M", "L", "BOOL", "NULL"]
KEY_TYPES = ("S", "N", "B")
TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")
_INTERVAL = r"-?\d+ (MICROSECOND|SECOND|MINUTE|HOUR|DAY|WEEK|MONTH|QUARTER|YEAR)"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- joins -------------------------------------------------------------------------------


class SelfJoin(_Model):
    type: Literal["self-join"]
    join_alias: str
    join_condition: str
    select_column: str
    null_value: str | None = None


class ForeignKeyJoin(_Model):
    type: Literal["foreign-key"]
    target_table: str
    join_alias: str | None = None  # cutover: name the target (needed when it is the source)
    join_condition: str
    select_column: str
    null_value: str | None = None


class MultiColumnJoin(_Model):
    type: Literal["multi-column"]
    target_table: str
    join_alias: str | None = None
    join_conditions: list[str] = Field(min_length=1)
    select_column: str
    null_value: str | None = None


class ConditionalJoin(_Model):
    type: Literal["conditional"]
    condition: str
    target_table: str
    join_alias: str | None = None
    join_condition: str
    select_column: str
    else_value: str


class ChainStep(_Model):
    target_table: str
    join_condition: str
    select_column: str


class ChainJoin(_Model):
    type: Literal["chain"]
    joins: list[ChainStep] = Field(min_length=1)
    chain_separator: str | None = None
    null_value: str | None = None


class LookupTableJoin(_Model):
    type: Literal["lookup-table"]
    target_table: str
    join_alias: str | None = None
    join_condition: str
    select_column: str
    null_value: str | None = None


class Construction(_Model):
    type: Literal["array", "object"]
    select_columns: dict[str, str] = Field(min_length=1)
    limit: int | None = Field(default=None, gt=0)
    order_by: str | None = None


class JsonConstructionJoin(_Model):
    type: Literal["json-construction"]
    target_table: str
    join_alias: str | None = None
    join_condition: str
    construction: Construction


Join = Annotated[
    SelfJoin
    | ForeignKeyJoin
    | MultiColumnJoin
    | ConditionalJoin
    | ChainJoin
    | LookupTableJoin
    | JsonConstructionJoin,
    Field(discriminator="type"),
]

# --- calculations ------------------------------------------------------------------------


class AggregateCalculation(_Model):
    type: Literal["aggregate"]
    target_table: str
    join_alias: str | None = None  # cutover: name the target (e.g. 'child')
    join_condition: str
    operation: Literal["SUM", "COUNT", "AVG", "MIN", "MAX"]
    select_column: str


class CaseWhen(_Model):
    when: str
    then: str


class CaseCalculation(_Model):
    type: Literal["case"]
    cases: list[CaseWhen] = Field(min_length=1)
    else_: str | None = Field(default=None, alias="else")


class ConcatCalculation(_Model):
    """Joins the attribute's source columns (a list) with ``separator``."""

    type: Literal["concat"]
    separator: str = ""


class DateMathCalculation(_Model):
    """``add``/``subtract`` an ``interval`` (e.g. ``"30 DAY"``) to the source column, or
    ``diff-days`` between two source columns (or one column and today)."""

    type: Literal["date-math"]
    operation: Literal["add", "subtract", "diff-days"]
    interval: str | None = None

    @model_validator(mode="after")
    def _interval_for_add(self) -> DateMathCalculation:
        needs_interval = self.operation in ("add", "subtract")
        if needs_interval and not re.fullmatch(_INTERVAL, self.interval or ""):
            raise ValueError(
                "date-math add/subtract needs an interval such as '30 DAY' "
                "(a whole number and one of SECOND MINUTE HOUR DAY WEEK MONTH YEAR)"
            )
        return self


Calculation = Annotated[
    AggregateCalculation | CaseCalculation | ConcatCalculation | DateMathCalculation,
    Field(discriminator="type"),
]

# --- transformations ---------------------------------------------------------------------


class Transformation(_Model):
    """``date-format``: ``format`` in YYYY MM DD HH mm ss tokens or ``iso8601``,
    ``source_format`` one of timestamp, datetime, date, unix, or ``string:<YYYY-MM-DD…>``.
    ``string-format``: ``format`` with ``{}`` (the source column) or ``{column}`` fields,
    or one of ``upper``, ``lower``, ``trim``.
    ``number-format``: ``format`` such as ``0``, ``0.00`` (round to that many decimals).
    ``json-parse``: the column holds JSON text; ``format`` is an optional JSON path."""

    type: Literal["date-format", "string-format", "number-format", "json-parse"]
    format: str | None = None
    source_format: str | None = None

    @model_validator(mode="after")
    def _format_required(self) -> Transformation:
        if self.type in ("date-format", "string-format", "number-format") and not self.format:
            raise ValueError(f"a {self.type} transformation needs a 'format'")
        if self.type == "number-format" and not re.fullmatch(r"0(\.0+)?", self.format or ""):
            raise ValueError("number-format 'format' must be '0' or '0.' followed by zeros")
        if self.type == "json-parse" and self.format and not self.format.startswith("$"):
            raise ValueError("json-parse 'format' must be a JSON path starting with '$'")
        return self


# --- cutover's own sections --------------------------------------------------------------


class AttributeOptions(_Model):
    """What to do when the source value is NULL: ``omit`` the attribute (the default),
    store a ``null`` (DynamoDB NULL type), use ``default``, or ``reject`` the row."""

    on_null: Literal["omit", "null", "default", "reject"] = "omit"
    default: str | int | float | bool | list | dict | None = None

    @model_validator(mode="after")
    def _default_given(self) -> AttributeOptions:
        if self.on_null == "default" and self.default is None:
            raise ValueError("on_null 'default' needs a 'default' value")
        return self


class SourceOptions(_Model):
    """How to read one source table (a single-entity table or one entity)."""

    source_key: list[str] | None = None
    partition_column: str | None = None
    partitions: int | None = Field(default=None, ge=1, le=10_000)
    rows_per_partition: int | None = Field(default=None, ge=1)
    version_column: str | None = None

    @model_validator(mode="after")
    def _one_partition_rule(self) -> SourceOptions:
        if self.partitions is not None and self.rows_per_partition is not None:
            raise ValueError("give either 'partitions' or 'rows_per_partition', not both")
        return self


class TableOptions(SourceOptions):
    billing_mode: Literal["PAY_PER_REQUEST", "PROVISIONED"] = "PAY_PER_REQUEST"
    read_capacity: int | None = Field(default=None, ge=1)
    write_capacity: int | None = Field(default=None, ge=1)


class GatePolicy(_Model):
    max_quarantined_rows: int = Field(default=0, ge=0)
    value_parity_mostly: float = Field(default=1.0, ge=0, le=1)
    max_shadow_mismatch_rate: float = Field(default=0.001, ge=0, le=1)
    max_dual_write_error_rate: float = Field(default=0.001, ge=0, le=1)
    evidence_max_age_hours: float = Field(default=24, gt=0)
    # the binlog sync's lag plus the age of its last report (a silent sync is falling behind)
    max_sync_lag_seconds: float = Field(default=30, gt=0)


CONN_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}")
# Folders at the root of the storage URL beside the contracts' own (cutover.stages.REPORTS and
# cutover.validate.suites.GX): a contract of that name would write into them.
STORAGE_FOLDERS = frozenset({"reports", "gx"})


class ContractOptions(_Model):
    name: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,40}$")
    gate: GatePolicy = GatePolicy()
    reconcile_schedule: str = "0 2 * * *"
    # the Airflow connections DAG tasks read (see cutover.airflow_connections)
    mysql_conn_id: str = DEFAULT_MYSQL_CONN_ID
    dynamodb_conn_id: str = DEFAULT_DYNAMODB_CONN_ID

    @field_validator("mysql_conn_id", "dynamodb_conn_id")
    @classmethod
    def _airflow_conn_id(cls, value: str) -> str:
        if not CONN_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an Airflow connection id: use letters, digits, _ . - "
                "(e.g. cutover_mysql)"
            )
        return value


# --- the contract ------------------------------------------------------------------------


class Attribute(_Model):
    name: str = Field(min_length=1, max_length=255)
    type: AttrType
    source_table: str
    source_column: str | list[str]
    join: Join | None = None
    calculation: Calculation | None = None
    transformation: Transformation | None = None
    denormalized: bool | None = None
    justification: str | None = None
    cutover: AttributeOptions = AttributeOptions()

    @model_validator(mode="after")
    def _one_derivation(self) -> Attribute:
        given = [k for k in ("join", "calculation", "transformation") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(
                f"an attribute takes at most one of join, calculation, transformation; "
                f"'{self.name}' has {' and '.join(given)}"
            )
        return self

    @field_validator("source_column")
    @classmethod
    def _columns_not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("source_column list is empty")
        return value

    @property
    def columns(self) -> list[str]:
        return (
            [self.source_column]
            if isinstance(self.source_column, str)
            else list(self.source_column)
        )


class Gsi(_Model):
    index_name: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    pk: str
    sk: str | None = None
    projection: Literal["ALL", "KEYS_ONLY", "INCLUDE"] = "ALL"
    projected_attributes: list[str] | None = None


class Entity(_Model):
    entity_type: str = Field(min_length=1)
    source_table: str
    pk_template: str
    sk_template: str
    attributes: list[Attribute]
    cutover: SourceOptions = SourceOptions()


class Table(_Model):
    table: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["single-entity", "multi-entity"]
    source_table: str | None = None
    pk: str
    sk: str | None = None
    gsis: list[Gsi] = []
    entities: list[Entity] | None = None
    attributes: list[Attribute] | None = None
    satisfies: list[str] = []
    estimated_item_size_bytes: float | None = None
    cutover: TableOptions = TableOptions()

    @model_validator(mode="after")
    def _shape_matches_type(self) -> Table:
        if self.type == "single-entity":
            if not self.attributes:
                raise ValueError("a single-entity table needs 'attributes'")
            if not self.source_table:
                raise ValueError("a single-entity table needs 'source_table'")
            if self.entities:
                raise ValueError("a single-entity table takes 'attributes', not 'entities'")
        else:
            if not self.entities:
                raise ValueError("a multi-entity table needs 'entities'")
        return self

    @property
    def sources(self) -> list[Source]:
        """One readable source per entity (a single-entity table is one)."""
        if self.type == "single-entity":
            assert self.source_table is not None and self.attributes is not None
            return [
                Source(
                    entity_type=self.table.upper(),
                    source_table=self.source_table,
                    attributes=self.attributes,
                    pk_template=None,
                    sk_template=None,
                    options=self.cutover,
                    path_prefix="",
                )
            ]
        assert self.entities is not None
        return [
            Source(
                entity_type=e.entity_type,
                source_table=e.source_table,
                attributes=e.attributes,
                pk_template=e.pk_template,
                sk_template=e.sk_template,
                options=e.cutover,
                path_prefix=f".entities[{i}]",
            )
            for i, e in enumerate(self.entities)
        ]


class Contract(_Model):
    tables: list[Table] = Field(min_length=1)
    cutover: ContractOptions = ContractOptions()

    # set by the loader from the file name when cutover.name is absent
    name: str = Field(default="contract", exclude=True)

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.table == name:
                return table
        raise KeyError(name)


class Source(BaseModel):
    """One SELECT of a view: a single-entity table, or one entity of a multi-entity one."""

    model_config = ConfigDict(frozen=True)

    entity_type: str
    source_table: str
    attributes: list[Attribute]
    pk_template: str | None
    sk_template: str | None
    options: SourceOptions
    path_prefix: str  # JSON path of the entity relative to its table, "" when single

    @property
    def source_key(self) -> list[str]:
        return self.options.source_key or ["id"]

    @property
    def partition_column(self) -> str:
        return self.options.partition_column or self.source_key[0]


def template_fields(template: str) -> list[str]:
    """The ``{field}`` names of a key template, in order."""
    return TEMPLATE_FIELD.findall(template)
