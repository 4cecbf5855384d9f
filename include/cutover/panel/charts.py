"""Small inline SVG charts drawn on the server: the panel works with no script and no
internet. Labels are escaped; values are numbers."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 560, 160, 30


def _axis(top: float, unit: str) -> str:
    return (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 5}" y2="{HEIGHT - PAD}" '
        'class="axis"/>'
        f'<text x="2" y="12" class="tick">{escape(_fmt(top))} {escape(unit)}</text>'
        f'<text x="2" y="{HEIGHT - PAD}" class="tick">0</text>'
    )


def _fmt(value: float) -> str:
    return f"{value:.4g}" if value < 1 else f"{value:,.0f}"


def bars(values: list[tuple[str, float | None]], unit: str, title: str) -> Markup:
    """One bar per labelled value (e.g. items/s per partition)."""
    shown = [(label, v or 0.0) for label, v in values]
    if not shown:
        return Markup("")
    top = max(v for _, v in shown) or 1.0
    step = (WIDTH - PAD - 10) / len(shown)
    parts = [_axis(top, unit)]
    for i, (label, value) in enumerate(shown):
        h = (HEIGHT - 2 * PAD) * value / top
        x = PAD + 5 + i * step
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{max(step - 4, 1):.1f}" '
            f'height="{h:.1f}" class="bar"><title>{escape(label)}: {escape(_fmt(value))} '
            f"{escape(unit)}</title></rect>"
        )
    return _svg(title, parts)


def line(points: list[float | None], unit: str, title: str, limit: float | None = None) -> Markup:
    """Values in time order, with an optional limit drawn as a dashed line."""
    shown = [p for p in points if p is not None]
    if not shown:
        return Markup("")
    top = max([*shown, limit or 0.0]) or 1.0
    n = len(shown)
    step = (WIDTH - PAD - 10) / max(n - 1, 1)

    def y(v: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top

    path = " ".join(f"{PAD + 5 + i * step:.1f},{y(v):.1f}" for i, v in enumerate(shown))
    parts = [_axis(top, unit), f'<polyline points="{path}" class="line"/>']
    parts += [f'<circle cx="{PAD + 5 + i * step:.1f}" cy="{y(v):.1f}" r="2.5" class="dot">'
              f"<title>{escape(_fmt(v))} {escape(unit)}</title></circle>"
              for i, v in enumerate(shown)]  # fmt: skip
    if limit is not None:
        parts.append(f'<line x1="{PAD}" y1="{y(limit):.1f}" x2="{WIDTH - 5}" '
                     f'y2="{y(limit):.1f}" class="limit"><title>limit {escape(_fmt(limit))}'
                     "</title></line>")  # fmt: skip
    return _svg(title, parts)


def _svg(title: str, parts: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(parts)}</svg>'
    )
