"""Reading a contract file into a ``Contract``, with every problem named by its JSON path."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cutover.contract.model import STORAGE_FOLDERS, Contract
from cutover.errors import ContractError

_UNION_TAGS = {
    "self-join", "foreign-key", "multi-column", "conditional", "chain", "lookup-table",
    "json-construction", "aggregate", "case", "concat", "date-math",
}  # fmt: skip


def json_path(loc: tuple[int | str, ...]) -> str:
    """``('tables', 0, 'attributes', 2, 'join', 'self-join', 'select_column')`` ->
    ``tables[0].attributes[2].join.select_column`` (the union tag pydantic adds is dropped)."""
    out = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (previous in ("join", "calculation") and part in _UNION_TAGS):
            out += ("." if out else "") + part
        previous = part
    return out or "$"


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a known field (check its spelling)"
    if kind == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"type {error['input'].get('type')!r} is not one of {expected}"
    if kind == "literal_error":
        return f"{error['input']!r} is not allowed: expected {error['ctx']['expected']}"
    message = error["msg"]
    return re.sub(r"^(Value error|Assertion failed), ", "", message)


def parse_contract(data: Any, name: str = "contract") -> Contract:
    """Validate a decoded contract; raise ``ContractError`` listing every problem."""
    try:
        contract = Contract.model_validate(data)
    except ValidationError as exc:
        problems = [(json_path(e["loc"]), _message(e)) for e in exc.errors()]
        raise ContractError(problems) from None
    final = contract.cutover.name or name
    if final in STORAGE_FOLDERS:
        where, origin = (
            ("$.cutover.name", "") if contract.cutover.name else ("$", " (from its file name)")
        )
        raise ContractError([(where, f"the contract's name {final!r}{origin} is that of a "
                              "folder cutover keeps at the root of the storage URL; set "
                              "cutover.name to another name")])  # fmt: skip
    return contract.model_copy(update={"name": final})


def contract_name(path: Path) -> str:
    stem = re.sub(r"[^a-z0-9_]", "_", path.stem.lower())
    return stem if stem[:1].isalpha() else f"c_{stem}"


def read_json(path: str | Path) -> Any:
    """The decoded JSON of a contract file; unreadable or invalid JSON is a ContractError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError([("$", f"cannot read {path}: {exc.strerror}")]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError(
            [("$", f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
        ) from None


def load_contract(path: str | Path) -> Contract:
    """Read and validate ``path``. Structural problems raise ``ContractError``."""
    return parse_contract(read_json(path), contract_name(Path(path)))
