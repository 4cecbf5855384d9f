"""The reverse dependency index: which items a changed row feeds, read from contracts nobody
tuned it to (the DynamoDB modernizer workshop's own, after `contract fix`) and the sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cutover.contract.fix import apply_fixes, find_fixes
from cutover.contract.load import load_contract, read_json
from cutover.settings import PROJECT_ROOT
from cutover.sync.mapper import (
    Cascade,
    DependencyIndex,
    DependentsOf,
    Derive,
    Everything,
    KeysBefore,
    Remove,
    decode,
)

pytestmark = pytest.mark.unit
WORKSHOP = PROJECT_ROOT.parent / "shared" / "workshop" / "migrationContract.json"


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> DependencyIndex:
    doc = read_json(WORKSHOP)
    fixed = apply_fixes(doc, find_fixes(load_contract(WORKSHOP), doc))
    path: Path = tmp_path_factory.mktemp("ws") / "workshop.json"
    path.write_text(json.dumps(fixed))
    return DependencyIndex(load_contract(path))


def test_an_email_change_moves_the_carts_and_orders_that_key_on_it(
    workshop: DependencyIndex,
) -> None:
    before = {"id": 7, "email": "old@example.org", "username": "u7"}
    after = {**before, "email": "new@example.org"}
    refs = set(workshop.refs("users", before, after))
    assert Derive("USER", json.dumps({"id": 7})) in refs
    keys_before = {(r.entity, r.column) for r in refs if isinstance(r, KeysBefore)}
    assert keys_before == {("CART", "user_id"), ("ORDER", "user_id")}
    dependents = {(r.entity, r.column, decode(r.value)) for r in refs
                  if isinstance(r, DependentsOf)}  # fmt: skip
    assert {("CART", "user_id", 7), ("ORDER", "user_id", 7)} <= dependents


def test_a_deleted_row_removes_its_own_item_and_refreshes_what_reads_it(
    workshop: DependencyIndex,
) -> None:
    row = {"id": 40, "order_id": 9, "product_id": 3, "quantity": 1}
    refs = set(workshop.refs("order_items", row, None))
    assert not any(isinstance(r, Derive) for r in refs)  # no item of its own
    assert ("ORDER", "id", 9) in {(r.entity, r.column, decode(r.value)) for r in refs
                                  if isinstance(r, DependentsOf)}  # fmt: skip


def test_reads_no_key_follows_take_the_documented_fallback() -> None:
    """The sample's breadcrumbs read categories in subqueries and its carts reach them
    through a chain's later step: no equality selects the rows a change touches, so the whole
    entity is derived again; each fallback says why."""
    index = DependencyIndex(load_contract(PROJECT_ROOT / "contracts" / "ecommerce.json"))
    fallback = {(r.entity.name, r.table): r.why for r in index.fallbacks()}
    assert "subquery" in fallback[("CATEGORIES", "categories")]
    assert "without an equality" in fallback[("CART", "categories")]
    refs = set(index.refs("categories", {"id": 1, "name": "a", "parent_id": None},
                          {"id": 1, "name": "b", "parent_id": None}))  # fmt: skip
    assert {Everything("CATEGORIES"), Everything("CART")} <= refs


def test_the_workshop_contract_once_fixed_follows_every_read_by_key(
    workshop: DependencyIndex,
) -> None:
    assert workshop.fallbacks() == []


def test_the_sample_reads_joined_rows_by_key_where_an_equality_allows() -> None:
    index = DependencyIndex(load_contract(PROJECT_ROOT / "contracts" / "ecommerce.json"))
    refs = set(index.refs("orders", {"id": 5, "user_id": 1, "status": "paid"},
                          {"id": 5, "user_id": 2, "status": "paid"}))  # fmt: skip
    users = {decode(r.value) for r in refs if isinstance(r, DependentsOf) and r.entity == "USER"}
    assert users == {1, 2}, "an order moved between users refreshes both users' aggregates"
    assert Remove("ORDER", json.dumps({"PK": "USER#1", "SK": "ORDER#5"}, sort_keys=True)) in refs


def test_a_cascading_delete_takes_the_fallback_for_what_the_cascade_reaches() -> None:
    index = DependencyIndex(load_contract(PROJECT_ROOT / "contracts" / "ecommerce.json"))
    index.set_cascades([Cascade("fk_cart_user", "shopping_carts", "users", ("id",), True, False)])
    deleted = set(index.refs("users", {"id": 3, "email": "x"}, None))
    assert any(isinstance(r, Everything) and r.entity == "CART" for r in deleted)
    updated = set(index.refs("users", {"id": 3, "email": "x"}, {"id": 3, "email": "y"}))
    assert not any(isinstance(r, Everything) and r.entity == "CART" for r in updated)


def test_an_update_refreshes_only_the_entities_that_read_a_changed_column() -> None:
    """A bio edit feeds only the user's own item; a username edit also feeds the products the
    user sells (they show the seller's name); an order's status feeds the user's spend (its
    aggregate's condition) but not the carts, whose subquery reads the order by an alias
    (``o.id``, ``o.user_id``): moving the order to another user does."""
    index = DependencyIndex(load_contract(PROJECT_ROOT / "contracts" / "ecommerce.json"))
    user = {"id": 3, "username": "u3", "email": "u3@example.org", "bio": "a"}
    assert set(index.refs("users", user, {**user, "bio": "b"})) == {
        Derive("USER", json.dumps({"id": 3}))
    }
    renamed = set(index.refs("users", user, {**user, "username": "v3"}))
    assert DependentsOf("PRODUCTS", "seller_id", "3") in renamed

    order = {"id": 5, "user_id": 1, "status": "paid", "total_amount": 10}
    cancelled = set(index.refs("orders", order, {**order, "status": "cancelled"}))
    assert DependentsOf("USER", "id", "1") in cancelled
    assert Everything("CART") not in cancelled
    assert Everything("CART") in set(index.refs("orders", order, {**order, "user_id": 2}))
    deleted = set(index.refs("users", user, None))
    assert DependentsOf("PRODUCTS", "seller_id", "3") in deleted, "a delete always counts"
