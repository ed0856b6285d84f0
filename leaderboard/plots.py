"""Server-rendered SVG plots of a snapshot: ratings with intervals, and pairwise heatmaps.

Each plot is its own ``matplotlib.figure.Figure``, never pyplot: pyplot keeps every open
figure in a process-wide registry, which a web server's threads would share and leak into.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ACCENT = "#3050e0"
IN_HOUSE = "#d9480f"
NOTHING_TO_DRAW = "No model has enough votes on this board yet"


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()


@cache
def _matplotlib() -> None:
    """Import matplotlib at the first plot, not with the web server: it is a third of a second
    of every start, and most pages draw nothing."""
    import matplotlib

    # Hashes make each file's bytes depend on the content only, so cached SVGs compare equal.
    matplotlib.rcParams["svg.hashsalt"] = "image-arena"
    matplotlib.rcParams["svg.fonttype"] = "none"


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    _matplotlib()
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    return figure, figure.subplots()


def _say(axes: Axes, message: str) -> None:
    """Write a message across empty axes."""
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()


def ratings_plot(
    *,
    names: Sequence[str],
    ratings: Sequence[float],
    lower: Sequence[float],
    upper: Sequence[float],
    in_house: Sequence[bool],
) -> str:
    """Each model's rating as a dot with its 95% interval, best at the top."""
    count = len(names)
    figure, axes = _figure(7.5, 0.45 * count + 1.2)
    if not count:
        _say(axes, NOTHING_TO_DRAW)
        return _svg(figure)
    positions = np.arange(count)[::-1]
    rating = np.asarray(ratings)
    errors = np.vstack([rating - np.asarray(lower), np.asarray(upper) - rating])
    colours = [IN_HOUSE if flag else ACCENT for flag in in_house]
    for y, x, low, high, colour in zip(
        positions, rating, errors[0], errors[1], colours, strict=True
    ):
        axes.errorbar(x, y, xerr=[[low], [high]], fmt="o", color=colour, capsize=4, lw=1.6, ms=6)
    axes.set_yticks(positions, labels=list(names))
    axes.set_xlabel("Rating (Bradley-Terry, Elo scale) with 95% interval")
    axes.grid(axis="x", alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def heatmap(
    *, matrix: Sequence[Sequence[float | None]], names: Sequence[str], title: str, percent: bool
) -> str:
    """A model-by-model matrix (row against column) with its value written in each cell."""
    size = len(names)
    figure, axes = _figure(1.0 * size + 2.5, 0.8 * size + 1.8)
    if not size:
        # A category board that hides every model has no matrix (and numpy's 1-d empty array
        # has no diagonal to fill).
        _say(axes, NOTHING_TO_DRAW)
        return _svg(figure)
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    values = values.reshape(size, size)
    np.fill_diagonal(values, np.nan)  # a model never meets itself
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    masked = np.ma.masked_invalid(values)
    image = axes.imshow(
        masked,
        cmap="RdBu" if percent else "Blues",
        vmin=0 if percent else None,
        vmax=1 if percent else None,
    )
    axes.set_xticks(range(size), labels=list(names), rotation=35, ha="right")
    axes.set_yticks(range(size), labels=list(names))
    axes.set_title(title)
    for i in range(size):
        for j in range(size):
            if np.isnan(values[i, j]):
                continue
            text = f"{values[i, j]:.0%}" if percent else f"{int(values[i, j])}"
            strong = abs(values[i, j] - 0.5) > 0.3 if percent else values[i, j] > 0.6 * top
            axes.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=9,
                color="white" if strong else "black",
            )
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return _svg(figure)


@dataclass(frozen=True)
class HistoryLine:
    """One version's overall rating and interval at each snapshot, oldest first."""

    label: str
    times: Sequence[datetime]
    ratings: Sequence[float]
    lower: Sequence[float]
    upper: Sequence[float]


HISTORY_COLOURS = (ACCENT, IN_HOUSE, "#2b8a3e", "#862e9c", "#495057")


def rating_history_plot(
    *,
    lines: Sequence[HistoryLine],
    bands: bool = True,
    empty: str = "No overall board has rated this model yet",
) -> str:
    """Ratings over time, one line per version (a model's page) or per model (a board's
    history, drawn without bands so many lines stay readable)."""
    import matplotlib.dates as mdates

    figure, axes = _figure(7.5, 3.6)
    for index, line in enumerate(lines):
        colour = HISTORY_COLOURS[index % len(HISTORY_COLOURS)]
        style = "-" if index < len(HISTORY_COLOURS) else "--"
        times = mdates.date2num(list(line.times))
        if bands:
            axes.fill_between(times, line.lower, line.upper, color=colour, alpha=0.2, lw=0)
        axes.plot(
            times, line.ratings, style, color=colour, lw=1.6, marker="o", ms=3, label=line.label
        )
    if not lines:
        axes.text(
            0.5,
            0.5,
            empty,
            ha="center",
            va="center",
            transform=axes.transAxes,
        )
    elif len(lines) > 1:
        axes.legend(loc="best", frameon=False, fontsize="small", ncols=2 if len(lines) > 6 else 1)
    locator = mdates.AutoDateLocator(tz=UTC)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    axes.set_xlabel("Snapshot time (UTC)")
    axes.set_ylabel("Rating with 95% interval")
    axes.grid(alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def speed_plot(
    *,
    names: Sequence[str],
    seconds: Sequence[float],
    ratings: Sequence[float],
    lower: Sequence[float],
    upper: Sequence[float],
    in_house: Sequence[bool],
    hardware: str,
) -> str:
    """Quality against speed: each model's rating (with its interval) over its median
    generation time, on a log axis; faster is to the left, better is up."""
    figure, axes = _figure(7.5, 4.8)
    if not names:
        _say(axes, "No rated model has a recorded generation time yet")
        return _svg(figure)
    rating = np.asarray(ratings, dtype=float)
    errors = np.vstack([rating - np.asarray(lower), np.asarray(upper) - rating])
    for x, y, low, high, name, flag in zip(
        seconds, rating, errors[0], errors[1], names, in_house, strict=True
    ):
        colour = IN_HOUSE if flag else ACCENT
        axes.errorbar(x, y, yerr=[[low], [high]], fmt="o", color=colour, capsize=4, lw=1.4, ms=6)
        axes.annotate(name, (x, y), xytext=(6, 4), textcoords="offset points", fontsize=9)
    axes.set_xscale("log")
    axes.set_xlabel(f"Median generation time, seconds (log scale) · {hardware}")
    axes.set_ylabel("Rating with 95% interval")
    axes.grid(alpha=0.3, which="both")
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)
