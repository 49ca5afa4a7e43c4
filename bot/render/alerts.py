"""Alert messages: an outage with its likely cause, a reminder, a recovery, a router reboot.

Plain text, no Markdown (nothing to escape), one or two short sentences each: they are read
on a phone's lock screen. ``figures`` maps a component to its last known figures (the keys
of :class:`bot.health.model.Probe`); a message uses what is there and leaves out the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from bot.health.model import (
    DROPLET,
    MODEM,
    ROUTER,
    TUNNEL,
    Figure,
    camera_name,
    is_camera,
)

__all__ = [
    "component_label",
    "human_duration",
    "likely_cause",
    "outage_text",
    "reboot_text",
    "recovery_text",
    "reminder_text",
    "signal_quality",
]

Figures = Mapping[str, Mapping[str, Figure]]


def human_duration(seconds: float) -> str:
    """Two units at most, rounded down: "45 s", "12 min", "3 h 5 min", "3 d", "3 d 4 h"."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def signal_quality(rsrp: float) -> str:
    """LTE RSRP bands (dBm) as operators and stick vendors commonly draw them."""
    if rsrp >= -80:
        return "excellent"
    if rsrp >= -90:
        return "good"
    if rsrp >= -100:
        return "fair"
    return "poor"


def _rssi_quality(rssi: float) -> str:
    # RSSI counts the whole channel's power (noise and neighbours too): its bands sit higher.
    if rssi >= -65:
        return "excellent"
    if rssi >= -75:
        return "good"
    if rssi >= -85:
        return "fair"
    return "poor"


def component_label(component: str) -> str:
    """How a component is named in a message: "camera:gate" -> "camera gate"."""
    return f"camera {camera_name(component)}" if is_camera(component) else component


def _number(value: Figure) -> float | None:
    # Figures parsed from command output may arrive as text.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return None


def _text(value: Figure) -> str | None:
    return str(value) if value not in (None, "") else None


def _signal(modem: Mapping[str, Figure]) -> str | None:
    """"RSRP -112 dBm (poor)", else the same from RSSI, else None."""
    if (rsrp := _number(modem.get("rsrp"))) is not None:
        return f"RSRP {rsrp:g} dBm ({signal_quality(rsrp)})"
    if (rssi := _number(modem.get("rssi"))) is not None:
        return f"RSSI {rssi:g} dBm ({_rssi_quality(rssi)})"
    return None


def _droplet_cause(droplet: Mapping[str, Figure]) -> str:
    status = _text(droplet.get("do_status"))
    if status is None:
        return "the droplet does not answer SSH"
    if status != "active":
        return f"DigitalOcean reports the droplet {status}"
    return "the droplet does not answer SSH although DigitalOcean reports it active"


def _tunnel_cause(figures: Figures) -> str:
    modem, router = figures.get(MODEM, {}), figures.get(ROUTER, {})
    facts: list[str] = []
    if (signal := _signal(modem)) is not None:
        facts.append(f"last modem signal {signal}")
    if (uptime := _number(router.get("uptime"))) is not None:
        facts.append(f"router up {human_duration(uptime)}")
    seen = "router unreachable" + ("; " + ", ".join(facts) if facts else "")
    cause = f"{seen}: likely power or LTE loss at the site"
    # Behind carrier-grade NAT nothing can dial in to the site: only the router can bring
    # the tunnel back, so there is nothing to try from here.
    if _number(modem.get("cgnat")) == 1:
        cause += " (behind carrier-grade NAT: only the router can reopen the tunnel)"
    return cause


def _modem_cause(modem: Mapping[str, Figure]) -> str:
    facts: list[str] = []
    if (registration := _text(modem.get("registration"))) is not None:
        facts.append(f"registration {registration}")
    if (operator := _text(modem.get("operator"))) is not None:
        facts.append(f"operator {operator}")
    if (signal := _signal(modem)) is not None:
        facts.append(signal)
    advice = "check the SIM, the APN or the stick"
    return f"{', '.join(facts)}: {advice}" if facts else advice


def likely_cause(root: str, figures: Figures) -> str:
    """What the figures around ``root`` suggest, as a sentence without its final full stop
    ("" when there is nothing to suggest)."""
    if root == DROPLET:
        return _droplet_cause(figures.get(DROPLET, {}))
    if root == TUNNEL:
        return _tunnel_cause(figures)
    if root == ROUTER:
        return "the tunnel is up but the router does not answer SSH"
    if root == MODEM:
        return _modem_cause(figures.get(MODEM, {}))
    if is_camera(root):
        return "the router answers; the camera does not: camera power or its cable"
    return ""


def _sentence(text: str) -> str:
    # Only the first letter: "DigitalOcean" and "RSRP" keep their capitals.
    return text[:1].upper() + text[1:] + "."


def outage_text(site: str, root: str, since_local: str, figures: Figures, problem: str) -> str:
    """ "farmhouse: tunnel down since 14:02 (<problem>). <Likely cause>." """
    head = f"{site}: {component_label(root)} down since {since_local}"
    if problem:
        head += f" ({problem})"
    cause = likely_cause(root, figures)
    return f"{head}. {_sentence(cause)}" if cause else f"{head}."


def recovery_text(site: str, component: str, duration: timedelta) -> str:
    down_for = human_duration(duration.total_seconds())
    return f"{site}: {component_label(component)} back up after {down_for} down."


def reminder_text(site: str, component: str, since_local: str, duration: timedelta) -> str:
    down_for = human_duration(duration.total_seconds())
    return f"{site}: {component_label(component)} still down since {since_local} ({down_for})."


def reboot_text(site: str, uptime: float | None, previous_uptime: float | None) -> str:
    """The router's uptime went down: it restarted ``uptime`` seconds ago."""
    text = f"{site}: router restarted"
    if uptime is not None:
        text += f" {human_duration(uptime)} ago"
    if previous_uptime is not None:
        text += f" (it had been up {human_duration(previous_uptime)})"
    return text + "."
