"""Shared helpers for the router tests (no tests of its own besides a sanity check).

They use camreach's real SSH code (``bot.adapters.ssh``) against the real OpenWrt userland of
``tests/infra/openwrt_router.py``; assertions read the router's own files.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.adapters.ssh import SshConnection, SshTarget, generate_client_key, ssh_session
from bot.render.model import ModemConfig, RouterConfig, RouterWireguard
from bot.render.router import render_router_sections
from bot.render.uci import UciSection
from bot.router.access import install_client_key
from bot.router.push import Route
from bot.services.identity import client_public_key
from tests.golden import ROUTER_PRIVATE, SERVER_PUBLIC

if TYPE_CHECKING:
    from tests.infra.openwrt_router import OpenWrtRouter

LAN = IPv4Network("192.168.1.0/24")


def router_config(**modem: Any) -> RouterConfig:
    fields: dict[str, Any] = {"protocol": "ncm", "device": "/dev/cdc-wdm0",
                              "apn": "airtelgprs.com", "mode": "prefer-lte"}
    fields.update(modem)
    description = fields.pop("description", "camreach droplet")
    return RouterConfig(
        modem=ModemConfig(**fields),
        wg=RouterWireguard(
            private_key=ROUTER_PRIVATE, address=IPv4Interface("10.8.0.2/24"),
            server_public_key=SERVER_PUBLIC, endpoint_host="203.0.113.10",
            description=description,
        ),
        lan_subnet=LAN,
    )


def sections(**modem: Any) -> list[UciSection]:
    return render_router_sections(router_config(**modem))


def target(router: OpenWrtRouter, key: str, pinned: str | None, *, password: str | None = None,
           timeout: float = 5.0) -> SshTarget:
    return SshTarget(router.addr, router.ssh_port, "root", "the test router", pinned, key,
                     password=password, connect_timeout=timeout, command_timeout=timeout * 2)


async def first_contact(router: OpenWrtRouter) -> tuple[str, str]:
    """camreach's key installed on the router by password login: (private key, pinned key)."""
    key = generate_client_key()
    async with ssh_session(target(router, key, None, password=router.root_password)) as conn:
        await install_client_key(conn, client_public_key(key))
        return key, conn.host_key


def lan_path(router: OpenWrtRouter, key: str, pinned: str, *, timeout: float = 5.0,
             label: str = "over the LAN") -> Route:
    def opener() -> AbstractAsyncContextManager[SshConnection]:
        return ssh_session(target(router, key, pinned, timeout=timeout))

    return Route(opener, label)


def md5(router: OpenWrtRouter, path: str) -> str:
    return hashlib.md5((router.root / path.lstrip("/")).read_bytes()).hexdigest()


def config_sums(router: OpenWrtRouter) -> tuple[str, str]:
    return md5(router, "/etc/config/network"), md5(router, "/etc/config/firewall")


def uci_get(router: OpenWrtRouter, path: str) -> str | None:
    res = router.run(f"uci -q get {path}", check=False)
    return res.stdout[:-1] if res.returncode == 0 else None


async def wait_until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float,
                     what: str) -> None:
    """Poll a condition on the router's files (there is no event to await across the chroot)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


# --- a local package feed (test_router_packages, test_router_service) ----------------------

RELEASE = "releases/23.05-SNAPSHOT"


def _tgz(members: list[tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        dirs: set[str] = set()
        for name, data, mode in members:
            parts = name.split("/")[1:-1]  # "./usr/share/x/file": opkg wants the directories
            for i in range(1, len(parts) + 1):
                d = "./" + "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_ipk(name: str, version: str, depends: str, files: dict[str, bytes],
              installed_size: int) -> tuple[bytes, str]:
    control = (f"Package: {name}\nVersion: {version}\nDepends: {depends}\n"
               f"Architecture: x86_64\nInstalled-Size: {installed_size}\n"
               f"Description: camreach test package\n")
    ipk = _tgz([
        ("./debian-binary", b"2.0\n", 0o644),
        ("./data.tar.gz", _tgz([(f"./{p}", d, 0o755) for p, d in files.items()]), 0o644),
        ("./control.tar.gz", _tgz([("./control", control.encode(), 0o644)]), 0o644),
    ])
    return ipk, control


@dataclass
class Feed:
    """A local package feed; ``requests`` lists every path asked for."""

    root: Path
    base_url: str = ""
    requests: list[str] = field(default_factory=list)

    def add(self, feed: str, name: str, depends: str, *, version: str = "1.0-1",
            installed_size: int = 2048, files: dict[str, bytes] | None = None) -> None:
        ipk, control = build_ipk(name, version, depends,
                                 files or {f"usr/share/{name}/marker": name.encode()},
                                 installed_size)
        directory = self.root / feed
        directory.mkdir(parents=True, exist_ok=True)
        filename = f"{name}_{version}_x86_64.ipk"
        (directory / filename).write_bytes(ipk)
        stanza = (control.replace("Description", f"Filename: {filename}\nSize: {len(ipk)}\n"
                                  f"SHA256sum: {hashlib.sha256(ipk).hexdigest()}\nDescription")
                  + " More text on a continuation line.\n\n")
        index = directory / "Packages"
        index.write_text((index.read_text() if index.exists() else "") + stanza)
        (directory / "Packages.gz").write_bytes(gzip.compress(index.read_bytes()))


@asynccontextmanager
async def local_feed(root: Path) -> AsyncIterator[Feed]:
    """Serve ``root`` over HTTP on 127.0.0.1 (an ephemeral port) as a package feed."""
    result = Feed(root)
    result.root.mkdir(parents=True, exist_ok=True)

    async def serve(request: web.Request) -> web.StreamResponse:
        result.requests.append(request.path)
        path = (result.root / request.match_info["path"]).resolve()
        if not path.is_relative_to(result.root) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{path:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    result.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield result
    finally:
        await runner.cleanup()


def test_sections_helper_renders_camreach_sections() -> None:
    paths = {s.path for s in sections()}
    assert {"network.wwan", "network.wg0", "firewall.camreach_vpn"} <= paths
