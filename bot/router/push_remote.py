"""Round trips 2 and 3 of a push: apply with the rollback armed, then confirm.

:func:`apply_push` sends the batch on stdin to :data:`~bot.router.push_scripts.APPLY_SCRIPT`;
:func:`confirm_push` runs :data:`~bot.router.push_scripts.CONFIRM_SCRIPT`. Both only read the
router's short answers; what to tell the user is decided in :mod:`bot.router.push`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from bot.adapters.ssh import SshConnection
from bot.errors import CamreachError, RemoteFailed, Unreachable
from bot.render.router import PACKAGES
from bot.router.push_plan import PushBlocked, PushPlan
from bot.router.push_scripts import APPLY_SCRIPT, CONFIRM_SCRIPT

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_HOLDOFF",
    "Applied",
    "ApplyOutcomeUnknown",
    "Confirmation",
    "PushNotApplied",
    "PushRolledBack",
    "apply_push",
    "confirm_push",
]

DEFAULT_DEADLINE = 120
# Seconds after the apply before a confirm counts: the reload must have happened (LuCI's
# apply-and-confirm waits the same "apply_holdoff" of 4 s before it starts confirming).
DEFAULT_HOLDOFF = 4
_ID_RE = re.compile(r"[0-9a-f]{16}")
_MD5_RE = re.compile(r"[0-9a-f]{32}")
_IFACE_RE = re.compile(r"[A-Za-z0-9_]{1,15}")


class PushNotApplied(RemoteFailed):
    """The push never took effect; the router kept its configuration."""


class PushRolledBack(RemoteFailed):
    """The router applied the push and then restored the old configuration."""


@dataclass(frozen=True)
class Applied:
    push_id: str
    changed: tuple[str, ...]
    sums: Mapping[str, str]


class ApplyOutcomeUnknown(Exception):
    """The apply command was sent but no answer came back (link lost or too slow)."""

    def __init__(self, cause: CamreachError) -> None:
        super().__init__(cause.user_message)
        self.cause = cause


def _apply_command(push_id: str, deadline: int, holdoff: int, plan: PushPlan) -> str:
    if not _ID_RE.fullmatch(push_id):
        raise ValueError("push id must be 16 hex digits")
    if isinstance(deadline, bool) or not isinstance(deadline, int) or not 1 <= deadline <= 3600:
        raise ValueError("deadline must be 1..3600 seconds")
    if isinstance(holdoff, bool) or not isinstance(holdoff, int) or not 0 <= holdoff < deadline:
        raise ValueError("holdoff must be 0 or more seconds, and less than the deadline")
    pairs = []
    for pkg in PACKAGES:
        md5 = plan.sums[pkg]
        if not _MD5_RE.fullmatch(md5):
            raise ValueError(f"no checksum for {pkg}")
        pairs.append(f"{pkg}={md5}")
    batch_md5 = hashlib.md5(plan.batch.encode(), usedforsecurity=False).hexdigest()
    for iface in plan.restart:
        if not _IFACE_RE.fullmatch(iface):
            raise ValueError(f"bad interface name {iface!r}")
    restart = ",".join(plan.restart) or "-"
    words = ["sh", "-c", APPLY_SCRIPT, "camreach-apply", push_id, str(deadline), str(holdoff),
             restart, batch_md5, *pairs]
    return shlex.join(words)


def _parse_apply(out: str, where: str) -> Applied | None:
    lines = out.strip().splitlines()
    first = lines[0].split() if lines else []
    if first and first[0] == "unchanged":
        return None
    if len(first) == 2 and first[0] == "applied":
        sums = {}
        for line in lines[1:]:
            words = line.split()
            if len(words) == 2:
                sums[words[0]] = words[1]
        changed = tuple(p for p in PACKAGES if p in sums)
        return Applied(first[1], changed, MappingProxyType(sums))
    raise RemoteFailed(f"{where} gave an unexpected answer to the push.", detail=out[:300])


_REFUSALS = {
    10: "An earlier push is still waiting for confirmation on {where}; the router rolls it "
        "back by itself when its deadline passes. Try again in a few minutes.",
    11: "The configuration on {where} changed since the diff was made (someone edited it). "
        "Look at the new diff and push again. Nothing was changed.",
    12: "The new configuration did not arrive complete on {where} (the link dropped while "
        "sending). Nothing was changed; push again.",
    13: "The router's uci refused the new configuration on {where}. Nothing was changed.",
    15: "camreach had already given up on this push when it reached {where}. Nothing was "
        "changed; push again.",
    14: "{where} has unsaved changes to its configuration (LuCI or `uci set`). Apply or revert "
        "them there, then push again. Nothing was changed.",
}


async def apply_push(
    conn: SshConnection, plan: PushPlan, *, deadline: int = DEFAULT_DEADLINE,
    holdoff: int = DEFAULT_HOLDOFF, push_id: str | None = None,
    timeout: float | None = None,  # noqa: ASYNC109
) -> Applied | None:
    """Round trip 2: stage, back up, arm the rollback, swap in, reload. None: no change.

    Raises :class:`ApplyOutcomeUnknown` when the command went out but its answer did not
    come back; the router may or may not have applied it (``push_config`` finds out).
    """
    pid = push_id or secrets.token_hex(8)
    command = _apply_command(pid, deadline, holdoff, plan)
    where = conn.target.where
    try:
        res = await conn.run(command, input=plan.batch, check=False, timeout=timeout)
    except Unreachable as exc:
        raise ApplyOutcomeUnknown(exc) from exc
    if res.exit_status in _REFUSALS:
        cls = (RemoteFailed if res.exit_status in (12, 13) else
               PushNotApplied if res.exit_status == 15 else PushBlocked)
        raise cls(_REFUSALS[res.exit_status].format(where=where),
                  detail=res.stdout.strip()[:300] or None)
    if not res.ok:
        if res.exit_status == 21:
            raise PushRolledBack(
                f"{where} could not write the new configuration (is its flash full?) and "
                "restored the old one at once. Nothing was changed.",
                detail=res.stdout.strip()[:300],
            )
        raise RemoteFailed(
            f"The push failed on {where} (exit status {res.exit_status}). Nothing was changed.",
            detail=(res.stdout + res.stderr).strip()[:300],
        )
    applied = _parse_apply(res.stdout, where)
    if applied is not None and applied.push_id != pid:
        raise RemoteFailed(f"{where} answered for another push.", detail=res.stdout[:200])
    return applied


# --- 3. confirming -------------------------------------------------------------------------

ConfirmOutcome = Literal["confirmed", "rolled-back", "not-applied", "pending"]


@dataclass(frozen=True)
class Confirmation:
    outcome: ConfirmOutcome
    reason: str = ""  # for rolled-back: "deadline", "incomplete", "boot", "swap-failed"


def _parse_confirm(out: str, push_id: str, where: str) -> Confirmation:
    words = out.strip().split()
    if words[:2] == ["confirmed", push_id]:
        return Confirmation("confirmed")
    if words[:2] == ["pending", push_id]:
        return Confirmation("pending", " ".join(words[2:]))
    if words[:1] == ["rolled-back"]:
        return Confirmation("rolled-back", words[1] if len(words) > 1 else "")
    if words[:1] == ["not-pending"]:
        last = words[1:]
        if last[:2] == [push_id, "confirmed"]:
            return Confirmation("confirmed")  # an earlier attempt confirmed; its answer was lost
        if last[:2] == [push_id, "rolled-back"]:
            return Confirmation("rolled-back", last[2] if len(last) > 2 else "")
        return Confirmation("not-applied")
    raise RemoteFailed(f"{where} gave an unexpected answer to the confirmation.",
                       detail=out[:200])


async def confirm_push(conn: SshConnection, push_id: str, *, check_only: bool = False
                       ) -> Confirmation:
    """Round trip 3: keep the new files (or learn that the router already rolled back).

    ``check_only`` reports without confirming: for a path that is not the one that must work.
    """
    if not _ID_RE.fullmatch(push_id):
        raise ValueError("push id must be 16 hex digits")
    mode = "check" if check_only else "confirm"
    command = shlex.join(["sh", "-c", CONFIRM_SCRIPT, "camreach-confirm", push_id, mode])
    res = await conn.run(command, input=b"")
    return _parse_confirm(res.stdout, push_id, conn.target.where)
