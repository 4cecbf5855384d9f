"""The estimate as the table `cutover estimate` prints."""

from __future__ import annotations

from typing import Any


def duration(seconds: float) -> str:
    """``0.4 s``, ``12m 05s``, ``3h 20m``, ``4d 06h``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def money(usd: float) -> str:
    return f"${usd:,.4f}" if usd < 1 else f"${usd:,.2f}"


def _table(header: list[str], rows: list[list[str]], left: set[int] | None = None) -> list[str]:
    """Columns padded to their widest cell; those in ``left`` (default: the first)
    left-aligned, the others right-aligned."""
    left = {0} if left is None else left
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _gsis(source: dict[str, Any]) -> str:
    parts = [
        f"{g['index']} {g['wcu_per_item']:.2f}"
        + (f" ({g['share']:.0%} of items)" if 0 < g["share"] < 1 else "")
        for g in source["gsis"]
        if g["share"] > 0
    ]
    return ", ".join(parts) or "-"


def _scenario_name(s: dict[str, Any], given: bool) -> str:
    if s["label"] != "contract":
        return "scaled"
    return "as given" if given else "this database"


def format_estimate(est: dict[str, Any], contract_path: str) -> str:
    client = est["client"]
    capacities = {
        f"{c['mode']}, {c['units_per_s']:,.0f} {'WRU/s' if c['mode'] == 'on-demand' else 'WCU/s'}"
        f" per table and per GSI ({c['origin']})"
        for c in est["capacity"].values()
    }
    methods = sorted({c["method"] for c in est["counts"].values()})
    how = {
        "exact": "COUNT(*)",
        "estimate": "information_schema estimate",
        "given": "given with --rows",
    }
    sizes = {
        "measured": "measured on items the contract's item builder made from "
        f"up to {est['sample_per_source']:,} rows per source",
        "column types": "guessed from the contract's attribute types (no rows read)",
    }
    lines = [
        f"estimate for contract {est['contract']} ({contract_path})",
        "  rows:     "
        + ("" if est["rows_from"] == "--rows" else f"{est['rows_from']}, ")
        + " / ".join(how[m] for m in methods),
        "  sizes:    " + "; ".join(sizes[s] for s in est["sizes_from"]),
        f"  client:   {client['cpu_us_per_item']:g} µs CPU per item ({client['origin']})",
        f"            = {client['items_per_s_per_core']:,.0f} items/s per core; "
        f"{client['cores']} cores ({client['cores_origin']})",
        *(f"  capacity: {c}" for c in sorted(capacities)),
        f"  price:    ${est['price_per_million_wru']:g} per million write request units "
        "(on-demand, standard table class)",
        "",
    ]
    lines += _table(
        ["source", "rows", "items", "avg bytes", "WCU/item", "GSI WCU/item"],
        [
            [
                f"{s['label']} ({s['source_table']})",
                f"{s['rows']:,}",
                f"{s['items']:,}",
                f"{s['avg_item_bytes']:,.0f}",
                f"{s['wcu_per_item']:.2f}",
                _gsis(s),
            ]
            for s in est["sources"]
        ],
        left={0, 5},
    )
    lines.append("")
    lines += _table(
        [
            "",
            "rows",
            "items",
            "table WCU",
            "GSI WCU",
            "total WCU",
            "WCU/row",
            "time",
            "bound by",
            "cores",
            "on-demand cost",
        ],
        [
            [
                _scenario_name(s, "given" in methods),
                f"{s['rows']:,}",
                f"{s['items']:,}",
                f"{s['table_wcu']:,}",
                f"{s['gsi_wcu']:,}",
                f"{s['total_wcu']:,}",
                f"{s['wcu_per_row']:.3f}",
                duration(s["seconds"]),
                s["bound"],
                f"{s['cores_needed']}",
                money(s["cost_usd"]),
            ]
            for s in est["scenarios"]
        ],
        left={0, 8},
    )
    lines += [
        "",
        "time: the load at the capacity above, or the client's pace on "
        f"{client['cores']} cores when slower; cores: what keeps up with the capacity",
    ]
    lines += [f"note: {n}" for n in est["notes"]]
    if "validation" in est:
        lines += ["", *format_validation(est["validation"], "given" in methods)]
    return "\n".join(lines)


def _gb(gb: float) -> str:
    """``392.9``, ``2.54``, ``0.0021``."""
    if gb >= 10:
        return f"{gb:,.1f}"
    return f"{gb:.2f}" if gb >= 0.01 or not gb else f"{gb:.2g}"


def format_validation(val: dict[str, Any], given: bool = False) -> list[str]:
    """The validation section: one table, per scenario its tables and their total."""
    prices = val["prices"]
    lines = [
        "validation: reading the tables back, DynamoDB export to S3 vs parallel Scan "
        f"({prices['region']} list prices as of {prices['as_of']}; export time assumed)",
        "",
    ]
    rows = []
    for s in val["scenarios"]:
        name = _scenario_name(s, given)
        tables = s["tables"]
        parts = [(t["table"], t) for t in tables]
        if len(tables) > 1:
            parts.append(("total", None))
        for i, (table, t) in enumerate(parts):
            row = t or s
            scan = row["scan"]
            rows.append(
                [
                    name if i == 0 else "",
                    table,
                    f"{row['items']:,}",
                    _gb(row["gb"]),
                    money(row["export"]["cost_usd"]),
                    duration(row["export"]["seconds"]),
                    f"{scan['read_units']:,.0f}",
                    money(scan["cost_usd"]),
                    duration(scan["seconds"]),
                    scan.get("bound", ""),
                ]
            )
    lines += _table(
        [
            "",
            "table",
            "items",
            "GB",
            "export cost",
            "export time",
            "scan RRU",
            "scan cost",
            "scan time",
            "bound by",
        ],
        rows,
        left={0, 1, 9},
    )
    lines += [""] + [f"note: {n}" for n in val["notes"]]
    return lines
