"""From one sweep's probes to new states, alerts and incident changes: pure code.

Parts are judged in dependency order, so a part knows whether one it is reached through is
failing or down before it is judged itself (then it sends nothing of its own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.health.machine import Event, Machine, Thresholds, reboot_detected, step
from bot.health.model import ROUTER, Figure, Probe, State, ancestors, ordered
from bot.render import alerts


@dataclass(frozen=True)
class Known:
    """What was stored of one part before this sweep."""

    machine: Machine
    figures: Mapping[str, Figure]
    summary: str = ""


@dataclass(frozen=True)
class Judged:
    component: str
    machine: Machine
    figures: Mapping[str, Figure]  # the latest known (kept when this check had none)
    summary: str
    probe: Probe
    shown: str  # the state to show: the machine's, or unknown when this check said nothing
    opened: bool  # the part went down now: an incident starts
    closed: bool  # the part is back: its incident ends


@dataclass(frozen=True)
class Alert:
    kind: str  # down, recovered, reminder, reboot
    component: str
    text: str
    muted: bool
    cause: str | None = None


@dataclass(frozen=True)
class Verdict:
    parts: list[Judged]
    alerts: list[Alert] = field(default_factory=list)
    # Sweep again soon (retry_interval): a part is failing, or down with a success seen.
    retry_soon: bool = False


def _local(at: datetime, zone: str | None) -> str:
    when = at.astimezone(ZoneInfo(zone)) if zone else at.astimezone()
    return when.strftime("%H:%M")


def judge(site: str, probes: Sequence[Probe], known: Mapping[str, Known], now: datetime,
          th: Thresholds, *, muted: bool, zone: str | None = None) -> Verdict:
    by_comp = {p.component: p for p in probes}
    parts: list[Judged] = []
    events: list[Event] = []
    new_state: dict[str, State] = {}
    figures: dict[str, Mapping[str, Figure]] = {c: k.figures for c, k in known.items()}
    reboot: Alert | None = None
    for comp in ordered(list(by_comp)):
        probe = by_comp[comp]
        before = known.get(comp, Known(Machine(), {}))
        inhibited = any(new_state.get(a) in (State.FAILING, State.DOWN) for a in ancestors(comp))
        machine, evs = step(before.machine, comp, probe.ok, now, th,
                            inhibited=inhibited, muted=muted)
        new_state[comp] = machine.state
        events += evs
        kept = dict(probe.figures) if probe.ok else dict(before.figures)
        if comp == ROUTER and probe.ok:
            prev_up, up = before.figures.get("uptime"), probe.figures.get("uptime")
            if reboot_detected(_num(prev_up), _num(up)):
                reboot = Alert("reboot", comp, alerts.reboot_text(site, _num(up), _num(prev_up)),
                               muted)
        figures[comp] = kept
        parts.append(Judged(
            comp, machine, kept, probe.summary, probe,
            shown=State.UNKNOWN.value if probe.ok is None else machine.state.value,
            opened=machine.state == State.DOWN and before.machine.state != State.DOWN,
            closed=before.machine.state == State.DOWN and machine.state != State.DOWN))
    summaries = {j.component: j.summary for j in parts}
    out: list[Alert] = []
    for ev in events:
        if ev.kind == "down":
            cause = alerts.likely_cause(ev.component, figures)
            text = alerts.outage_text(site, ev.component, _local(ev.since, zone), figures,
                                      summaries.get(ev.component, ""))
            out.append(Alert("down", ev.component, text, ev.muted, cause))
        elif ev.kind == "recovered":
            out.append(Alert("recovered", ev.component,
                             alerts.recovery_text(site, ev.component, ev.duration), ev.muted))
        else:
            out.append(Alert("reminder", ev.component,
                             alerts.reminder_text(site, ev.component, _local(ev.since, zone),
                                                  ev.duration), ev.muted))
    # A reboot inside an outage is part of that outage's story, not a message of its own.
    if reboot is not None and not any(a.kind == "recovered" for a in out):
        out.append(reboot)
    retry = any(j.machine.state == State.FAILING
                or (j.machine.state == State.DOWN and j.machine.successes > 0) for j in parts)
    return Verdict(parts, out, retry)


def _num(value: Figure) -> float | None:
    return float(value) if isinstance(value, int | float) else None
