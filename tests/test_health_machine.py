"""The alert state machine: thresholds, recovery, flapping, reminders, inhibition, mute,
restarts (a JSON round trip between every check), router reboots."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.errors import ValidationFailed
from bot.health.machine import (
    Event,
    Machine,
    Thresholds,
    reboot_detected,
    remind_gap,
    step,
)
from bot.health.model import State

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
COMPONENT = "tunnel"


@dataclass(frozen=True)
class Check:
    ok: bool | None
    at: float  # seconds after T0
    inhibited: bool = False
    muted: bool = False


def fail(at: float, *, inh: bool = False, mute: bool = False) -> Check:
    return Check(False, at, inh, mute)


def good(at: float, *, inh: bool = False, mute: bool = False) -> Check:
    return Check(True, at, inh, mute)


def nothing(at: float) -> Check:
    return Check(None, at)


def fails(start: float, count: int, every: float = 60, **kw: bool) -> list[Check]:
    return [fail(start + i * every, **kw) for i in range(count)]


def run(checks: list[Check], th: Thresholds, *, restart: bool = False,
        ) -> tuple[list[State], list[Event]]:
    m, states, events = Machine(), [], []
    for c in checks:
        if restart:  # what a restart between two checks leaves: the stored JSON
            m = Machine.from_json(json.loads(json.dumps(m.to_json())))
        m, out = step(m, COMPONENT, c.ok, T0 + timedelta(seconds=c.at), th,
                      inhibited=c.inhibited, muted=c.muted)
        states.append(m.state)
        events.extend(out)
    return states, events


def summary(events: list[Event]) -> list[tuple[str, float, float, bool]]:
    """(kind, at, outage start, muted) with times as seconds after T0."""
    return [(e.kind, (e.at - T0).total_seconds(), (e.since - T0).total_seconds(), e.muted)
            for e in events]


def states_of(text: str) -> list[State]:
    return [State(s) for s in text.split()]


DEFAULT = Thresholds()
CASES = [
    # (id, thresholds, checks, states, events as (kind, at, since, muted))
    ("2 failures then ok: no alert", DEFAULT, [fail(0), fail(60), good(120)],
     "failing failing ok", []),
    ("3 failures: one down", DEFAULT, [fail(0), fail(60), fail(120), fail(180)],
     "failing failing down down", [("down", 120, 0, False)]),
    ("alert_after 1: down at once", Thresholds(alert_after=1), [fail(0), fail(60)],
     "down down", [("down", 0, 0, False)]),
    ("no information moves nothing", DEFAULT,
     [fail(0), nothing(30), fail(60), nothing(90), fail(120), nothing(150)],
     "failing failing failing failing down down", [("down", 120, 0, False)]),
    ("first check ok", DEFAULT, [nothing(0), good(60), good(120)], "unknown ok ok", []),
    ("recovery after recover_after", DEFAULT, [*fails(0, 3), good(180), good(240), good(300)],
     "failing failing down down ok ok",
     [("down", 120, 0, False), ("recovered", 240, 0, False)]),
    ("recover_after 1", Thresholds(recover_after=1), [*fails(0, 3), good(180)],
     "failing failing down ok", [("down", 120, 0, False), ("recovered", 180, 0, False)]),
    ("flapping never alerts", DEFAULT,
     [fail(0), good(60), fail(120), good(180), fail(240), good(300)],
     "failing ok failing ok failing ok", []),
    ("down then flapping: no recovery, no second alert", DEFAULT,
     [*fails(0, 3), good(180), fail(240), good(300), fail(360), good(420), fail(480)],
     "failing failing down down down down down down down",
     [("down", 120, 0, False)]),
    ("a second outage alerts again, with its own start", DEFAULT,
     [*fails(0, 3), good(180), good(240), *fails(300, 3)],
     "failing failing down down ok failing failing down",
     [("down", 120, 0, False), ("recovered", 240, 0, False), ("down", 420, 300, False)]),
    ("inhibited: no alert, silent recovery", DEFAULT,
     [*fails(0, 4, inh=True), good(240, inh=True), good(300)],
     "failing failing down down down ok", []),
    ("parent recovers, this still down: one down alert then", DEFAULT,
     [*fails(0, 3, inh=True), fail(180), fail(240), good(300), good(360)],
     "failing failing down down down down ok",
     [("down", 180, 0, False), ("recovered", 360, 0, False)]),
    ("inhibited down part sends no reminders", DEFAULT,
     [*fails(0, 3), fail(4000, inh=True), fail(5000, inh=True), fail(5100)],
     "failing failing down down down down",
     [("down", 120, 0, False), ("reminder", 5100, 0, False)]),
    ("muted: events recorded as muted", DEFAULT,
     [*fails(0, 3, mute=True), fail(3720, mute=True), good(3780, mute=True),
      good(3840, mute=True)],
     "failing failing down down down ok",
     [("down", 120, 0, True), ("reminder", 3720, 0, True), ("recovered", 3840, 0, True)]),
    ("unmuting does not resend the down alert", DEFAULT,
     [*fails(0, 3, mute=True), fail(180), fail(240), fail(3720), good(3780), good(3840)],
     "failing failing down down down down down ok",
     [("down", 120, 0, True), ("reminder", 3720, 0, False), ("recovered", 3840, 0, False)]),
    ("muted only at the recovery", DEFAULT,
     [*fails(0, 3), good(180, mute=True), good(240, mute=True)],
     "failing failing down down ok", [("down", 120, 0, False), ("recovered", 240, 0, True)]),
    ("no reminders with remind_every 0", Thresholds(remind_every=0),
     [*fails(0, 3), fail(4000), fail(90000), good(90060), good(90120)],
     "failing failing down down down down ok",
     [("down", 120, 0, False), ("recovered", 90120, 0, False)]),
    ("a reminder is due at a check, not before", DEFAULT,
     [*fails(0, 3), fail(3719), fail(3720), fail(3721)],
     "failing failing down down down down",
     [("down", 120, 0, False), ("reminder", 3720, 0, False)]),
]


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restart-every-check"])
@pytest.mark.parametrize(("th", "checks", "states", "events"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_sequences(th: Thresholds, checks: list[Check], states: str,
                   events: list[tuple[str, float, float, bool]], restart: bool) -> None:
    got_states, got_events = run(checks, th, restart=restart)
    assert got_states == states_of(states)
    assert summary(got_events) == events


def final(checks: list[Check], th: Thresholds = DEFAULT) -> Machine:
    m = Machine()
    for c in checks:
        m, _ = step(m, COMPONENT, c.ok, T0 + timedelta(seconds=c.at), th,
                    inhibited=c.inhibited, muted=c.muted)
    return m


@pytest.mark.parametrize(("checks", "since"), [
    ([good(0), good(60), good(120)], 0),  # OK stays OK since the first success
    ([fail(0), good(60), good(120)], 60),
    ([fail(0), fail(60), fail(120), fail(180)], 0),  # the outage starts at its first failure
    ([*fails(0, 3), good(180), good(240)], 240),
    ([*fails(0, 3), good(180)], 0),  # not recovered yet
])
def test_since_is_when_the_state_began(checks: list[Check], since: float) -> None:
    assert final(checks).since == T0 + timedelta(seconds=since)


def test_recovery_carries_the_outage_duration() -> None:
    _, events = run([*fails(0, 3), good(1800), good(1860)], DEFAULT)
    recovered = events[-1]
    assert recovered.kind == "recovered"
    assert recovered.duration == timedelta(seconds=1860)


@pytest.mark.parametrize(("every", "gaps"), [
    (3600, [3600, 7200, 14400, 28800, 57600, 86400, 86400]),
    (1800, [1800, 3600, 7200, 14400, 28800, 57600, 86400, 86400]),
    (86400, [86400, 86400, 86400, 86400, 86400]),
    (0, []),
])
def test_reminder_spacing_doubles_up_to_a_day(every: float, gaps: list[float]) -> None:
    # A check a minute for as long as the expected reminders take, plus a little.
    horizon = 120 + sum(gaps) + 600
    _, events = run(fails(0, int(horizon // 60)), Thresholds(remind_every=every))
    times = [(e.at - T0).total_seconds() for e in events]
    assert [e.kind for e in events] == ["down"] + ["reminder"] * len(gaps)
    assert [b - a for a, b in itertools.pairwise(times)] == gaps


def test_remind_gap_does_not_overflow() -> None:
    assert remind_gap(3600, 10_000) == 86400


@pytest.mark.parametrize("kw", [{"alert_after": 0}, {"recover_after": 0},
                                {"remind_every": -1}])
def test_thresholds_refuse_nonsense(kw: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        Thresholds(**kw)


@pytest.mark.parametrize("data", [None, {}])
def test_from_json_empty_is_a_fresh_machine(data: dict[str, object] | None) -> None:
    assert Machine.from_json(data) == Machine()


@pytest.mark.parametrize(("data", "expected"), [
    ({"state": "down"}, Machine(state=State.DOWN)),
    ({"state": "bogus", "fails": 2}, Machine(fails=2)),
    ({"state": "down", "since": T0.isoformat(), "alerted": True},
     Machine(state=State.DOWN, since=T0, alerted=True)),
])
def test_from_json_tolerates_missing_keys(data: dict[str, object], expected: Machine) -> None:
    assert Machine.from_json(data) == expected


def test_json_round_trip_in_an_outage() -> None:
    m = Machine(State.DOWN, T0, fails=7, successes=1, alerted=True, reminders=2,
                next_remind_at=T0 + timedelta(hours=3))
    data = json.loads(json.dumps(m.to_json()))
    assert data["state"] == "down"
    assert Machine.from_json(data) == m


@pytest.mark.parametrize(("prev", "now", "rebooted"), [
    (3 * 86400, 120, True),
    (500.0, 499.9, True),
    (120, 180, False),
    (120, 120, False),
    (None, 120, False),
    (120, None, False),
    (None, None, False),
])
def test_reboot_detected(prev: float | None, now: float | None, rebooted: bool) -> None:
    assert reboot_detected(prev, now) is rebooted


def random_checks(rng: random.Random, count: int) -> list[Check]:
    checks, at = [], 0.0
    for _ in range(count):
        at += rng.choice([30, 60, 60, 60, 600, 5000])
        ok = rng.choices([True, False, None], weights=[5, 5, 1])[0]
        checks.append(Check(ok, at, inhibited=rng.random() < 0.2, muted=rng.random() < 0.2))
    return checks


@pytest.mark.parametrize("seed", range(20))
def test_random_sequences_alternate_down_and_recovered(seed: int) -> None:
    rng = random.Random(seed)
    th = Thresholds(alert_after=rng.randint(1, 4), recover_after=rng.randint(1, 3),
                    remind_every=rng.choice([0, 600, 3600]))
    checks = random_checks(rng, 400)
    _, events = run(checks, th)
    kinds = [e.kind for e in events]
    assert "down" in kinds  # the sequence did exercise an outage
    # down, recovered, down, recovered, ...: never two of one kind in a row.
    edges = [k for k in kinds if k != "reminder"]
    assert edges == [("down", "recovered")[i % 2] for i in range(len(edges))]
    assert edges.count("recovered") <= edges.count("down")
    # Reminders only inside an outage that alerted.
    open_outage = False
    for kind in kinds:
        if kind == "reminder":
            assert open_outage
        open_outage = {"down": True, "recovered": False}.get(kind, open_outage)
    # And a restart between every check changes nothing.
    assert run(checks, th, restart=True) == run(checks, th)
