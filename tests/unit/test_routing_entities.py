"""What the routing layer reads from a contract: entities, item keys from rows, and which
items a change to a table touches, on the sample contract and on the workshop's own."""

from __future__ import annotations

import json

import pytest

from cutover.contract.load import load_contract, parse_contract
from cutover.routing.changes import Change, VersionClock
from cutover.routing.entities import Entities, RoutingError
from cutover.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit
# the workshop's own contract, beside the project (read in place, never copied)
WORKSHOP = PROJECT_ROOT.parent / "shared" / "workshop" / "migrationContract.json"


@pytest.fixture(scope="module")
def sample() -> Entities:
    return Entities(load_contract(PROJECT_ROOT / "contracts" / "ecommerce.json"))


def _deps(entities: Entities, table: str) -> dict[str, tuple[tuple[str, str], ...]]:
    return {d.entity.name: d.pairs for d in entities.dependents(table)}


def test_a_change_reaches_the_items_that_join_or_aggregate_it(sample: Entities) -> None:
    assert _deps(sample, "orders") == {"USER": (("id", "user_id"),)}
    assert _deps(sample, "order_items") == {
        "CART": (("product_id", "product_id"),),
        "ORDER": (("id", "order_id"),),
        "PRODUCTS": (("id", "product_id"),),
    }
    # a chain's first step joins products; its second (categories) is not followed
    assert _deps(sample, "products")["CART"] == (("product_id", "id"),)
    assert "CART" not in _deps(sample, "categories")
    # a self-join under an alias: a category's children show its name
    assert _deps(sample, "categories")["CATEGORIES"] == (("parent_id", "id"),)


def test_item_keys_come_from_the_rows_plain_columns(sample: Entities) -> None:
    cart = sample.get("CART")
    assert cart.item_key({"user_id": 7, "product_id": 12, "id": 99}) == {
        "PK": "USER#7", "SK": "CART#12",
    }  # fmt: skip
    assert sample.get("PRODUCTS").item_key({"id": 3}) == {"product_id": "3"}
    with pytest.raises(RoutingError, match=r"shopping_carts\.product_id"):
        cart.item_key({"user_id": 7})
    with pytest.raises(RoutingError, match="has no entity 'BASKET'; its entities are"):
        sample.get("BASKET")


def test_the_workshop_contract_maps_without_a_version_column() -> None:
    doc = json.loads(WORKSHOP.read_text())
    entities = Entities(parse_contract(doc, "workshop"))
    names = {e.name for e in entities}
    assert {"USER", "CART", "ORDER"} <= names
    assert all(e.version_column is None for e in entities)  # the workshop has none
    assert "order_items" in entities.source_tables()
    assert "ORDER" in _deps(entities, "order_items")


def test_changes_survive_the_outbox_encoding() -> None:
    import datetime as dt
    from decimal import Decimal

    clock = VersionClock()
    first, second = clock.next(), clock.next()
    assert second > first
    change = Change("orders", "put", {"id": 5},
                    {"total_amount": Decimal("12.50"), "updated_at": first, "note": b"\x00\xff",
                     "day": dt.date(2024, 2, 29), "n": None})  # fmt: skip
    stored = json.loads(json.dumps(change.to_json()))  # as the phase-4 outbox item keeps it
    assert Change.from_json(stored) == change
