"""The bot never waits on the network: /status and /help reply times, first with nothing
hanging, then while five `/router detect` requests hang on a router that accepts TCP and never
answers.

Run: .venv/bin/python bench/bench_runtime.py   (figures are reported in the README)
Everything runs on 127.0.0.1: the fake Bot API, the silent port, a throw-away SQLite database.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_foundation import ADMIN, bench_settings, pct  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.services.audit import Actor  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.site import parse_site  # noqa: E402
from tests.botharness import running_bot  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramAPI  # noqa: E402
from tests.test_tg_concurrency import SilentPort  # noqa: E402

REQUESTS = 200
HANGING = 5


async def replies(api: FakeTelegramAPI, command: str, expect: str) -> list[float]:
    out: list[float] = []
    for _ in range(REQUESTS):
        t0 = time.monotonic()
        api.inject_message(ADMIN, command)
        call = await api.wait_for("sendMessage", lambda c, t0=t0: expect in c.params["text"]
                                  and c.timestamp >= t0, timeout=10)
        out.append(call.timestamp - t0)
    return out


async def measure(settings: Settings, silent: SilentPort, hang: bool) -> dict[str, list[float]]:
    core = await Core.open(settings)
    try:
        async with FakeTelegramAPI() as api, running_bot(settings, api, core=core):
            if hang:
                for _ in range(HANGING):
                    api.inject_message(ADMIN, "/router detect farm")
                while silent.accepted < 1:
                    await asyncio.sleep(0.01)
            status = await replies(api, "/status", "farm")
            help_ = await replies(api, "/help", "camreach lets you reach")
            if hang:
                pending = [c for c in api.calls("sendMessage") if "Working" in c.params["text"]]
                assert len(pending) >= 1, "the detect requests never started"
            return {"/status": status, "/help": help_}
    finally:
        await core.close()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp))
        async with SilentPort() as silent:
            core = await Core.open(settings)
            # The router is a silent port on 127.0.0.1 (a loopback router.host is allowed: an SSH
            # port forward), its LAN a private range.
            await core.apply_site(parse_site({"name": "farm", "router": {
                "host": "127.0.0.1", "port": silent.port, "lan_subnet": "192.168.1.0/24",
                "password_env": "P"}}), Actor.cli())
            await core.close()
            for hang in (False, True):
                got = await measure(settings, silent, hang)
                label = f"while {HANGING} /router detect hang" if hang else "nothing hanging"
                for command, values in got.items():
                    print(f"{command} {label}: p50 {pct(values, 0.5) * 1000:.1f} ms, "
                          f"p95 {pct(values, 0.95) * 1000:.1f} ms, "
                          f"mean {statistics.mean(values) * 1000:.1f} ms (n={len(values)}); "
                          "target p95 < 50 ms")
            print(f"connections held open by the silent router: {silent.accepted}")


if __name__ == "__main__":
    asyncio.run(main())
