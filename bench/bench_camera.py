"""Benchmark: the camera adapter's overhead on a snapshot, and ten cameras at once.

* Overhead: from the camera's last byte of a 1 MB JPEG (the fake records CLOCK_MONOTONIC once
  the kernel has all of it) to ``CameraClient.snapshot()`` returning the bytes (checked equal,
  by SHA-256, to what the camera served). Target: median under 50 ms. The Telegram upload
  after it is not part of this (the bot wires that).
* Concurrency: ten cameras at ten sites (ten SSH connections, ten camera processes) fetched
  with one ``gather``, against one camera's fetch. Target: under 1.5 x.

Every fetch opens a fresh client (channel, unauthenticated ask, Digest answer, picture), as a
bot request would. Each fake camera runs in its own process (``python -m
tests.fakes.hikvision_camera``), so its JPEG making and sending is not on the adapter's loop.

Paths: ``direct`` (TCP to the camera), ``ssh`` (an asyncssh forward-only server in each camera's
process: a direct-tcpip channel per connection), ``sshd`` (ten droplet stand-ins: real OpenSSH
in network namespaces, the cameras on the host side of each veth; needs root).

    .venv/bin/python bench/bench_camera.py [--runs 40] [--rounds 10] [--delay-ms 0]
                                           [--paths direct,ssh,sshd] [--jpeg-bytes 1000000]

"bot CPU" is this process's CPU time per single fetch (checking included) and per round of
ten (the fetches alone): on a small machine the cameras and sshd share the CPUs with it.

``--delay-ms`` holds every camera answer (the 401 too) that long: a camera that takes time to
encode, or a slow link, so the ten fetches overlap as they would over LTE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncssh  # noqa: E402
import httpx  # noqa: E402

from bot.adapters.camera import CameraTarget, camera_client  # noqa: E402
from bot.adapters.ssh import SshTarget, public_key_line, ssh_session  # noqa: E402

PASSWORD = "Cam-Pass-1"
CAMERAS = 10


@dataclass
class Camera:
    proc: asyncio.subprocess.Process
    host: str
    port: int
    info: dict[str, Any]

    async def stats(self, http: httpx.AsyncClient) -> dict[str, Any]:
        response = await http.get(f"http://{self.host}:{self.port}/_fake/stats")
        data: dict[str, Any] = response.json()
        return data


async def spawn_camera(host: str, jpeg_bytes: int, delay_ms: float, ssh: bool) -> Camera:
    args = [sys.executable, "-m", "tests.fakes.hikvision_camera", "--host", host,
            "--password", PASSWORD, "--main-bytes", str(jpeg_bytes), "--delay-ms", str(delay_ms)]
    if ssh:
        args.append("--ssh")
    proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    info = json.loads(line)
    return Camera(proc, info["host"], info["port"], info)


async def stop_camera(camera: Camera) -> None:
    if camera.proc.stdin is not None:
        camera.proc.stdin.close()
    try:
        await asyncio.wait_for(camera.proc.wait(), 5)
    except TimeoutError:
        camera.proc.kill()
        await camera.proc.wait()


@dataclass
class Site:
    camera: Camera
    target: CameraTarget
    conn: Any  # SshConnection | asyncssh.SSHClientConnection | None


@contextlib.asynccontextmanager
async def sites(path: str, count: int, jpeg_bytes: int,
                delay_ms: float) -> AsyncIterator[list[Site]]:
    async with contextlib.AsyncExitStack() as stack:
        hosts = ["127.0.0.1"] * count
        droplets: list[Any] = []
        if path == "sshd":
            from tests.infra.droplet_host import DropletHost, unavailable_reason

            reason = unavailable_reason()
            if reason:
                raise RuntimeError(reason)
            for _ in range(count):
                droplets.append(stack.enter_context(DropletHost()))
            hosts = [d.host_addr for d in droplets]
        cameras = await asyncio.gather(*(spawn_camera(h, jpeg_bytes, delay_ms, path == "ssh")
                                         for h in hosts))
        for camera in cameras:
            stack.push_async_callback(stop_camera, camera)
        result: list[Site] = []
        for i, camera in enumerate(cameras):
            target = CameraTarget(f"cam{i}", camera.host, camera.port, password=PASSWORD,
                                  via="direct" if path == "direct" else "droplet",
                                  site=f"site{i}")
            conn: Any = None
            if path == "ssh":
                key = asyncssh.import_private_key(camera.info["ssh_client_key"])
                known = asyncssh.import_known_hosts(
                    f"[{camera.host}]:{camera.info['ssh_port']} {camera.info['ssh_host_key']}\n")
                conn = await stack.enter_async_context(asyncssh.connect(
                    camera.host, camera.info["ssh_port"], username="camreach",
                    client_keys=[key], known_hosts=known, agent_path=None, config=[]))
            elif path == "sshd":
                droplet = droplets[i]
                key = asyncssh.generate_private_key("ssh-ed25519")
                droplet.authorize(public_key_line(key))
                conn = await stack.enter_async_context(ssh_session(SshTarget(
                    droplet.addr, droplet.ssh_port, "root", "the droplet",
                    droplet.host_public_key, key.export_private_key().decode())))
            result.append(Site(camera, target, conn))
        yield result


@dataclass
class Fetch:
    wall_ms: float
    overhead_ms: float


async def snapshot(site: Site) -> tuple[bytes, int, int]:
    """One fetch as a bot request makes it: the picture, when it started, when it returned."""
    began = time.monotonic_ns()
    async with camera_client(site.target, ssh=site.conn) as client:
        shot = await client.snapshot("main")
        returned = time.monotonic_ns()
    return shot.data, began, returned


async def check(site: Site, http: httpx.AsyncClient, data: bytes, began: int,
                returned: int) -> Fetch:
    """Compare with what the camera served (after the timed part: it costs CPU here)."""
    stats = await site.camera.stats(http)
    if hashlib.sha256(data).hexdigest() != stats["last_jpeg_sha256"]:
        raise RuntimeError("the picture differs from what the camera served")
    return Fetch((returned - began) / 1e6, (returned - stats["last_byte_ns"]) / 1e6)


async def fetch(site: Site, http: httpx.AsyncClient) -> Fetch:
    return await check(site, http, *await snapshot(site))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench_path(path: str, runs: int, rounds: int, jpeg_bytes: int,
                     delay_ms: float) -> dict[str, float]:
    async with sites(path, CAMERAS, jpeg_bytes, delay_ms) as all_sites, \
            httpx.AsyncClient(trust_env=False) as http:
        one = all_sites[0]
        for _ in range(3):
            await fetch(one, http)  # warm-up: imports, first JPEG, caches
        cpu = time.process_time()
        single = [await fetch(one, http) for _ in range(runs)]
        cpu_one = (time.process_time() - cpu) / runs * 1000
        camera0 = await one.camera.stats(http)
        together: list[float] = []
        together_overheads: list[float] = []
        cpu_rounds = 0.0
        for _ in range(rounds):
            began = time.monotonic_ns()
            cpu = time.process_time()
            shots = await asyncio.gather(*(snapshot(s) for s in all_sites))
            cpu_rounds += time.process_time() - cpu
            # The round: from its start to the last camera's picture returned.
            together.append((max(returned for _, _, returned in shots) - began) / 1e6)
            checked = [await check(s, http, *shot) for s, shot in zip(all_sites, shots,
                                                                       strict=True)]
            together_overheads += [f.overhead_ms for f in checked]
    one_ms = statistics.median(f.wall_ms for f in single)
    ten_ms = statistics.median(together)
    return {
        "overhead_median": statistics.median(f.overhead_ms for f in single),
        "overhead_p90": pct([f.overhead_ms for f in single], 0.9),
        "overhead_max": max(f.overhead_ms for f in single),
        "one_ms": one_ms,
        "ten_ms": ten_ms,
        "ratio": ten_ms / one_ms,
        "ten_overhead_median": statistics.median(together_overheads),
        "cpu_one": cpu_one,
        "cpu_ten": cpu_rounds / rounds * 1000,
        "waited": camera0["waited_sends"] / camera0["pictures"],
    }


async def main(args: argparse.Namespace) -> None:
    print(f"{os.cpu_count()} CPUs; JPEG {args.jpeg_bytes} bytes; camera delay {args.delay_ms:g} "
          f"ms per answer; {args.runs} single fetches, {args.rounds} rounds of {CAMERAS}")
    print(f"{'path':<7} {'overhead median':>16} {'p90':>7} {'max':>7} {'one fetch':>10} "
          f"{'ten at once':>12} {'ratio':>6}  {'overhead (ten)':>14}  {'bot CPU one/ten':>16}")
    for path in args.paths.split(","):
        try:
            r = await bench_path(path, args.runs, args.rounds, args.jpeg_bytes, args.delay_ms)
        except RuntimeError as exc:
            print(f"{path:<7} skipped: {exc}")
            continue
        verdict = ("ok" if r["overhead_median"] < 50 else "SLOW",
                   "ok" if r["ratio"] < 1.5 else "OVER")
        print(f"{path:<7} {r['overhead_median']:13.1f} ms {r['overhead_p90']:7.1f} "
              f"{r['overhead_max']:7.1f} {r['one_ms']:7.1f} ms {r['ten_ms']:9.1f} ms "
              f"{r['ratio']:6.2f}  {r['ten_overhead_median']:11.1f} ms  "
              f"{r['cpu_one']:6.1f}/{r['cpu_ten']:6.1f} ms  "
              f"[overhead {verdict[0]}, concurrency {verdict[1]}]")
        if r["waited"]:
            print(f"        ({r['waited']:.0%} of camera 0's pictures did not fit the kernel's "
                  "send buffer at once: their last-byte time is the drain's, a little late)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--jpeg-bytes", type=int, default=1_000_000)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--paths", default="direct,ssh,sshd")
    asyncio.run(main(parser.parse_args()))
