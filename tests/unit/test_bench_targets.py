"""The bench checks every target on the figures it prints: any one missed fails the bench
(``failed["targets"]``, so `cutover bench` exits non-zero), all met do not."""

from __future__ import annotations

from typing import Any

from cutover.bench.runner import TARGETS, _rounded, format_table, missed_targets


def _all_met() -> dict[str, Any]:
    out: dict[str, Any] = {"rows": 1000}
    for key, op, target in TARGETS:
        out[key] = target * 2 if op == ">=" else target / 2
    return out


def test_all_targets_met_is_no_failure() -> None:
    result = _rounded(_all_met())
    assert "failed" not in result and missed_targets(result) == []
    assert all(line.startswith("met ") for line in format_table(result).splitlines()[-8:])


def test_each_target_missed_alone_fails_the_bench() -> None:
    for key, op, target in TARGETS:
        out = _all_met()
        out[key] = target / 2 if op == ">=" else target * 2
        result = _rounded(out)
        assert result["failed"] == {"targets": f"missed {key} {op} {target} (got "
                                    f"{result[key]:,.2f})"}, key  # fmt: skip
        table = format_table(result)
        assert f"MISSED {key} {op} {target}" in table and "FAILED targets: missed" in table


def test_a_target_is_checked_on_the_rounded_figure_and_met_at_its_bound() -> None:
    out = _all_met()
    out["loader_cpu_us_per_item"] = 40.004  # printed as 40.00: met, as the line says
    out["loader_vs_ceiling"] = 0.7
    assert "failed" not in _rounded(out)


def test_a_stage_failure_is_kept_beside_missed_targets() -> None:
    out = _all_met()
    out["dag_parse_seconds_3_contracts"] = 5.0
    out["failed"] = {"validate": "cutover validate exited 4"}
    result = _rounded(out)
    assert result["failed"]["validate"] == "cutover validate exited 4"
    assert result["failed"]["targets"].startswith("missed dag_parse_seconds_3_contracts")
