"""A contract's name comes from ``cutover.name`` or its file name, and may not be that of a
folder cutover keeps at the root of the storage URL (the stage reports, the GX project)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cutover.contract.load import load_contract, parse_contract
from cutover.contract.model import STORAGE_FOLDERS
from cutover.errors import ContractError
from cutover.stages import REPORTS
from cutover.validate.suites import GX

pytestmark = pytest.mark.unit


def _contract(options: dict[str, Any] | None = None) -> dict[str, Any]:
    table = {"table": "Things", "type": "single-entity", "source_table": "things", "pk": "id",
             "attributes": [{"name": "id", "type": "N", "source_table": "things",
                             "source_column": "id"}]}  # fmt: skip
    return {"tables": [table], **({"cutover": options} if options is not None else {})}


def test_the_reserved_names_are_the_storage_roots_own_folders() -> None:
    assert {REPORTS, GX} == STORAGE_FOLDERS


@pytest.mark.parametrize("name", sorted(STORAGE_FOLDERS))
def test_a_cutover_name_of_a_storage_folder_is_refused_at_its_path(name: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_contract(_contract({"name": name}), "shop")
    assert "$.cutover.name" in str(caught.value) and repr(name) in str(caught.value)


@pytest.mark.parametrize("name", sorted(STORAGE_FOLDERS))
def test_a_file_named_like_a_storage_folder_needs_a_cutover_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(_contract()))
    with pytest.raises(ContractError, match="from its file name"):
        load_contract(path)
    path.write_text(json.dumps(_contract({"name": "shop_reports"})))
    assert load_contract(path).name == "shop_reports"


def test_other_names_pass_from_the_section_or_the_file(tmp_path: Path) -> None:
    assert parse_contract(_contract({"name": "reporting"}), "x").name == "reporting"
    path = tmp_path / "gx_shop.json"
    path.write_text(json.dumps(_contract()))
    assert load_contract(path).name == "gx_shop"
