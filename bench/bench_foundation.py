"""Foundation benchmarks: start-up, idle memory with 100 sites, /status latency with 100 sites.

Run: .venv/bin/python bench/bench_foundation.py   (figures are reported in the README)
Everything runs against the fake Bot API on 127.0.0.1 and a throw-away SQLite database.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.core import Core  # noqa: E402
from bot.services.audit import Actor  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.site import parse_site  # noqa: E402
from tests.botharness import running_bot  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramAPI  # noqa: E402

ADMIN = 1001
SITES = 100
STARTS = 7
STATUS_REQUESTS = 200


async def seed(settings: Settings) -> None:
    core = await Core.open(settings)
    try:
        for i in range(SITES):
            doc = {"name": f"site-{i:03d}", "router": {"password_env": "P"},
                   "cameras": [{"name": "porch", "host": "192.168.1.64"},
                               {"name": "gate", "host": "192.168.1.65"}]}
            await core.apply_site(parse_site(doc), Actor.cli())
    finally:
        await core.close()


def env_for(settings: Settings, api: FakeTelegramAPI) -> dict[str, str]:
    assert settings.camreach_secret_key is not None
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_API_BASE_URL": api.base_url,
        "CAMREACH_ADMINS": str(ADMIN),
        "DATABASE_URL": settings.async_database_url,
        "CAMREACH_DATA_DIR": str(settings.data_dir),
        "CAMREACH_SECRET_KEY": settings.camreach_secret_key.get_secret_value(),
        "CAMREACH_LOG_LEVEL": "WARNING",
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def startup_and_memory(settings: Settings) -> tuple[list[float], float]:
    exe = str(Path(sys.executable).parent / "camreach")
    times: list[float] = []
    rss = 0.0
    for i in range(STARTS):
        async with FakeTelegramAPI() as api:
            t0 = time.monotonic()
            proc = await asyncio.create_subprocess_exec(exe, "run", env=env_for(settings, api))
            first = await api.wait_for_polling(timeout=30)
            times.append(first - t0)
            if i == STARTS - 1:
                await asyncio.sleep(3)  # idle: polling, scheduler armed
                rss = rss_mb(proc.pid)
            proc.terminate()
            await proc.wait()
            assert proc.returncode == 0, f"camreach run exited {proc.returncode}"
    return times, rss


async def status_latency(settings: Settings) -> list[float]:
    latencies: list[float] = []
    async with FakeTelegramAPI() as api, running_bot(settings, api):
        for _ in range(STATUS_REQUESTS):
            t0 = time.monotonic()
            api.inject_message(ADMIN, "/status")
            # the reply is two messages (100 sites); wait for the last one
            call = await api.wait_for("sendMessage",
                                      lambda c: "/status NAME" in c.params["text"], timeout=10)
            latencies.append(call.timestamp - t0)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_settings(data_dir: Path) -> Settings:
    """Settings for a throw-away bot: its own data dir and key, the admin of the benchmarks."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        camreach_admins=str(ADMIN),
        camreach_data_dir=data_dir,
        camreach_secret_key=SecretStr(Fernet.generate_key().decode()),
        telegram_bot_token=SecretStr("1:x"),
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp))
        await seed(settings)
        starts, rss = await startup_and_memory(settings)
        lat = await status_latency(settings)
    print(f"start-up to first getUpdates: median {statistics.median(starts):.2f} s "
          f"(min {min(starts):.2f}, max {max(starts):.2f}, n={STARTS}); target < 1.5 s")
    print(f"idle RSS with {SITES} sites: {rss:.0f} MB; target < 120 MB")
    print(f"/status with {SITES} sites: p50 {pct(lat, 0.5) * 1000:.1f} ms, "
          f"p95 {pct(lat, 0.95) * 1000:.1f} ms (n={len(lat)}); target p95 < 50 ms")


if __name__ == "__main__":
    asyncio.run(main())
