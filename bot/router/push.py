"""A whole config push as one operation: plan, apply with automatic rollback, confirm.

Like LuCI's apply-and-confirm, but the rollback is armed on the router itself, so it happens
whatever becomes of camreach or the link. Three remote commands:

1. :func:`~bot.router.push_plan.plan_push` reads the current ``network``/``firewall`` and
   their md5 sums and diffs them against the wanted sections. Nothing changes.
2. :func:`~bot.router.push_remote.apply_push` stages the batch on copies of the files, backs
   the old ones up, arms a timer that restores them after ``deadline`` seconds, swaps the new
   files in (``mv``, atomic per file; the pair is covered by the timer and a lock) and
   triggers the reload.
3. :func:`~bot.router.push_remote.confirm_push`, over a *new* connection on the path that
   must work afterwards (the tunnel, when the push concerns the tunnel), cancels the rollback.

:func:`push_config` runs the three with progress and decides what to tell the user. If the
connection drops at any point the router ends on the old files or the new ones, never a mix:
before arming nothing has changed; after arming only a confirm keeps the new files.

If camreach itself dies after the apply (the CLI killed), the push stays pending on the router
until its deadline. The operation recorded the push id first (``record``), so the next push
of that site finds it was an interrupted camreach operation's (``adoptable``) and confirms it,
over the same confirm path, instead of refusing; then it pushes whatever remains.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from bot.adapters.ssh import SshConnection
from bot.errors import CamreachError, Unreachable
from bot.render.router import PACKAGES
from bot.render.uci import UciSection
from bot.router.push_plan import (
    AdoptedPush,
    FindAdoptable,
    PushBlocked,
    PushPlan,
    RouterState,
    make_plan,
    plan_push,
)
from bot.router.push_remote import (
    DEFAULT_DEADLINE,
    DEFAULT_HOLDOFF,
    Applied,
    ApplyOutcomeUnknown,
    Confirmation,
    PushNotApplied,
    PushRolledBack,
    apply_push,
    confirm_push,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_HOLDOFF",
    "AdoptedPush",
    "Applied",
    "Confirmation",
    "FindAdoptable",
    "Opener",
    "PushBlocked",
    "PushNotApplied",
    "PushPlan",
    "PushResult",
    "PushRolledBack",
    "Record",
    "Route",
    "RouterState",
    "Steps",
    "apply_push",
    "confirm_push",
    "make_plan",
    "plan_push",
    "push_config",
]

log = logging.getLogger(__name__)

Opener = Callable[[], AbstractAsyncContextManager[SshConnection]]


class Steps(Protocol):
    """Where progress goes (:class:`jobs.operations.OpContext` fits)."""

    async def step(self, number: int, total: int, message: str) -> None: ...

    async def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class PushResult:
    outcome: Literal["applied", "unchanged", "adopted"]
    diff: tuple[str, ...]
    push_id: str | None = None
    changed: tuple[str, ...] = ()
    # The interrupted operation's push this one confirmed first ("adopted": nothing else).
    adopted: AdoptedPush | None = None

    @property
    def message(self) -> str:
        if self.outcome == "unchanged":
            return "No changes: the router already has this configuration."
        if self.outcome == "adopted":
            assert self.adopted is not None
            return (f"Confirmed the push the interrupted operation #{self.adopted.op_id} had "
                    "applied; the router keeps it, and it already is this site's "
                    "configuration.")
        what = f"{len(self.diff)} changes to {' and '.join(self.changed)}."
        if self.adopted is not None:
            return (f"Confirmed the push the interrupted operation #{self.adopted.op_id} had "
                    f"applied, then applied and confirmed {what}")
        return f"Applied and confirmed: {what}"


@dataclass(frozen=True)
class Route:
    """A way to reach the router, named for messages ("over the tunnel")."""

    open: Opener
    label: str


class _LogSteps:
    async def step(self, number: int, total: int, message: str) -> None:
        log.info("push %d/%d: %s", number, total, message)

    async def note(self, message: str) -> None:
        log.info("push: %s", message)


STEPS = 4
# With an interrupted operation's push to confirm first: that confirm, and a second read.
ADOPT_STEPS = STEPS + 2

Record = Callable[[str], Awaitable[None]]
OnStage = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class _Timing:
    deadline: int
    holdoff: int
    grace: float


@dataclass(frozen=True)
class _Sent:
    """An apply that went out: answered (``applied``) or not (``unknown``)."""

    plan: PushPlan
    push_id: str
    sent_at: float
    applied: Applied | None
    unknown: ApplyOutcomeUnknown | None


async def push_config(
    apply_via: Route,
    confirm_via: Route,
    sections: Iterable[UciSection],
    *,
    deadline: int = DEFAULT_DEADLINE,
    holdoff: int = DEFAULT_HOLDOFF,
    expect: str | None = None,
    steps: Steps | None = None,
    grace: float = 10.0,
    on_stage: OnStage | None = None,
    adoptable: FindAdoptable | None = None,
    record: Record | None = None,
) -> PushResult:
    """Plan, apply with the rollback armed, confirm over ``confirm_via``: one operation.

    ``expect`` is a :attr:`PushPlan.fingerprint` the user approved: if the plan differs now
    (the router or the site changed meanwhile) nothing is applied. ``on_stage`` is called
    with "planned", "applied" and "confirming" (tests cut the link there; "adopting" before
    an interrupted push is confirmed). ``record`` gets the push id right before the apply
    is sent (the operation stores it in its row). ``adoptable`` tells whether a push pending
    on the router was recorded by an interrupted operation of this site: that push is then
    confirmed first (over ``confirm_via``, as if this run had applied it), and what remains
    is applied as usual.
    """
    ui: Steps = steps or _LogSteps()
    timing = _Timing(deadline, holdoff, grace)
    wanted = list(sections)
    await ui.step(1, STEPS, f"Reading the router's configuration {apply_via.label}")
    sent: _Sent | None = None
    async with apply_via.open() as conn:
        plan = await plan_push(conn, wanted, adoptable=adoptable)
        if plan.no_changes:
            await ui.step(STEPS, STEPS, "No changes: the router already has this configuration")
            return PushResult("unchanged", ())
        _check_expected(plan, expect)
        if plan.adopt is None:
            sent = await _apply(conn, plan, timing, ui, 2, STEPS, on_stage, record)
            if sent is None:
                await ui.step(STEPS, STEPS,
                              "No changes: the router already has this configuration")
                return PushResult("unchanged", plan.diff)
    if sent is None:
        assert plan.adopt is not None
        return await _adopt_then_push(plan, plan.adopt, apply_via, confirm_via, wanted,
                                      expect=expect, timing=timing, ui=ui, on_stage=on_stage,
                                      record=record)
    return await _confirm_sent(sent, apply_via, confirm_via, timing, ui, 3, STEPS, on_stage)


def _check_expected(plan: PushPlan, expect: str | None) -> None:
    if expect is None or expect == plan.fingerprint:
        return
    if plan.adopt is not None and plan.adopt.expect is not None and expect == plan.adopt.expect:
        return  # a retry of that very operation: the user approved the push it had applied
    raise PushBlocked(
        "The router's configuration or the site changed since you saw the diff. "
        "Look at the new diff and confirm again. Nothing was changed."
    )


async def _apply(conn: SshConnection, plan: PushPlan, timing: _Timing, ui: Steps, step: int,
                 total: int, on_stage: OnStage | None, record: Record | None) -> _Sent | None:
    """Round trip 2; None when the router found nothing to change."""
    if on_stage is not None:
        await on_stage("planned")
    await ui.step(step, total, f"Applying {len(plan.diff)} changes; the router undoes them by "
                               f"itself unless camreach confirms within {timing.deadline} s")
    push_id = secrets.token_hex(8)
    if record is not None:
        await record(push_id)  # before the apply: a run killed after it can be resumed
    sent_at = time.monotonic()
    applied: Applied | None = None
    unknown: ApplyOutcomeUnknown | None = None
    try:
        applied = await apply_push(conn, plan, deadline=timing.deadline, holdoff=timing.holdoff,
                                   push_id=push_id, timeout=max(1.0, timing.deadline / 2))
    except ApplyOutcomeUnknown as exc:
        unknown = exc
        log.warning("push %s: no answer to the apply: %s", push_id, exc.cause.user_message)
    if applied is None and unknown is None:
        return None
    return _Sent(plan, push_id, sent_at, applied, unknown)


async def _confirm_sent(sent: _Sent, apply_via: Route, confirm_via: Route, timing: _Timing,
                        ui: Steps, step: int, total: int, on_stage: OnStage | None
                        ) -> PushResult:
    """Round trip 3, over a new connection, until the router answers or gives up."""
    if on_stage is not None:
        await on_stage("applied")
    await ui.step(step, total, f"Reaching the router again {confirm_via.label} to confirm")
    if sent.unknown is None:
        # Nothing to ask before the router's holdoff is over: it would answer "settling".
        await asyncio.sleep(max(0.0, sent.sent_at + timing.holdoff - time.monotonic()))
    if on_stage is not None:
        await on_stage("confirming")
    outcome = await _confirm_until(confirm_via, apply_via, sent.push_id,
                                   sent.sent_at + timing.deadline,
                                   sent.sent_at + timing.deadline + timing.grace, ui)
    if outcome.confirmation is not None and outcome.confirmation.outcome == "confirmed":
        await ui.step(step + 1, total, "Confirmed: the router keeps the new configuration")
        changed = sent.applied.changed if sent.applied is not None else tuple(PACKAGES)
        return PushResult("applied", sent.plan.diff, sent.push_id, changed)
    raise _failure(outcome, confirm_via, timing.deadline,
                   applied_answered=sent.unknown is None)


async def _adopt_then_push(
    plan: PushPlan, adopt: AdoptedPush, apply_via: Route, confirm_via: Route,
    wanted: list[UciSection], *, expect: str | None, timing: _Timing, ui: Steps,
    on_stage: OnStage | None, record: Record | None,
) -> PushResult:
    """Confirm the push an interrupted operation left pending, then push what remains.

    The confirm is the normal one (a new connection over ``confirm_via``, the same script,
    the same holdoff and retries); the router's own deadline for that push is not known
    here, so camreach waits at most its own ``deadline``. Then a fresh plan: when it still
    has changes they are applied as a normal push, if the user saw them (``expect``).
    """
    total = ADOPT_STEPS
    what = f"push {adopt.push_id} of the interrupted operation #{adopt.op_id}"
    await ui.step(2, total, f"{'Confirming' if adopt.applied else 'Undoing'} {what} "
                            f"{confirm_via.label}")
    if record is not None:
        await record(adopt.push_id)  # this run now answers for it (should it be killed too)
    if on_stage is not None:
        await on_stage("adopting")
    now = time.monotonic()
    outcome = await _confirm_until(confirm_via, apply_via, adopt.push_id, now + timing.deadline,
                                   now + timing.deadline + timing.grace, ui,
                                   countdown=False)
    answer = outcome.confirmation
    if answer is None or (answer.outcome == "rolled-back" and not outcome.by_confirm):
        raise _adopt_failure(outcome, what, confirm_via)
    kept = answer.outcome == "confirmed"
    if kept:
        await ui.step(3, total, f"Confirmed {what}; reading the router's configuration again "
                                f"{apply_via.label}")
    else:
        await ui.step(3, total, f"The router did not keep {what} "
                                f"({_undone(answer)}); reading its configuration again "
                                f"{apply_via.label}")
    async with apply_via.open() as conn:
        again = await plan_push(conn, wanted)  # a push pending now is someone else's
        if again.no_changes:
            return await _done_after_adoption(adopt, kept, ui, total)
        if not (expect is None or expect == again.fingerprint
                or (expect == plan.fingerprint
                    and again.fingerprint == plan.without_adoption().fingerprint)):
            if kept:
                raise PushBlocked(
                    f"Confirmed {what}; the router keeps it. But the router's configuration "
                    "or the site changed since you saw the diff: look at the new diff and "
                    "confirm again. Nothing else was changed."
                )
            raise PushBlocked(
                f"The router did not keep {what} ({_undone(answer)}), so it is on its "
                "previous configuration and the diff you saw no longer applies. Look at the "
                "new diff and push again. Nothing else was changed."
            )
        sent = await _apply(conn, again, timing, ui, 4, total, on_stage, record)
        if sent is None:
            return await _done_after_adoption(adopt, kept, ui, total)
    result = await _confirm_sent(sent, apply_via, confirm_via, timing, ui, 5, total, on_stage)
    return replace(result, adopted=adopt) if kept else result


def _undone(answer: Confirmation) -> str:
    if answer.outcome == "not-applied":
        return "it was no longer pending"
    return {"deadline": "its deadline had passed",
            "incomplete": "it had not finished, so it was rolled back",
            "boot": "the router restarted meanwhile"}.get(answer.reason, "it was rolled back")


async def _done_after_adoption(adopt: AdoptedPush, kept: bool, ui: Steps, total: int
                               ) -> PushResult:
    if not kept:
        await ui.step(total, total, "No changes: the router already has this configuration")
        return PushResult("unchanged", ())
    await ui.step(total, total, f"Confirmed: the router keeps the push of the interrupted "
                                f"operation #{adopt.op_id}, which is the site's configuration")
    return PushResult("adopted", (), adopt.push_id, adopted=adopt)


def _adopt_failure(outcome: _ConfirmOutcome, what: str, confirm_via: Route) -> CamreachError:
    err = outcome.last_error
    why = f" ({err.user_message.rstrip('.')})" if err is not None else ""
    if outcome.confirmation is None:
        return PushRolledBack(
            f"camreach could not reach the router {confirm_via.label}{why} to confirm {what}. "
            "The router restores its previous configuration by itself when no confirmation "
            "arrives, but camreach could not reach it afterwards to check. Check the "
            "router's power and uplink."
        )
    return PushRolledBack(
        f"camreach could not reach the router {confirm_via.label}{why} to confirm {what}, so "
        "the router restored its previous configuration by itself. The new settings would "
        "have cut the router off; check them (the modem's APN, the droplet's address and "
        "port) and push again."
    )


@dataclass(frozen=True)
class _ConfirmOutcome:
    confirmation: Confirmation | None  # None: nobody answered
    answered_via: Route | None
    last_error: CamreachError | None  # why confirm_via failed, if it did
    by_confirm: bool = False  # the answer came over confirm_via (not the fallback's check)


async def _ask(route: Route, push_id: str, limit: float, *, check_only: bool) -> Confirmation:
    async with asyncio.timeout(max(0.5, limit)), route.open() as conn:
        return await confirm_push(conn, push_id, check_only=check_only)


async def _confirm_until(
    confirm_via: Route, fallback: Route, push_id: str, deadline_at: float, give_up_at: float,
    ui: Steps, *, countdown: bool = True,
) -> _ConfirmOutcome:
    """Confirm over ``confirm_via`` until the router answers. After its deadline the router
    has rolled back, and the old path (``fallback``) may work again: ask it too, without
    confirming, to learn what happened. ``countdown``: ``deadline_at`` is the router's own
    deadline (not just an upper bound), so the waiting note may show it."""
    delay = 0.5
    attempt = 0
    last_error: CamreachError | None = None
    while time.monotonic() < give_up_at:
        attempt += 1
        late = time.monotonic() >= deadline_at
        for route, check_only in [(confirm_via, False)] + ([(fallback, True)] if late else []):
            try:
                answer = await _ask(route, push_id, give_up_at - time.monotonic(),
                                    check_only=check_only)
            except (CamreachError, TimeoutError) as exc:
                err = exc if isinstance(exc, CamreachError) else Unreachable(
                    f"The router did not answer {route.label} in time.")
                if not check_only:
                    last_error = err
                log.info("push %s: attempt %d %s failed: %s", push_id, attempt, route.label,
                         err.user_message)
                continue
            if answer.outcome != "pending":
                return _ConfirmOutcome(answer, route, last_error, by_confirm=not check_only)
            settling = answer.reason.split()
            if settling[:1] == ["settling"] and settling[1:2] and settling[1].isdigit():
                delay = max(0.2, float(settling[1]))  # the router said how long
        left = deadline_at - time.monotonic()
        if left > 0 and countdown:
            await ui.note(f"Waiting for the router {confirm_via.label} (attempt {attempt}; "
                          f"without a confirmation it rolls back in {int(left) + 1} s)")
        elif left > 0:
            await ui.note(f"Waiting for the router {confirm_via.label} (attempt {attempt})")
        await asyncio.sleep(max(0.0, min(delay, give_up_at - time.monotonic())))
        delay = min(max(delay, 0.25) * 2, 5.0)
    return _ConfirmOutcome(None, None, last_error)


def _failure(outcome: _ConfirmOutcome, confirm_via: Route, deadline: int, *,
             applied_answered: bool) -> CamreachError:
    err = outcome.last_error
    why = f" ({err.user_message.rstrip('.')})" if err is not None else ""
    c = outcome.confirmation
    if c is None:
        return PushRolledBack(
            f"camreach could not reach the router {confirm_via.label} within {deadline} s after "
            f"applying{why}. The router restores its previous configuration by itself when no "
            "confirmation arrives, but camreach could not reach it afterwards to check. Check "
            "the router's power and uplink."
        )
    if c.outcome == "not-applied":
        if applied_answered:
            return PushNotApplied(
                "The router has no record of this push; it kept its previous configuration."
            )
        return PushNotApplied(
            "The connection to the router was lost before it took the new configuration; it "
            "kept its previous one. Push again."
        )
    if c.reason == "incomplete":
        return PushRolledBack(
            "The push was interrupted on the router before it finished; the router restored "
            "its previous configuration. Nothing was changed. Push again."
        )
    via = outcome.answered_via.label if outcome.answered_via is not None else ""
    return PushRolledBack(
        f"After applying, camreach could not reach the router {confirm_via.label} within "
        f"{deadline} s{why}, so the router restored its previous configuration by itself "
        f"(checked {via}). The new settings would have cut the router off; check them (the "
        "modem's APN, the droplet's address and port) and push again."
    )
