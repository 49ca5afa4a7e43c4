"""SSH connections kept open for reuse (status checks every minute need not log in each time).

A connection is dropped when it is closed, idle for longer than ``idle_timeout``, or when a
caller saw it fail. The confirm step of a push never comes from here: it must prove that a
*new* connection works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from bot.adapters.ssh import SshConnection
from bot.errors import CamreachError, Unreachable

__all__ = ["ConnectionPool"]

log = logging.getLogger(__name__)

Opener = Callable[[], AbstractAsyncContextManager[SshConnection]]


@dataclass
class _Entry:
    conn: SshConnection
    stack: AsyncExitStack
    last_used: float


class ConnectionPool:
    def __init__(self, idle_timeout: float = 300.0) -> None:
        self.idle_timeout = idle_timeout
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.opened = 0  # how many connections were opened (tests and the benchmark read it)

    def _usable(self, entry: _Entry) -> bool:
        fresh = time.monotonic() - entry.last_used < self.idle_timeout
        return fresh and not entry.conn.raw.is_closed()

    @asynccontextmanager
    async def connection(self, key: str, opener: Opener) -> AsyncIterator[SshConnection]:
        """A live connection for ``key``, opened with ``opener`` if there is none."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is not None and not self._usable(entry):
                await self.discard(key)
                entry = None
            if entry is None:
                stack = AsyncExitStack()
                try:
                    conn = await stack.enter_async_context(opener())
                except BaseException:
                    await stack.aclose()
                    raise
                entry = _Entry(conn, stack, time.monotonic())
                self._entries[key] = entry
                self.opened += 1
            entry.last_used = time.monotonic()
        try:
            yield entry.conn
        except BaseException as exc:
            # A command that failed on a working link keeps the connection; anything else
            # (lost, timed out, cancelled mid-way) may have left it unusable.
            if not isinstance(exc, CamreachError) or isinstance(exc, Unreachable):
                await self.discard(key)
            raise
        finally:
            entry.last_used = time.monotonic()

    async def discard(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            try:
                await entry.stack.aclose()
            except Exception as exc:  # closing a dead connection may fail; it is gone anyway
                log.debug("closing pooled connection %s: %r", key, exc)

    async def close_idle(self) -> None:
        for key, entry in list(self._entries.items()):
            if not self._usable(entry):
                await self.discard(key)

    async def close(self) -> None:
        for key in list(self._entries):
            await self.discard(key)
