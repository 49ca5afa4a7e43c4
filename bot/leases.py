"""Leases: how several camreach processes on one database tell a live owner from a dead one.

A row that a process works on (an operation, later a batch of health sweeps) carries its
owner (host, pid and a random id of the process) and a heartbeat the owner renews while it
works. Anyone may take the row over once the heartbeat is older than the lease; before that
the owner is alive, whoever looks. One shortcut: on the owner's own host a pid that no longer
exists is dead at once (a CLI command killed with SIGKILL), so its row need not wait out the
lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class Owner:
    """One process: the host it runs on, its pid, and a random id (pids are reused)."""

    host: str
    pid: int
    token: str

    @classmethod
    def this_process(cls) -> Owner:
        return cls(socket.gethostname()[:255], os.getpid(), secrets.token_hex(8))

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def owner_is_dead(
    *, host: str | None, pid: int | None, token: str | None, heartbeat_at: datetime | None,
    now: datetime, lease: float, me: Owner, mine_alive: Callable[[], bool] | None = None,
) -> bool:
    """Pure apart from the pid probe: may a row with this owner be taken over now?

    ``mine_alive`` answers for rows that name this very process (is the work still running
    here?); such a row is never judged by its heartbeat.
    """
    if token is not None and token == me.token:
        return mine_alive is not None and not mine_alive()
    if heartbeat_at is None or now - heartbeat_at > timedelta(seconds=lease):
        return True
    # Same host, pid gone: the process died (a reused pid only delays this to the lease).
    return host == me.host and pid is not None and pid != me.pid and not pid_alive(pid)


class Heartbeat:
    """Calls ``renew`` every ``interval`` seconds until stopped; a failing renew is retried on
    the next beat (a database hiccup must not kill the work it protects)."""

    def __init__(self, renew: Callable[[], Awaitable[None]], interval: float) -> None:
        self._renew = renew
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._beat(), name="lease-heartbeat")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._renew()
            except Exception:
                log.warning("could not renew leases", exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
