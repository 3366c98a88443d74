"""Tiny server-side SVG charts: no JavaScript and no plotting library.

A chart is one inline `<svg role="img" aria-label="...">`. Across, everything is placed in
percent of the chart's width and, down, in pixels, so the chart stretches to its card while its
text keeps one readable size on a phone and on a laptop. The axis labels of the time charts sit
just outside the svg's box (overflow visible), in the margin dashboard.css gives it.

Each bar or point is a group whose first child is a `<title>`: browsers show it as a tooltip on
hover, which is how a reader gets the exact numbers. role="img" hides the inside from screen
readers, so the page puts the same numbers in a table under each chart. Colours come from the
series' CSS classes. All text goes through format_html, so names from the database are escaped.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

FONT_SIZE = 12
# Time charts (columns and line): the plot's top and bottom in pixels, dates under it.
TIME_HEIGHT, TIME_TOP, TIME_BOTTOM = 200, 8, 176
BAR_ROW_HEIGHT = 40
# Room at the end of the longest horizontal bar for its total.
BAR_LIST_REACH = 88.0
# Longer labels are cut on the chart; the tooltip and the table keep them whole.
BAR_LABEL_CHARS = 60


@dataclass(frozen=True)
class Segment:
    value: int
    css_class: str


@dataclass(frozen=True)
class Bar:
    """One bar, stacked from its segments (bottom or left first)."""

    label: str
    segments: Sequence[Segment]
    tooltip: str

    @property
    def total(self) -> int:
        return sum(segment.value for segment in self.segments)


@dataclass(frozen=True)
class Point:
    """One point of a line; `value` None leaves a gap in the line."""

    label: str
    value: float | Decimal | None
    tooltip: str


def value_ticks(maximum: float, *, count: int = 4) -> list[int]:
    """0, then whole steps of 1, 2 or 5 times a power of ten, up to at least `maximum`."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = max(1, round(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)))
    return list(range(0, math.ceil(maximum / step) * step + 1, step))


def _px(number: float) -> str:
    return f"{number:.1f}"


def _pct(number: float) -> str:
    return f"{number:.2f}%"


def _join(parts: Sequence[str]) -> SafeString:
    # Every part was built by format_html, so it is already escaped.
    return mark_safe("".join(parts))


def _svg(*, kind: str, height: float, aria_label: str, parts: Sequence[str]) -> SafeString:
    return format_html(
        '<svg class="chart chart-{}" width="100%" height="{}" role="img" aria-label="{}" '
        'font-size="{}" xmlns="http://www.w3.org/2000/svg">{}</svg>',
        kind,
        _px(height),
        aria_label,
        FONT_SIZE,
        _join(parts),
    )


def _time_y(value: float, top_value: float) -> float:
    return TIME_BOTTOM - float(value) / top_value * (TIME_BOTTOM - TIME_TOP)


def _time_axis(ticks: Sequence[int], *, top_value: float, suffix: str) -> list[str]:
    parts = []
    for tick in ticks:
        y = _time_y(tick, top_value)
        parts.append(
            format_html(
                '<line class="chart-grid" x1="0" x2="100%" y1="{}" y2="{}"/>'
                '<text class="chart-axis" x="-6" y="{}" text-anchor="end">{}{}</text>',
                _px(y),
                _px(y),
                _px(y + FONT_SIZE / 3),
                tick,
                suffix,
            )
        )
    return parts


def _time_slot(*, index: int, count: int, label: str, label_every: int, tooltip: str):
    """The title, hover area and date label of one column of a time chart."""
    slot = 100 / count
    x = index * slot
    pieces = [
        format_html("<title>{}</title>", tooltip),
        # The whole column answers the hover, so a day with nothing still shows its numbers.
        format_html(
            '<rect class="chart-hit" x="{}" y="{}" width="{}" height="{}"/>',
            _pct(x),
            TIME_TOP,
            _pct(slot),
            TIME_BOTTOM - TIME_TOP,
        ),
    ]
    # Counted back from the last column, so the newest day always has its label; every other
    # label is "minor" and the stylesheet drops those where the chart is narrow.
    step, rest = divmod(count - 1 - index, label_every)
    if not rest:
        pieces.append(
            format_html(
                '<text class="chart-axis{}" x="{}" y="{}" text-anchor="middle">{}</text>',
                " chart-tick-minor" if step % 2 else "",
                _pct(x + slot / 2),
                TIME_HEIGHT - 6,
                label,
            )
        )
    return x, slot, pieces


def column_chart(*, bars: Sequence[Bar], aria_label: str, label_every: int = 1) -> SafeString:
    """Vertical stacked bars along a time axis, with a y axis of whole numbers."""
    ticks = value_ticks(max((bar.total for bar in bars), default=0))
    parts = _time_axis(ticks, top_value=ticks[-1], suffix="")
    for index, bar in enumerate(bars):
        x, slot, pieces = _time_slot(
            index=index,
            count=len(bars),
            label=bar.label,
            label_every=label_every,
            tooltip=bar.tooltip,
        )
        stacked = 0
        for segment in bar.segments:
            if segment.value <= 0:
                continue
            top = _time_y(stacked + segment.value, ticks[-1])
            pieces.append(
                format_html(
                    '<rect class="chart-bar {}" x="{}" y="{}" width="{}" height="{}"/>',
                    segment.css_class,
                    _pct(x + slot * 0.15),
                    _px(top),
                    _pct(slot * 0.7),
                    _px(_time_y(stacked, ticks[-1]) - top),
                )
            )
            stacked += segment.value
        parts.append(format_html('<g class="chart-item">{}</g>', _join(pieces)))
    return _svg(kind="time", height=TIME_HEIGHT, aria_label=aria_label, parts=parts)


def line_chart(
    *,
    points: Sequence[Point],
    aria_label: str,
    css_class: str,
    y_max: float = 100,
    y_suffix: str = "%",
    label_every: int = 1,
) -> SafeString:
    """A line from 0 to `y_max` along a time axis; points without a value break the line."""
    ticks = [round(y_max * quarter / 4) for quarter in range(5)]
    parts = _time_axis(ticks, top_value=y_max, suffix=y_suffix)
    # A <path> cannot mix percent and pixels; separate <line>s can.
    lines, items, previous = [], [], None
    for index, point in enumerate(points):
        x, slot, pieces = _time_slot(
            index=index,
            count=len(points),
            label=point.label,
            label_every=label_every,
            tooltip=point.tooltip,
        )
        if point.value is None:
            previous = None
        else:
            here = (_pct(x + slot / 2), _px(_time_y(point.value, y_max)))
            if previous:
                lines.append(
                    format_html(
                        '<line class="chart-line {}" x1="{}" y1="{}" x2="{}" y2="{}"/>',
                        css_class,
                        *previous,
                        *here,
                    )
                )
            pieces.append(
                format_html(
                    '<circle class="chart-point {}" cx="{}" cy="{}" r="4"/>', css_class, *here
                )
            )
            previous = here
        items.append(format_html('<g class="chart-item">{}</g>', _join(pieces)))
    return _svg(kind="time", height=TIME_HEIGHT, aria_label=aria_label, parts=parts + lines + items)


def bar_list_chart(*, bars: Sequence[Bar], aria_label: str) -> SafeString:
    """Horizontal stacked bars, one per row, each labelled above and totalled at its end."""
    longest = max((bar.total for bar in bars), default=0) or 1
    parts = []
    for index, bar in enumerate(bars):
        y = index * BAR_ROW_HEIGHT
        pieces = [
            format_html("<title>{}</title>", bar.tooltip),
            format_html(
                '<rect class="chart-hit" x="0" y="{}" width="100%" height="{}"/>',
                y,
                BAR_ROW_HEIGHT,
            ),
            format_html(
                '<text class="chart-label" x="0" y="{}">{}</text>',
                y + 13,
                Truncator(bar.label).chars(BAR_LABEL_CHARS),
            ),
        ]
        x = 0.0
        for segment in bar.segments:
            if segment.value <= 0:
                continue
            width = segment.value / longest * BAR_LIST_REACH
            pieces.append(
                format_html(
                    '<rect class="chart-bar {}" x="{}" y="{}" width="{}" height="14"/>',
                    segment.css_class,
                    _pct(x),
                    y + 19,
                    _pct(width),
                )
            )
            x += width
        pieces.append(
            format_html(
                '<text class="chart-value" x="{}" dx="6" y="{}">{}</text>',
                _pct(x),
                y + 31,
                bar.total,
            )
        )
        parts.append(format_html('<g class="chart-item">{}</g>', _join(pieces)))
    return _svg(kind="bars", height=len(bars) * BAR_ROW_HEIGHT, aria_label=aria_label, parts=parts)
