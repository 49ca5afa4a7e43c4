"""The alert state machine of one component: probe results in, state and alert events out.

Pure: no I/O and no clock reads (``now`` is passed in), so a sweep can replay it and tests
can drive it step by step. The :class:`Machine` is persisted as JSON between checks; a
restart in the middle of an outage resumes it, so no second down alert goes out and the
recovery is still announced once.

    UNKNOWN/OK --fail--> FAILING --alert_after fails in a row--> DOWN (alert)
    DOWN --recover_after successes in a row--> OK (recovery message, if the down one went out)

A part whose parent is failing or down is *inhibited*: it follows the same states but sends
nothing of its own (the parent's alert explains it). If the parent recovers while the part is
still down, the part's down alert goes out then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from bot.errors import ValidationFailed
from bot.health.model import State

__all__ = [
    "MAX_REMIND_GAP",
    "Event",
    "Machine",
    "Thresholds",
    "reboot_detected",
    "remind_gap",
    "step",
]

# Reminders double their spacing but come at least once a day while an outage lasts.
MAX_REMIND_GAP = 86400.0

EventKind = Literal["down", "recovered", "reminder"]


@dataclass(frozen=True)
class Thresholds:
    alert_after: int = 3  # failures in a row before down (>=1)
    recover_after: int = 2  # successes in a row while down before ok (>=1)
    remind_every: float = 3600.0  # seconds; 0 = no reminders

    def __post_init__(self) -> None:
        if self.alert_after < 1:
            raise ValidationFailed("alert_after: at least 1 failure before an alert")
        if self.recover_after < 1:
            raise ValidationFailed("recover_after: at least 1 success before a recovery")
        if self.remind_every < 0:
            raise ValidationFailed("remind_every: seconds between reminders, 0 for none")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


def _parse_state(value: Any) -> State:
    try:
        return State(value)
    except ValueError:  # an unknown or missing state: start over rather than crash a sweep
        return State.UNKNOWN


@dataclass(frozen=True)
class Machine:
    """One component's alert state, persisted as JSON between checks and across restarts."""

    state: State = State.UNKNOWN
    since: datetime | None = None  # current state's start; FAILING/DOWN: the first failure
    fails: int = 0  # failures in a row
    successes: int = 0  # successes in a row while DOWN
    alerted: bool = False  # this outage's down alert was emitted (sent, or recorded muted)
    reminders: int = 0
    next_remind_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "since": _iso(self.since),
            "fails": self.fails,
            "successes": self.successes,
            "alerted": self.alerted,
            "reminders": self.reminders,
            "next_remind_at": _iso(self.next_remind_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Machine:
        if not data:
            return cls()
        return cls(
            state=_parse_state(data.get("state")),
            since=_parse_time(data.get("since")),
            fails=int(data.get("fails") or 0),
            successes=int(data.get("successes") or 0),
            alerted=bool(data.get("alerted", False)),
            reminders=int(data.get("reminders") or 0),
            next_remind_at=_parse_time(data.get("next_remind_at")),
        )


@dataclass(frozen=True)
class Event:
    kind: EventKind
    component: str
    at: datetime
    since: datetime  # start of the outage
    muted: bool  # record it, do not send it

    @property
    def duration(self) -> timedelta:
        return self.at - self.since


def remind_gap(every: float, reminders: int) -> float:
    """Seconds until the next reminder after ``reminders`` of them: doubling, at most a day."""
    # The exponent is capped so a very long outage cannot overflow the float.
    return min(every * (1 << min(reminders, 32)), MAX_REMIND_GAP)


def _after(now: datetime, seconds: float) -> datetime | None:
    return now + timedelta(seconds=seconds) if seconds > 0 else None


def _on_success(m: Machine, component: str, now: datetime, th: Thresholds,
                muted: bool) -> tuple[Machine, list[Event]]:
    if m.state is not State.DOWN:
        since = m.since if m.state is State.OK else now
        return Machine(state=State.OK, since=since), []
    successes = m.successes + 1
    if successes < th.recover_after:
        return replace(m, fails=0, successes=successes), []
    # An outage that never alerted (inhibited throughout) recovers silently.
    events = [Event("recovered", component, now, m.since or now, muted)] if m.alerted else []
    return Machine(state=State.OK, since=now), events


def _alert(m: Machine, component: str, now: datetime, th: Thresholds,
           muted: bool) -> tuple[Machine, list[Event]]:
    since = m.since or now
    down = replace(m, state=State.DOWN, since=since, alerted=True, reminders=0,
                   next_remind_at=_after(now, th.remind_every))
    return down, [Event("down", component, now, since, muted)]


def _remind(m: Machine, component: str, now: datetime, th: Thresholds,
            muted: bool) -> tuple[Machine, list[Event]]:
    if th.remind_every <= 0:
        return m, []
    if m.next_remind_at is None:  # reminders switched on during the outage: start counting
        return replace(m, next_remind_at=_after(now, th.remind_every)), []
    if now < m.next_remind_at:
        return m, []
    reminders = m.reminders + 1
    gap = remind_gap(th.remind_every, reminders)
    reminded = replace(m, reminders=reminders, next_remind_at=_after(now, gap))
    return reminded, [Event("reminder", component, now, m.since or now, muted)]


def _on_failure(m: Machine, component: str, now: datetime, th: Thresholds, inhibited: bool,
                muted: bool) -> tuple[Machine, list[Event]]:
    if m.state in (State.UNKNOWN, State.OK):
        m = Machine(state=State.FAILING, since=now, fails=1)
    else:
        m = replace(m, fails=m.fails + 1, successes=0)
    if m.state is State.FAILING:
        if m.fails < th.alert_after:
            return m, []
        m = replace(m, state=State.DOWN)
    # DOWN from here on (just now, or already).
    if inhibited:  # the parent's alert covers it: no down alert, no reminders
        return m, []
    if not m.alerted:
        return _alert(m, component, now, th, muted)
    return _remind(m, component, now, th, muted)


def step(m: Machine, component: str, ok: bool | None, now: datetime, th: Thresholds, *,
         inhibited: bool = False, muted: bool = False) -> tuple[Machine, list[Event]]:
    """Feed one probe result (None: no information) into ``m``: the next machine and the
    events to send (``muted`` events are to be recorded, not sent)."""
    if ok is None:
        return m, []
    if ok:
        return _on_success(m, component, now, th, muted)
    return _on_failure(m, component, now, th, inhibited, muted)


def reboot_detected(prev_uptime: float | None, uptime: float | None) -> bool:
    """The router rebooted between two checks: its uptime went down."""
    if prev_uptime is None or uptime is None:
        return False
    return uptime < prev_uptime
