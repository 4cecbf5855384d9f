"""The canonical text of an item, worked out by hand for each thing it puts right and for
texts that only look like one."""

from __future__ import annotations

from typing import Any

import pytest

from cutover.transform.canonical import canonical_item


@pytest.mark.parametrize(
    ("item", "text"),
    [
        ({"b": {"N": "1.50"}, "a": {"N": "-0"}}, '{"a":{"N":"0"},"b":{"N":"1.5"}}'),
        ({"n": {"N": "1E+2"}}, '{"n":{"N":"100"}}'),
        ({"n": {"N": "007"}}, '{"n":{"N":"7"}}'),
        ({"n": {"N": "-0.0"}, "m": {"N": "10.10"}}, '{"m":{"N":"10.1"},"n":{"N":"0"}}'),
        ({"n": {"N": "-571.33"}, "m": {"N": "0.001"}}, '{"m":{"N":"0.001"},"n":{"N":"-571.33"}}'),
        ({"s": {"SS": ["b", "a", "b"]}}, '{"s":{"SS":["a","b"]}}'),
        ({"s": {"NS": ["10", "9.0"]}}, '{"s":{"NS":["9","10"]}}'),
        ({"l": {"L": [{"N": "2.50"}, {"SS": ["z", "y"]}]}},
         '{"l":{"L":[{"N":"2.5"},{"SS":["y","z"]}]}}'),
        ({"m": {"M": {"z": {"N": "1"}, "N": {"N": "3.0"}}}},
         '{"m":{"M":{"N":{"N":"3"},"z":{"N":"1"}}}}'),
        # text that reads like a number or a set inside a string is left as it is
        ({"s": {"S": '"N":"1.50" "SS":['}}, '{"s":{"S":"\\"N\\":\\"1.50\\" \\"SS\\":["}}'),
        ({"N": {"S": "x"}, "SS": {"L": []}}, '{"N":{"S":"x"},"SS":{"L":[]}}'),
        ({"k": {"N": "12"}, "cutover_version": {"N": "5"}}, '{"k":{"N":"12"}}'),
    ],
)  # fmt: skip
def test_canonical_text(item: dict[str, Any], text: str) -> None:
    assert canonical_item(item) == text
