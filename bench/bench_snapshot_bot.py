"""The bot's own time on a /snapshot: from the camera's last byte to the first byte of the
photo upload reaching the (fake) Bot API, with a 1 MB JPEG; and ten cameras at ten sites.

Run: .venv/bin/python bench/bench_snapshot_bot.py   (figures are reported in the README)
All on 127.0.0.1: the fake Bot API, fake HIKVision cameras reached `via: direct`, SQLite.
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

from sqlalchemy import select, update  # noqa: E402

from bench.bench_foundation import ADMIN, bench_settings, pct  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.db.models import Camera, Site  # noqa: E402
from bot.services.audit import Actor  # noqa: E402
from bot.site import parse_site  # noqa: E402
from tests.botharness import running_bot  # noqa: E402
from tests.fakes.hikvision_camera import FakeHikvisionCamera  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramAPI  # noqa: E402

RUNS = 30
SITES = 10
PASSWORD = "Cam-Pass-1"


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp))
        cams = [FakeHikvisionCamera(password=PASSWORD, main_bytes=1_000_000)
                for _ in range(SITES)]
        for cam in cams:
            await cam.__aenter__()
        try:
            core = await Core.open(settings)
            for i in range(SITES):
                await core.apply_site(parse_site({
                    "name": f"site-{i}", "router": {"host": "127.0.0.1", "password_env": "P"},
                    "cameras": [{"name": "porch", "host": "192.168.1.64"}]}), Actor.cli())
                # A camera this machine reaches itself (via: direct) on the loopback.
                await core.add_camera(f"site-{i}", {"name": "porch", "host": "192.168.1.64",
                                                    "via": "direct"}, Actor.cli())
                await core.set_camera_password(f"site-{i}", "porch", PASSWORD, Actor.cli())
            # The site file allows LAN addresses only; the fakes listen on the loopback, so
            # point the stored rows at them (the benchmark measures the bot, not validation).
            async with core.sessions.begin() as s:
                for i, cam in enumerate(cams):
                    site_id = select(Site.id).where(Site.name == f"site-{i}").scalar_subquery()
                    await s.execute(update(Camera).where(Camera.site_id == site_id)
                                    .values(host=cam.host, port=cam.port))
            async with FakeTelegramAPI() as api, running_bot(settings, api, core=core):
                overhead: list[float] = []
                for _ in range(RUNS):
                    before = len(api.calls("sendPhoto"))
                    api.inject_message(ADMIN, "/snapshot site-0 porch")
                    while len(api.calls("sendPhoto")) == before:
                        await asyncio.sleep(0.001)
                    call = api.calls("sendPhoto")[-1]
                    overhead.append(call.started - cams[0].last_byte_ns / 1e9)
                one: list[float] = []
                ten: list[float] = []
                for _ in range(5):
                    t0 = time.monotonic()
                    await core.snapshots("site-0", "porch")
                    one.append(time.monotonic() - t0)
                    t0 = time.monotonic()
                    await asyncio.gather(*(core.snapshots(f"site-{i}", "porch")
                                           for i in range(SITES)))
                    ten.append(time.monotonic() - t0)
            await core.close()
        finally:
            for cam in cams:
                await cam.__aexit__(None, None, None)
    print(f"bot overhead, camera's last byte to the upload's first byte (1 MB): median "
          f"{statistics.median(overhead) * 1000:.1f} ms, p90 {pct(overhead, 0.9) * 1000:.1f} ms "
          f"(n={RUNS}); target median < 50 ms")
    ratio = statistics.median(ten) / statistics.median(one)
    print(f"one camera {statistics.median(one) * 1000:.0f} ms, ten at ten sites at once "
          f"{statistics.median(ten) * 1000:.0f} ms: {ratio:.2f}x; target < 1.5x")


if __name__ == "__main__":
    asyncio.run(main())
