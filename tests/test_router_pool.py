"""Connection reuse: one SSH connection serves many calls until it breaks or idles out."""

from __future__ import annotations

import pytest

from bot.adapters.ssh import ssh_session
from bot.errors import RemoteFailed
from bot.router.pool import ConnectionPool
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_support import first_contact, target


async def test_reuse_until_closed_broken_or_idle(openwrt_router: OpenWrtRouter) -> None:
    key, pinned = await first_contact(openwrt_router)
    pool = ConnectionPool(idle_timeout=60)

    def opener():  # type: ignore[no-untyped-def]
        return ssh_session(target(openwrt_router, key, pinned))

    async with pool.connection("r", opener) as first:
        pid1 = (await first.run("echo $PPID")).stdout
    async with pool.connection("r", opener) as again:
        assert again is first  # same connection, no new login
        # A command that fails on a working link keeps the connection.
        with pytest.raises(RemoteFailed):
            await again.run("exit 3")
    async with pool.connection("r", opener) as still:
        assert still is first
    assert pool.opened == 1

    first.raw.close()  # the link dropped
    await first.raw.wait_closed()
    async with pool.connection("r", opener) as fresh:
        assert fresh is not first
        assert (await fresh.run("echo $PPID")).stdout != pid1

    pool.idle_timeout = 0  # everything is stale now
    await pool.close_idle()
    async with pool.connection("r", opener) as newest:
        assert newest is not fresh and newest.raw.is_closed() is False
    assert pool.opened == 3
    await pool.close()
    assert newest.raw.is_closed()
