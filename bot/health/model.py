"""The shapes health checks share: components, their dependencies, probe results, views.

A site's parts depend on each other: droplet -> tunnel -> router -> modem and cameras. A part
whose parent is failing or down cannot be checked on its own, and never alerts on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DROPLET, TUNNEL, ROUTER, MODEM = "droplet", "tunnel", "router", "modem"
CAMERA_PREFIX = "camera:"
# The fixed parts in dependency order (cameras come last, after the router).
PARTS: tuple[str, ...] = (DROPLET, TUNNEL, ROUTER, MODEM)

# WireGuard's REJECT_AFTER_TIME: a peer whose latest handshake is older has no session.
HANDSHAKE_STALE_AFTER = 180.0

Figure = float | int | str | None


class State(enum.StrEnum):
    OK = "ok"
    FAILING = "failing"  # failed, not yet alert_after times in a row
    DOWN = "down"
    UNKNOWN = "unknown"  # never checked, or could not be (e.g. a refused camera password)


MUTED = "muted"  # shown instead of the state while the site's alerts are muted
# A mute without an end (until /unmute) is stored as this time.
MUTED_FOREVER = datetime(9999, 12, 31, tzinfo=UTC)


def camera_component(name: str) -> str:
    return f"{CAMERA_PREFIX}{name}"


def is_camera(component: str) -> bool:
    return component.startswith(CAMERA_PREFIX)


def camera_name(component: str) -> str:
    return component[len(CAMERA_PREFIX):]


def parent_of(component: str) -> str | None:
    """The part ``component`` is reached through (None for the droplet)."""
    if component == DROPLET:
        return None
    if component == TUNNEL:
        return DROPLET
    if component == ROUTER:
        return TUNNEL
    if component == MODEM or is_camera(component):
        return ROUTER
    raise ValueError(f"unknown component {component!r}")


def ancestors(component: str) -> list[str]:
    """Parents of ``component``, nearest first: ancestors("modem") == [router, tunnel, droplet]."""
    out: list[str] = []
    parent = parent_of(component)
    while parent is not None:
        out.append(parent)
        parent = parent_of(parent)
    return out


def ordered(components: list[str]) -> list[str]:
    """Dependency order: the fixed parts first, then cameras by name."""
    rank = {p: i for i, p in enumerate(PARTS)}
    return sorted(components, key=lambda c: (rank.get(c, len(PARTS)), c))


@dataclass(frozen=True)
class Probe:
    """One check of one component.

    ``ok`` None: no information (not checked on purpose, e.g. a camera password the camera
    refused is never sent again); the component's state does not move.
    ``figures`` keys per component (absent when not known):
      droplet: do_status (str, DigitalOcean's), ssh_ms
      tunnel:  handshake_age (s), rx_bytes, tx_bytes, ping_ms
      router:  uptime (s), load1, mem_free (bytes), flash_free (bytes)
      modem:   rssi, rsrp (dBm), rsrq, sinr (dB), operator, registration, network_type,
               wan_ip, cgnat (1 when the WAN address is in 100.64.0.0/10)
      camera:  model, serial, firmware
    """

    component: str
    ok: bool | None
    summary: str  # the key figure ("handshake 35 s ago", "RSRP -95 dBm") or what failed
    figures: Mapping[str, Figure] = field(default_factory=dict)
    duration: float = 0.0  # seconds the check took


@dataclass(frozen=True)
class ComponentView:
    """The latest known state of one component, for /status, ``status --json`` and checks."""

    component: str
    state: str  # a State value, or MUTED
    since: datetime | None
    checked_at: datetime | None
    summary: str
    figures: Mapping[str, Figure] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": self.since.isoformat() if self.since else None,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class IncidentView:
    component: str
    started_at: datetime
    ended_at: datetime | None
    cause: str | None
    alerts_sent: int


@dataclass(frozen=True)
class SiteHealth:
    site: str
    components: Mapping[str, ComponentView]  # in dependency order
    muted_until: datetime | None = None
    incident: IncidentView | None = None  # the open one, if any
    has_camera: bool = False
    timezone: str | None = None


@dataclass(frozen=True)
class HourRow:
    """One hour of one component, kept for charts: checks, how many were up, and the key
    figure's min and mean (tunnel: handshake age in s; modem: RSRP, else RSSI, in dBm)."""

    component: str
    hour: datetime
    checks: int
    up: int
    value_min: float | None
    value_mean: float | None
