"""Round trip 1 of a push: read the router's committed configuration and diff it.

Nothing changes on the router. :class:`PushPlan` carries the diff to show the user, the md5 of
each file (the apply refuses if they changed meanwhile) and the ``uci batch`` to apply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bot.adapters.ssh import SshConnection
from bot.errors import OperatorError
from bot.render.router import PACKAGES
from bot.render.uci import ParsedUci, UciSection, diff_sections, parse_uci_show, render_batch
from bot.router.frames import parse_frames
from bot.router.push_scripts import READ_SCRIPT

__all__ = ["PushBlocked", "PushPlan", "RouterState", "make_plan", "plan_push", "read_state"]


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
    return _parse_state(parse_frames(res.stdout, where=conn.target.where))


@dataclass(frozen=True)
class PushPlan:
    """What a push would change. ``batch`` holds secrets: never log or show it."""

    diff: tuple[str, ...]
    sums: Mapping[str, str]
    batch: str = field(repr=False)
    # Interfaces whose wireguard peer sections change: netifd does not notice those on a
    # reload, so the router restarts them (and restarts them again if it rolls back).
    restart: tuple[str, ...] = ()

    @property
    def no_changes(self) -> bool:
        return not self.diff

    @property
    def fingerprint(self) -> str:
        """Identifies "this diff against these files": pass it back to push what was shown."""
        h = hashlib.sha256()
        for pkg in sorted(self.sums):
            h.update(f"{pkg}={self.sums[pkg]}\n".encode())
        h.update(self.batch.encode())
        return h.hexdigest()[:16]


def _check_pushable(state: RouterState, where: str) -> None:
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
    if state.pending:
        pid = state.pending.split()[0]
        raise PushBlocked(
            f"An earlier push ({pid}) is still waiting for confirmation on {where}; the router "
            "rolls it back by itself when its deadline passes. Try again in a few minutes."
        )


def make_plan(state: RouterState, sections: Iterable[UciSection], *, where: str) -> PushPlan:
    """Pure: the diff between the router's state and the wanted sections."""
    _check_pushable(state, where)
    wanted = list(sections)
    diff = tuple(diff_sections(state.current, wanted))
    restart = sorted({
        s.type.removeprefix("wireguard_") for s in wanted
        if s.package == "network" and s.type.startswith("wireguard_")
        and diff_sections(state.current, [s])
    })
    return PushPlan(diff=diff, sums=state.sums, batch=render_batch(wanted),
                    restart=tuple(restart))


async def plan_push(conn: SshConnection, sections: Iterable[UciSection]) -> PushPlan:
    """Round trip 1: current config vs. wanted; ``plan.no_changes`` means nothing to do."""
    state = await read_state(conn)
    return make_plan(state, sections, where=conn.target.where)
