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
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.adapters.ssh import SshConnection
from bot.errors import CamreachError, Unreachable
from bot.render.router import PACKAGES
from bot.render.uci import UciSection
from bot.router.push_plan import PushBlocked, PushPlan, RouterState, make_plan, plan_push
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
    "Applied",
    "Confirmation",
    "Opener",
    "PushBlocked",
    "PushNotApplied",
    "PushPlan",
    "PushResult",
    "PushRolledBack",
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
    outcome: Literal["applied", "unchanged"]
    diff: tuple[str, ...]
    push_id: str | None = None
    changed: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        if self.outcome == "unchanged":
            return "No changes: the router already has this configuration."
        return (f"Applied and confirmed: {len(self.diff)} changes to "
                f"{' and '.join(self.changed)}.")


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
    on_stage: Callable[[str], Awaitable[None]] | None = None,
) -> PushResult:
    """Plan, apply with the rollback armed, confirm over ``confirm_via``: one operation.

    ``expect`` is a :attr:`PushPlan.fingerprint` the user approved: if the plan differs now
    (the router or the site changed meanwhile) nothing is applied. ``on_stage`` is called
    with "planned", "applied" and "confirming" (tests cut the link there).
    """
    ui: Steps = steps or _LogSteps()
    wanted = list(sections)
    await ui.step(1, STEPS, f"Reading the router's configuration {apply_via.label}")
    async with apply_via.open() as conn:
        plan = await plan_push(conn, wanted)
        if plan.no_changes:
            await ui.step(STEPS, STEPS, "No changes: the router already has this configuration")
            return PushResult("unchanged", ())
        if expect is not None and expect != plan.fingerprint:
            raise PushBlocked(
                "The router's configuration or the site changed since you saw the diff. "
                "Look at the new diff and confirm again. Nothing was changed."
            )
        if on_stage is not None:
            await on_stage("planned")
        await ui.step(2, STEPS, f"Applying {len(plan.diff)} changes; the router undoes them by "
                                f"itself unless camreach confirms within {deadline} s")
        push_id = secrets.token_hex(8)
        sent_at = time.monotonic()
        applied: Applied | None = None
        unknown: ApplyOutcomeUnknown | None = None
        try:
            applied = await apply_push(conn, plan, deadline=deadline, holdoff=holdoff,
                                       push_id=push_id, timeout=max(1.0, deadline / 2))
        except ApplyOutcomeUnknown as exc:
            unknown = exc
            log.warning("push %s: no answer to the apply: %s", push_id, exc.cause.user_message)
        if applied is None and unknown is None:
            await ui.step(STEPS, STEPS, "No changes: the router already has this configuration")
            return PushResult("unchanged", plan.diff)
    if on_stage is not None:
        await on_stage("applied")
    await ui.step(3, STEPS, f"Reaching the router again {confirm_via.label} to confirm")
    if unknown is None:
        # Nothing to ask before the router's holdoff is over: it would answer "settling".
        await asyncio.sleep(max(0.0, sent_at + holdoff - time.monotonic()))
    if on_stage is not None:
        await on_stage("confirming")
    outcome = await _confirm_until(confirm_via, apply_via, push_id, sent_at + deadline,
                                   sent_at + deadline + grace, ui)
    if outcome.confirmation is not None and outcome.confirmation.outcome == "confirmed":
        await ui.step(4, STEPS, "Confirmed: the router keeps the new configuration")
        changed = applied.changed if applied is not None else tuple(PACKAGES)
        return PushResult("applied", plan.diff, push_id, changed)
    raise _failure(outcome, confirm_via, deadline, applied_answered=unknown is None)


@dataclass(frozen=True)
class _ConfirmOutcome:
    confirmation: Confirmation | None  # None: nobody answered
    answered_via: Route | None
    last_error: CamreachError | None  # why confirm_via failed, if it did


async def _ask(route: Route, push_id: str, limit: float, *, check_only: bool) -> Confirmation:
    async with asyncio.timeout(max(0.5, limit)), route.open() as conn:
        return await confirm_push(conn, push_id, check_only=check_only)


async def _confirm_until(
    confirm_via: Route, fallback: Route, push_id: str, deadline_at: float, give_up_at: float,
    ui: Steps,
) -> _ConfirmOutcome:
    """Confirm over ``confirm_via`` until the router answers. After its deadline the router
    has rolled back, and the old path (``fallback``) may work again: ask it too, without
    confirming, to learn what happened."""
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
                return _ConfirmOutcome(answer, route, last_error)
            settling = answer.reason.split()
            if settling[:1] == ["settling"] and settling[1:2] and settling[1].isdigit():
                delay = max(0.2, float(settling[1]))  # the router said how long
        left = deadline_at - time.monotonic()
        if left > 0:
            await ui.note(f"Waiting for the router {confirm_via.label} (attempt {attempt}; "
                          f"without a confirmation it rolls back in {int(left) + 1} s)")
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
