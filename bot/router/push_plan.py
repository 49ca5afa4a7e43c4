"""Round trip 1 of a push: read the router's committed configuration and diff it.

Nothing changes on the router. :class:`PushPlan` carries the diff to show the user, the md5 of
each file (the apply refuses if they changed meanwhile) and the ``uci batch`` to apply.

A push still pending on the router blocks a new one, unless an interrupted camreach operation
of the same site recorded it (:class:`AdoptedPush`): that push was camreach's own and nobody
is left to confirm it, so the plan says it will be confirmed first.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from bot.adapters.ssh import SshConnection
from bot.errors import OperatorError
from bot.render.router import PACKAGES
from bot.render.uci import ParsedUci, UciSection, diff_sections, parse_uci_show, render_batch
from bot.router.frames import parse_frames
from bot.router.push_scripts import READ_SCRIPT

__all__ = [
    "AdoptedPush",
    "FindAdoptable",
    "PushBlocked",
    "PushPlan",
    "RouterState",
    "make_plan",
    "plan_push",
    "read_state",
]

_ID_RE = re.compile(r"[0-9a-f]{16}")


class PushBlocked(OperatorError):
    """The router is not in a state to take a push; nothing was changed."""


@dataclass(frozen=True)
class RouterState:
    """The router's ``network``/``firewall`` as committed, and any push in flight."""

    sums: Mapping[str, str]  # package -> md5 of /etc/config/<package>, or "missing"
    current: ParsedUci
    uncommitted: Mapping[str, str]  # package -> `uci changes` output (LuCI edits not applied)
    errors: Mapping[str, str]
    pending: str | None  # "<id> <state>" of a push not yet confirmed or rolled back
    last: str  # "<id> confirmed" | "<id> rolled-back <reason>" | ""

    @property
    def pending_id(self) -> str | None:
        """The id of the push in flight, if it has a well-formed one."""
        words = (self.pending or "").split()
        return words[0] if words and _ID_RE.fullmatch(words[0]) else None

    @property
    def pending_applied(self) -> bool:
        """The push in flight finished its swap (a confirm keeps it; otherwise it is undone)."""
        return (self.pending or "").split()[1:2] == ["applied"]


@dataclass(frozen=True)
class AdoptedPush:
    """A push still pending on the router that an interrupted camreach operation of the same
    site recorded: a later push confirms it instead of refusing (it was camreach's own)."""

    push_id: str
    op_id: int  # the interrupted operation that recorded it
    expect: str | None = None  # the fingerprint that operation had been approved with
    applied: bool = True  # False: the router has it half-swapped; a confirm undoes it

    @property
    def note(self) -> str:
        """The plan's first line, shown before the diff."""
        if self.applied:
            return (f"! first: confirm push {self.push_id}, which operation #{self.op_id} "
                    "applied before it was interrupted (the router holds it now and would "
                    "otherwise roll it back by itself)")
        return (f"! first: undo push {self.push_id}, which operation #{self.op_id} left "
                "unfinished on the router when it was interrupted; then look at the diff "
                "again")


# Given the id of a push pending on the router: the interrupted operation that recorded it,
# or None (someone else's push, or one a live operation is still handling).
FindAdoptable = Callable[[str], Awaitable[AdoptedPush | None]]


def _parse_state(parts: Mapping[str, str]) -> RouterState:
    sums: dict[str, str] = {}
    current: ParsedUci = {}
    uncommitted: dict[str, str] = {}
    errors: dict[str, str] = {}
    for pkg in PACKAGES:
        sums[pkg] = parts.get(f"sum.{pkg}", "").strip() or "missing"
        if parts.get(f"changes.{pkg}", "").strip():
            uncommitted[pkg] = parts[f"changes.{pkg}"]
        if parts.get(f"error.{pkg}", "").strip():
            errors[pkg] = parts[f"error.{pkg}"].strip()
        elif sums[pkg] != "missing":
            current.update(parse_uci_show(parts.get(f"show.{pkg}", "")))
    return RouterState(
        sums=MappingProxyType(sums),
        current=current,
        uncommitted=MappingProxyType(uncommitted),
        errors=MappingProxyType(errors),
        pending=parts.get("pending", "").strip() or None,
        last=parts.get("last", "").strip(),
    )


async def read_state(conn: SshConnection) -> RouterState:
    res = await conn.run(READ_SCRIPT, input=b"")
    return _parse_state(parse_frames(res.stdout_bytes or res.stdout, where=conn.target.where))


@dataclass(frozen=True)
class PushPlan:
    """What a push would change. ``batch`` holds secrets: never log or show it."""

    diff: tuple[str, ...]
    sums: Mapping[str, str]
    batch: str = field(repr=False)
    # Interfaces whose wireguard peer sections change: netifd does not notice those on a
    # reload, so the router restarts them (and restarts them again if it rolls back).
    restart: tuple[str, ...] = ()
    # A pending push of an interrupted operation, confirmed before the rest is applied; the
    # diff then starts with its :attr:`AdoptedPush.note` and is made against the files the
    # router holds now (that push's).
    adopt: AdoptedPush | None = None

    @property
    def no_changes(self) -> bool:
        return not self.diff and self.adopt is None

    @property
    def changes(self) -> tuple[str, ...]:
        """The diff without the adoption note."""
        return self.diff[1:] if self.adopt is not None else self.diff

    def without_adoption(self) -> PushPlan:
        """The plan as it will be once the adopted push is confirmed (same files, same
        batch): what the re-plan after the confirm must match."""
        return replace(self, diff=self.changes, adopt=None)

    @property
    def fingerprint(self) -> str:
        """Identifies "this diff against these files": pass it back to push what was shown."""
        h = hashlib.sha256()
        for pkg in sorted(self.sums):
            h.update(f"{pkg}={self.sums[pkg]}\n".encode())
        h.update(self.batch.encode())
        if self.adopt is not None:
            h.update(f"adopt={self.adopt.push_id}\n".encode())
        return h.hexdigest()[:16]


def _check_pushable(state: RouterState, where: str, adopt: AdoptedPush | None) -> None:
    missing = [p for p, s in state.sums.items() if s == "missing"]
    if missing:
        raise PushBlocked(
            f"{where} has no /etc/config/{missing[0]}; camreach needs OpenWrt's standard "
            f"{missing[0]} configuration. Nothing was changed."
        )
    if state.errors:
        pkg = next(iter(state.errors))
        raise PushBlocked(
            f"uci cannot read /etc/config/{pkg} on {where}; fix or restore that file first. "
            "Nothing was changed.",
            detail=state.errors[pkg][:300],
        )
    if state.uncommitted:
        pkgs = " and ".join(state.uncommitted)
        raise PushBlocked(
            f"{where} has unsaved changes to {pkgs} (made in LuCI or with `uci set` and not "
            f"applied). Apply or revert them there (LuCI: Unsaved Changes; or `uci revert "
            f"{next(iter(state.uncommitted))}`), then push again. Nothing was changed."
        )
    if state.pending and (adopt is None or adopt.push_id != state.pending_id):
        pid = state.pending.split()[0]
        raise PushBlocked(
            f"An earlier push ({pid}) is still waiting for confirmation on {where}; the router "
            "rolls it back by itself when its deadline passes. Try again in a few minutes."
        )


def make_plan(state: RouterState, sections: Iterable[UciSection], *, where: str,
              adopt: AdoptedPush | None = None) -> PushPlan:
    """Pure: the diff between the router's state and the wanted sections.

    A pending push is refused (:class:`PushBlocked`) unless it is ``adopt``'s.
    """
    _check_pushable(state, where, adopt)
    if adopt is not None and not state.pending:
        adopt = None  # gone meanwhile: nothing to confirm first
    if adopt is not None:
        adopt = replace(adopt, applied=state.pending_applied)
    wanted = list(sections)
    diff = tuple(diff_sections(state.current, wanted))
    if adopt is not None:
        diff = (adopt.note, *diff)
    restart = sorted({
        s.type.removeprefix("wireguard_") for s in wanted
        if s.package == "network" and s.type.startswith("wireguard_")
        and diff_sections(state.current, [s])
    })
    return PushPlan(diff=diff, sums=state.sums, batch=render_batch(wanted),
                    restart=tuple(restart), adopt=adopt)


async def plan_push(conn: SshConnection, sections: Iterable[UciSection], *,
                    adoptable: FindAdoptable | None = None) -> PushPlan:
    """Round trip 1: current config vs. wanted; ``plan.no_changes`` means nothing to do.

    With a push pending on the router, ``adoptable`` is asked whether an interrupted camreach
    operation recorded it (no extra round trip; a normal push never asks).
    """
    state = await read_state(conn)
    adopt = None
    if adoptable is not None and state.pending_id is not None:
        adopt = await adoptable(state.pending_id)
    return make_plan(state, sections, where=conn.target.where, adopt=adopt)
