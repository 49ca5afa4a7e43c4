"""The health texts of /status, /status SITE and /uptime: health views in, text out.

Short lines for a phone's screen. Times are shown in the site's timezone (an IANA name in
:class:`SiteHealth`; none, or one this host does not know, means the host's local time).
Datetimes without a timezone are taken as UTC, as the database stores them. A long
overview can pass Telegram's limit: send it through ``bot.texts.split_message``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.health.model import (
    DROPLET,
    MODEM,
    MUTED,
    MUTED_FOREVER,
    ROUTER,
    TUNNEL,
    ComponentView,
    Figure,
    HourRow,
    IncidentView,
    SiteHealth,
    State,
    camera_name,
    is_camera,
    ordered,
)

__all__ = [
    "DAY",
    "WEEK",
    "availability",
    "figure_parts",
    "key_figure",
    "mark",
    "span",
    "status_detail",
    "status_overview",
    "uptime_text",
    "within",
]

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
HOUR = timedelta(hours=1)

MARKS: Mapping[str, str] = {
    State.OK: "✅", State.FAILING: "⚠️", State.DOWN: "❌", State.UNKNOWN: "❔", MUTED: "🔕",
}
NO_SITES = "No sites yet. /setup SITE creates one."
SHORT_SUMMARY = 28  # what fits after a mark on a phone's line
LINE = 44  # detail lines wrap near this width


# -- small formatters ---------------------------------------------------------------------

def mark(state: str) -> str:
    return MARKS.get(state, "❔")


def span(seconds: float) -> str:
    """A coarse duration, one unit (the thresholds of ``bot.texts.ago``): 35 s, 12 min, 5 h, 3 d."""
    s = max(int(seconds), 0)
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{s // 60} min"
    if s < 36 * 3600:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def _number(value: Figure) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _num(value: float) -> str:
    return f"{round(value, 1):g}"


def _bytes(n: float) -> str:
    size = n
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n:.0f} B"  # not reached


def _short(text: str, limit: int = SHORT_SUMMARY) -> str:
    """``text`` on one line of at most ``limit`` characters, cut at a word if it must be."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if (space := cut.rfind(" ")) >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def _label(component: str, *, long: bool = False) -> str:
    if is_camera(component):
        return f"camera {camera_name(component)}" if long else camera_name(component)
    return component


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _zone(name: str | None) -> tzinfo | None:
    """The site's zone; None is the host's local time (``astimezone(None)``)."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return None


def _clock(when: datetime, now: datetime, tz: tzinfo | None) -> str:
    """16:00 today, "3 Jun 16:00" on another day (both in the site's time)."""
    local, today = _aware(when).astimezone(tz), _aware(now).astimezone(tz)
    if local.date() == today.date():
        return f"{local:%H:%M}"
    return f"{local.day} {local:%b %H:%M}"


def _since(when: datetime, now: datetime, tz: tzinfo | None) -> str:
    """"14:02, 12 min": when, and how long ago."""
    return f"{_clock(when, now, tz)}, {span(_seconds(now, when))}"


def _seconds(later: datetime, earlier: datetime) -> float:
    return (_aware(later) - _aware(earlier)).total_seconds()


def _muted_until(site: SiteHealth, now: datetime) -> datetime | None:
    """The end of the site's mute, while it lasts."""
    until = site.muted_until
    return until if until is not None and _seconds(until, now) > 0 else None


# -- figures ------------------------------------------------------------------------------

# Per component: (figure key, what precedes the value, how the value is written) for
# numbers; text figures are shown as they are. Order is what a reader looks for first.
_NUMERIC: Mapping[str, Sequence[tuple[str, str, str]]] = {
    DROPLET: [("ssh_ms", "SSH", "ms")],
    TUNNEL: [("handshake_age", "handshake", "ago"), ("ping_ms", "ping", "ms"),
             ("rx_bytes", "rx", "bytes"), ("tx_bytes", "tx", "bytes")],
    ROUTER: [("uptime", "up", "span"), ("load1", "load", "load"),
             ("mem_free", "RAM free", "bytes"), ("flash_free", "flash free", "bytes")],
    MODEM: [("rsrp", "RSRP", "dBm"), ("rsrq", "RSRQ", "dB"), ("sinr", "SINR", "dB"),
            ("rssi", "RSSI", "dBm")],
}
_TEXT: Mapping[str, Sequence[tuple[str, str]]] = {
    DROPLET: [("do_status", "DO")],
    MODEM: [("network_type", ""), ("operator", ""), ("registration", "")],
    "camera": [("model", ""), ("firmware", "firmware"), ("serial", "S/N")],
}


def _with_unit(label: str, value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{label} {_bytes(value)}"
    if unit == "span":
        return f"{label} {span(value)}"
    if unit == "ago":
        return f"{label} {span(value)} ago"
    if unit == "load":
        return f"{label} {value:.2f}"
    return f"{label} {_num(value)} {unit}".rstrip()


def figure_parts(component: str, figures: Mapping[str, Figure]) -> list[str]:
    """Every known figure of ``component``, written out: ["RSRP -95 dBm", "Tele2", ...]."""
    kind = "camera" if is_camera(component) else component
    parts: list[str] = []
    for key, label in _TEXT.get(kind, ()):
        text = figures.get(key)
        if text is not None and str(text).strip():
            parts.append(f"{label} {text}".strip())
    for key, label, unit in _NUMERIC.get(kind, ()):
        value = _number(figures.get(key))
        if value is not None:
            parts.append(_with_unit(label, value, unit))
    if kind == MODEM and figures.get("wan_ip"):
        cgnat = " (CGNAT)" if _number(figures.get("cgnat")) == 1 else ""
        parts.append(f"WAN {figures['wan_ip']}{cgnat}")
    return parts


def _headline(component: str, figures: Mapping[str, Figure]) -> str:
    """The one figure that says most: handshake age, router uptime, modem signal."""
    if component == TUNNEL and (age := _number(figures.get("handshake_age"))) is not None:
        return span(age)
    if component == ROUTER and (up := _number(figures.get("uptime"))) is not None:
        return f"up {span(up)}"
    if component == MODEM:
        for key in ("rsrp", "rssi"):  # RSRP is LTE's measure; RSSI is all a 3G link gives
            if (dbm := _number(figures.get(key))) is not None:
                return f"{key.upper()} {_num(dbm)} dBm"
    return ""


def key_figure(component: str, view: ComponentView) -> str:
    """What /status shows after a component's mark: its key figure while it works, what
    went wrong while it does not, nothing when it was never checked."""
    if view.state in (State.OK, MUTED):
        figure = _headline(component, view.figures)
        if not figure and is_camera(component) and view.state == State.OK:
            figure = "online"
        if figure or view.state == State.OK:
            return figure
    if view.checked_at is None:
        return ""
    return _short(view.summary)


# -- /status ------------------------------------------------------------------------------

def _checked_any(site: SiteHealth) -> bool:
    return any(v.checked_at is not None for v in site.components.values())


def _overview_line(site: SiteHealth, now: datetime) -> str:
    head = site.site
    if (until := _muted_until(site, now)) is not None:
        head += (" (muted until /unmute)" if _aware(until) >= MUTED_FOREVER else
                 f" (muted until {_clock(until, now, _zone(site.timezone))})")
    if not _checked_any(site):
        return f"{head}: ❔ not checked yet"
    parts = []
    for component in ordered(list(site.components)):
        view = site.components[component]
        figure = key_figure(component, view)
        parts.append(" ".join(p for p in (mark(view.state), _label(component), figure) if p))
    return f"{head}: {' · '.join(parts)}"


# The last overview's lines by site object. The health view hands out the same immutable
# SiteHealth until something about that site changes, so most lines are found here; the
# object is kept with its line, so its id cannot be reused while it is. A muted site's line
# names a time relative to now and is always drawn again.
_LINES: dict[int, tuple[SiteHealth, str]] = {}


def status_overview(sites: Sequence[SiteHealth], now: datetime) -> str:
    """/status: one line per site, a mark and a key figure per component."""
    if not sites:
        return NO_SITES
    lines: list[str] = []
    drawn: dict[int, tuple[SiteHealth, str]] = {}
    for site in sites:
        hit = _LINES.get(id(site))
        line = hit[1] if hit is not None and hit[0] is site else _overview_line(site, now)
        lines.append(line)
        if site.muted_until is None:
            drawn[id(site)] = (site, line)
    _LINES.clear()
    _LINES.update(drawn)
    return "\n".join([*lines, "", "/status SITE shows one site in detail."])


def _wrap(parts: Iterable[str], indent: str = "   ", width: int = LINE) -> list[str]:
    """Join ``parts`` with " · " into lines of about ``width`` characters."""
    lines: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current} · {part}" if current else part
        if current and len(candidate) > width:
            lines.append(indent + current)
            candidate = part
        current = candidate
    if current:
        lines.append(indent + current)
    return lines


def _incident_lines(incident: IncidentView, now: datetime, tz: tzinfo | None) -> list[str]:
    what = f"{_label(incident.component, long=True)} down"
    lines = [f"🚨 Incident: {what} since {_since(incident.started_at, now, tz)}"]
    if incident.ended_at is not None:
        lines.append(f"   ended {_clock(incident.ended_at, now, tz)}")
    if incident.cause:
        lines.append(f"   cause: {incident.cause}")
    n = incident.alerts_sent
    lines.append(f"   {n} alert{'' if n == 1 else 's'} sent" if n else "   no alert sent")
    return lines


def _component_lines(component: str, view: ComponentView, now: datetime,
                     tz: tzinfo | None) -> list[str]:
    name = _label(component, long=True)
    if view.checked_at is None and view.state == State.UNKNOWN:
        return [f"{mark(view.state)} {name}: not checked yet"]
    head = f"{mark(view.state)} {name}: {view.state}"
    if view.since is not None:
        head += f" since {_since(view.since, now, tz)}"
    checked = ("never checked" if view.checked_at is None
               else f"checked {span(_seconds(now, view.checked_at))} ago")
    summary = " ".join(view.summary.split())
    both = f"{summary} ({checked})" if summary else checked
    lines = [head, f"   {both}"] if len(both) <= LINE else [head, f"   {summary}", f"   {checked}"]
    # The summary is often one of the figures ("RSRP -95 dBm"): not twice.
    return lines + _wrap(p for p in figure_parts(component, view.figures) if p != summary)


def status_detail(site: SiteHealth, now: datetime) -> str:
    """/status SITE: the open incident, mute, and every component's state and figures."""
    tz = _zone(site.timezone)
    lines = [f"📍 {site.site}"]
    if (until := _muted_until(site, now)) is not None:
        if _aware(until) >= MUTED_FOREVER:
            lines.append(f"🔕 Alerts muted until /unmute {site.site}")
        else:
            left = span(_seconds(until, now))
            lines.append(f"🔕 Alerts muted until {_clock(until, now, tz)} ({left} left)")
    if site.incident is not None:
        lines += _incident_lines(site.incident, now, tz)
    if not site.components:
        lines.append("❔ not checked yet")
    for component in ordered(list(site.components)):
        lines += _component_lines(component, site.components[component], now, tz)
    return "\n".join(lines)


# -- /uptime ------------------------------------------------------------------------------

def within(rows: Iterable[HourRow], now: datetime, window: timedelta) -> list[HourRow]:
    """The rows of hours that started in the last ``window``: now - window < hour <= now.

    An hour row is labelled by its start, so the current (partial) hour counts and a
    24 h window holds 24 hours whatever the minute.
    """
    start, end = _aware(now) - window, _aware(now)
    return [r for r in rows if start < _aware(r.hour) <= end]


def availability(rows: Iterable[HourRow], component: str, now: datetime,
                 window: timedelta) -> float | None:
    """Share of ``component``'s checks that were up in the window, 0..1; None: no checks."""
    mine = [r for r in within(rows, now, window) if r.component == component]
    checks = sum(r.checks for r in mine)
    return sum(r.up for r in mine) / checks if checks else None


def _percent(share: float | None) -> str:
    if share is None:
        return "no data"
    if share >= 1:
        return "100 %"
    if share <= 0:
        return "0 %"
    # Rounded down: one missed check in a thousand must not read as 100.0 %.
    return f"{math.floor(share * 1000) / 10:.1f} %"


def uptime_text(site: str, rows: Sequence[HourRow], now: datetime) -> str:
    """Availability per component over the last 24 hours and 7 days."""
    recent = within(rows, now, WEEK)
    components = ordered(sorted({r.component for r in recent}))
    if not components:
        return f"📈 {site}: no checks recorded in the last 7 days."
    lines = [f"📈 {site}, checks that passed:"]
    for component in components:
        day = _percent(availability(recent, component, now, DAY))
        week = _percent(availability(recent, component, now, WEEK))
        lines.append(f"{_label(component, long=True)}: 24 h {day} · 7 d {week}")
    return "\n".join(lines)
