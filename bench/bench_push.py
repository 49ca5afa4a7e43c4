"""Benchmark: one full config push (diff, apply, confirm) against the OpenWrt test router
with 50 ms added to every round trip. Counts remote commands (each one exchange of
channel-open, exec and output on the SSH connection), SSH connections and wall time.

Run as root (network namespaces, chroot), with the rootfs tarball where the test fixture
looks for it (or $CAMREACH_OPENWRT_ROOTFS):

    .venv/bin/python bench/bench_push.py [--latency-ms 50] [--runs 3]

The confirm deliberately opens a second connection: it must prove that a *new* connection
gets through after the change. The router refuses a confirm for ``holdoff`` seconds after the
apply (the reload has to happen first, as in LuCI), so the wall time is shown with the
default holdoff (4 s) and with none, which leaves the network cost alone.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.adapters import ssh as ssh_adapter
from bot.adapters.ssh import SshConnection, ssh_session
from bot.router.push import Route, push_config
from tests.infra.openwrt_router import (
    OpenWrtRouter,
    preflight_problem,
    prepare_rootfs,
    rootfs_tarball,
)
from tests.test_router_support import first_contact, sections, target


class Counter:
    def __init__(self) -> None:
        self.commands = 0
        self.connections = 0

    def install(self) -> None:
        real_run = SshConnection.run
        counter = self

        async def counted_run(conn: SshConnection, command: str, **kw: Any) -> Any:
            counter.commands += 1
            return await real_run(conn, command, **kw)

        SshConnection.run = counted_run  # type: ignore[method-assign]
        ssh_adapter.SshConnection.run = counted_run  # type: ignore[method-assign]


def counting_path(router: OpenWrtRouter, key: str, pinned: str, counter: Counter) -> Route:
    @asynccontextmanager
    async def opener() -> AsyncIterator[SshConnection]:
        counter.connections += 1
        async with ssh_session(target(router, key, pinned, timeout=10)) as conn:
            yield conn

    return Route(opener, "over the LAN")


async def one_push(router: OpenWrtRouter, key: str, pinned: str, holdoff: int,
                   variant: int) -> dict[str, float]:
    counter = Counter()
    counter.install()
    path = counting_path(router, key, pinned, counter)
    # A different APN each time, so every run really changes something.
    wanted = sections(apn=f"bench{variant}.example")
    began = time.perf_counter()
    result = await push_config(path, path, wanted, deadline=120, holdoff=holdoff)
    wall = time.perf_counter() - began
    assert result.outcome == "applied", result
    return {"commands": counter.commands, "connections": counter.connections, "wall": wall}


async def no_change_push(router: OpenWrtRouter, key: str, pinned: str, variant: int
                         ) -> dict[str, float]:
    counter = Counter()
    counter.install()
    path = counting_path(router, key, pinned, counter)
    began = time.perf_counter()
    result = await push_config(path, path, sections(apn=f"bench{variant}.example"))
    assert result.outcome == "unchanged"
    return {"commands": counter.commands, "connections": counter.connections,
            "wall": time.perf_counter() - began}


async def main(latency_ms: int, runs: int) -> None:
    problem = preflight_problem()
    if problem:
        sys.exit(f"cannot run: {problem}")
    work = Path(tempfile.mkdtemp(prefix="camreach-bench-"))
    router = None
    try:
        rootfs = prepare_rootfs(rootfs_tarball(), work / "rootfs")
        router = OpenWrtRouter.start(rootfs, work / "router")
        key, pinned = await first_contact(router)
        router.add_latency(latency_ms)
        base = await probe_rtt(router, key, pinned)
        rows: list[tuple[str, dict[str, float]]] = []
        n = 0
        for holdoff in (4, 0):
            for _ in range(runs):
                n += 1
                rows.append((f"push, holdoff {holdoff} s", await one_push(router, key, pinned,
                                                                          holdoff, n)))
        rows.append(("same spec again (no changes)", await no_change_push(router, key, pinned,
                                                                           n)))
        print(f"added latency: {latency_ms} ms per round trip; "
              f"measured SSH command round trip on an open connection: {base * 1000:.0f} ms")
        print(f"{'case':34} {'remote commands':>15} {'connections':>11} {'wall time':>10}")
        for label in dict.fromkeys(r[0] for r in rows):
            sel = [r[1] for r in rows if r[0] == label]
            wall = statistics.median(r["wall"] for r in sel)
            print(f"{label:34} {int(sel[0]['commands']):>15} {int(sel[0]['connections']):>11} "
                  f"{wall:>9.2f}s")
    finally:
        if router is not None:
            router.stop()
        shutil.rmtree(work, ignore_errors=True)


async def probe_rtt(router: OpenWrtRouter, key: str, pinned: str) -> float:
    async with ssh_session(target(router, key, pinned)) as conn:
        await conn.run("true")
        began = time.perf_counter()
        await conn.run("true")
        return time.perf_counter() - began


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.latency_ms, args.runs))
