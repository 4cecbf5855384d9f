"""Contract SQL is parsed and allow-listed: injection attempts in every kind of fragment are
refused by lint with the exact JSON path, and what is accepted renders with quoted
identifiers and literals that mean the same under every sql_mode."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cutover.contract.fragments import FragmentError, is_same_row, parse, render, string_literal
from cutover.contract.lint import lint
from cutover.contract.load import parse_contract
from cutover.contract.views import all_view_ddl

pytestmark = pytest.mark.unit

LIBRARY = json.loads((Path(__file__).parents[1] / "fixtures" / "library_contract.json").read_text())
LOAN = "tables[0].entities[1].attributes"
BOOK = "tables[1].attributes"
BRANCH = "tables[2].attributes"


def _at(data: Any, dotted: str) -> tuple[Any, str]:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    return node, last


def _set(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        node, last = _at(data, dotted)
        node[int(last) if last.isdigit() else last] = value

    return apply


MULTI = {"type": "multi-column", "target_table": "branches",
         "join_conditions": ["branches.id = books.branch_id", "@x := 1"],
         "select_column": "branches.name"}  # fmt: skip
CHAIN = {"type": "chain", "joins": [
    {"target_table": "branches", "join_condition": "branches.id = books.branch_id",
     "select_column": "GET_LOCK('cutover', 10)"}]}  # fmt: skip

# (mutation, exact path of the refused fragment, words the reason must contain)
ATTEMPTS: list[tuple[Callable[[dict[str, Any]], None], str, str]] = [
    (_set("tables.0.entities.1.attributes.0.join.join_condition",
          "members.id = loans.member_id; DROP TABLE members"),
     f"{LOAN}[0].join.join_condition", "never a statement"),
    (_set("tables.0.entities.1.attributes.0.join.select_column", "members.email -- hidden"),
     f"{LOAN}[0].join.select_column", "comment"),
    (_set("tables.2.attributes.3.join.condition", "branches.parent_id IS NULL /*!OR 1=1*/"),
     f"{BRANCH}[3].join.condition", "comment"),
    (_set("tables.1.attributes.6.calculation.cases.0.when", "SLEEP(5) = 0"),
     f"{BOOK}[6].calculation.cases[0].when", "SLEEP()"),
    (_set("tables.1.attributes.6.calculation.cases.0.then",
          "(SELECT authentication_string FROM mysql.user LIMIT 1)"),
     f"{BOOK}[6].calculation.cases[0].then", "never another schema"),
    (_set("tables.1.attributes.6.calculation.else", "@@version"),
     f"{BOOK}[6].calculation.else", "system variable"),
    (_set("tables.1.attributes.7.join.construction.order_by",
          "loans.loaned_at DESC; DELETE FROM loans"),
     f"{BOOK}[7].join.construction.order_by", "never a statement"),
    (_set("tables.1.attributes.7.join.construction.select_columns.fee",
          "LOAD_FILE('/etc/passwd')"),
     f"{BOOK}[7].join.construction.select_columns.fee", "LOAD_FILE()"),
    (_set("tables.1.attributes.5.calculation.select_column", "BENCHMARK(1000000, MD5('x'))"),
     f"{BOOK}[5].calculation.select_column", "BENCHMARK()"),
    (_set("tables.1.attributes.5.calculation.join_condition",
          "loans.book_id = books.id INTO OUTFILE '/tmp/cutover'"),
     f"{BOOK}[5].calculation.join_condition", "not a valid MySQL expression"),
    (_set("tables.1.attributes.4.join", MULTI),
     f"{BOOK}[4].join.join_conditions[1]", "assignment"),
    (_set("tables.1.attributes.4.join", CHAIN),
     f"{BOOK}[4].join.joins[0].select_column", "GET_LOCK()"),
    (_set("tables.2.attributes.2.join.join_condition",
          "up.id = branches.parent_id UNION SELECT 1"),
     f"{BRANCH}[2].join.join_condition", "UNION"),
    (_set("tables.1.attributes.4.join.select_column",
          "(SELECT TABLE_NAME FROM information_schema.TABLES LIMIT 1)"),
     f"{BOOK}[4].join.select_column", "never another schema"),
    (_set("tables.1.attributes.4.join.select_column", "(SELECT name FROM secrets LIMIT 1)"),
     f"{BOOK}[4].join.select_column", None),  # a table the live schema lacks: lint --db
    (_set("tables.0.entities.0.attributes.5.join.construction.select_columns.email",
          "CURRENT_USER()"),
     "tables[0].entities[0].attributes[5].join.construction.select_columns.email",
     "CURRENT_USER()"),
]  # fmt: skip


def _errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in lint(parse_contract(data)) if p.severity == "error"]


def test_the_library_contract_is_valid_as_written() -> None:
    assert _errors(LIBRARY) == []


@pytest.mark.parametrize(
    ("mutate", "path", "reason"),
    [a for a in ATTEMPTS if a[2] is not None],
    ids=[a[1] for a in ATTEMPTS if a[2] is not None],
)
def test_each_injection_attempt_is_refused_at_its_path(
    mutate: Callable[[dict[str, Any]], None], path: str, reason: str
) -> None:
    data = copy.deepcopy(LIBRARY)
    mutate(data)
    errors = _errors(data)
    assert any(p == path and reason in m for p, m in errors), errors
    with pytest.raises(Exception) as caught:  # the views cannot be rendered either
        all_view_ddl(parse_contract(data))
    assert path in str(caught.value)


def test_there_are_at_least_twelve_refused_attempts_across_fragment_kinds() -> None:
    refused = [a for a in ATTEMPTS if a[2] is not None]
    kinds = {path.rsplit(".", 1)[-1].split("[")[0] for _, path, _ in refused}
    assert len(refused) >= 12
    assert kinds >= {"join_condition", "join_conditions", "select_column", "condition", "when",
                     "then", "else", "order_by", "fee", "email"}  # fmt: skip


def test_rendered_sql_quotes_every_identifier_and_keeps_only_one_statement() -> None:
    ddl = "\n".join(sql for _, sql in all_view_ddl(parse_contract(LIBRARY)))
    assert "`members`.`email`" in ddl and "`loans`.`loaned_at` DESC" in ddl
    assert ";" not in ddl


@pytest.mark.parametrize(
    "value", ["plain", "it's", "back\\slash", "both \\' quote", "tab\there", "emoji 😀", "x\\"]
)
def test_string_literals_never_use_backslash_escapes(value: str) -> None:
    literal = string_literal(value)
    if "\\" in value or "\t" in value:
        assert literal.startswith("CAST(X'") and bytes.fromhex(literal[7:].split("'")[0]) == (
            value.encode()
        )
    else:
        assert literal == "'" + value.replace("'", "''") + "'"
    assert "\\" not in literal


def test_a_literal_with_a_backslash_in_a_fragment_is_rendered_as_hex() -> None:
    rendered = render(parse(r"CONCAT(books.title, 'a\\b')"))
    assert rendered == "CONCAT(`books`.`title`, CAST(x'615c62' AS CHAR CHARACTER SET utf8mb4))"


@pytest.mark.parametrize(
    ("condition", "same"),
    [("users.id = users.id", True), ("id = id", True),
     ("users.id = users.id AND users.a = users.a", True),
     ("users.id = other.id", False), ("users.id = users.parent_id", False),
     ("users.id = users.id OR 1 = 1", False), ("users.id > users.id", False)],
)  # fmt: skip
def test_same_row_conditions(condition: str, same: bool) -> None:
    assert is_same_row(parse(condition), "users") is same


def test_a_fragment_that_is_empty_is_refused() -> None:
    with pytest.raises(FragmentError, match="empty"):
        parse("  ")
