"""A site's last 24 hours as a PNG: modem signal above, tunnel availability below.

matplotlib is imported inside :func:`uptime_chart_png`, so importing this module (and the
bot) stays fast and light; the first chart pays for the import. The figure is a bare
:class:`matplotlib.figure.Figure` drawn by the Agg canvas: no pyplot, no global figure
list, no backend switch, nothing left behind between calls.

Rendering takes a good fraction of a second of CPU: call it off the event loop, e.g.
``await asyncio.to_thread(uptime_chart_png, site, rows, now)``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.health.model import MODEM, TUNNEL, HourRow
from bot.render.health_text import DAY, within

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["uptime_chart_figure", "uptime_chart_png"]

HOUR = timedelta(hours=1)
OK_COLOUR, PARTIAL_COLOUR, DOWN_COLOUR = "#2e9e44", "#e8a317", "#d62728"
MEAN_COLOUR, MIN_COLOUR = "#1f77b4", "#9ecae1"


def _hour_start(when: datetime) -> datetime:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def uptime_chart_png(site: str, rows: Sequence[HourRow], now: datetime) -> bytes:
    """The chart of ``site``'s last 24 h as PNG bytes (CPU-bound: run it in a thread)."""
    out = io.BytesIO()
    uptime_chart_figure(site, rows, now).savefig(out, format="png")
    return out.getvalue()


def uptime_chart_figure(site: str, rows: Sequence[HourRow], now: datetime) -> Figure:
    """The chart of ``site``'s last 24 h (the hours :func:`within` keeps), drawn by Agg.

    Top: the modem's signal per hour (``value_min`` and ``value_mean``, dBm). Bottom: the
    share of the tunnel's checks that were up per hour. The time axis is in ``now``'s
    timezone (UTC for a naive ``now``). An empty panel says "no data".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter, HourLocator
    from matplotlib.figure import Figure

    tz = now.tzinfo or UTC
    recent = within(rows, now, DAY)
    by_hour = {(r.component, _hour_start(r.hour)): r for r in recent}
    top = _hour_start(now)
    hours = [top - HOUR * k for k in range(23, -1, -1)]  # the 24 hour slots, oldest first
    middles = [h + HOUR / 2 for h in hours]

    fig = Figure(figsize=(8, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # Agg draws it; attaches itself to fig
    signal, tunnel = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    fig.suptitle(f"{site}: last 24 h")

    modem = [by_hour.get((MODEM, h)) for h in hours]
    means = [r.value_mean if r and r.value_mean is not None else float("nan") for r in modem]
    mins = [r.value_min if r and r.value_min is not None else float("nan") for r in modem]
    if any(r is not None and r.value_mean is not None for r in modem):
        signal.plot(middles, means, color=MEAN_COLOUR, marker="o", markersize=3, label="mean")
    if any(r is not None and r.value_min is not None for r in modem):
        signal.plot(middles, mins, color=MIN_COLOUR, linestyle="--", label="min")
    if signal.lines:
        signal.legend(loc="best", fontsize="small")
    else:
        _no_data(signal)
    signal.set_ylabel("modem signal, dBm")
    signal.grid(True, alpha=0.3)

    shares: list[float] = []
    starts: list[datetime] = []
    for h in hours:
        r = by_hour.get((TUNNEL, h))
        if r is not None and r.checks > 0:  # an hour without checks gets no bar at all
            starts.append(h)
            shares.append(100 * r.up / r.checks)
    if starts:
        colours = [OK_COLOUR if s >= 100 else DOWN_COLOUR if s <= 0 else PARTIAL_COLOUR
                   for s in shares]
        # A fully down hour still shows, as a thin red sliver at the bottom.
        heights = [max(s, 2.0) for s in shares]
        tunnel.bar(starts, heights, width=HOUR * 0.9, align="edge", color=colours)
    else:
        _no_data(tunnel)
    tunnel.set_ylim(0, 105)
    tunnel.set_ylabel("tunnel up, %")
    tunnel.grid(True, axis="y", alpha=0.3)

    tunnel.set_xlim(hours[0], hours[-1] + HOUR)
    # matplotlib.dates has no type annotations.
    locator = HourLocator(byhour=range(0, 24, 3), tz=tz)  # type: ignore[no-untyped-call]
    tunnel.xaxis.set_major_locator(locator)
    tunnel.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=tz))  # type: ignore[no-untyped-call]
    return fig


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
            color="grey", fontsize="large")
    ax.set_yticks([])
