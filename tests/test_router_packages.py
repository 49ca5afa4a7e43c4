"""Installing what the modem needs from a package feed, without internet on the router.

Stand-ins, and why: the chroot router has no internet and this machine may have none
either, so the "official feed" is an aiohttp server on 127.0.0.1 with the layout of
downloads.openwrt.org (``/releases/23.05-SNAPSHOT/targets/x86/64/packages/``,
``/releases/23.05-SNAPSHOT/packages/x86_64/<feed>/``), served over HTTPS with a CA made for
the test, a ``Packages.gz`` index like the official one with a ``Packages.sig`` by a usign key
made for the test (``tests/test_router_feed_signing.py``, which also tests the refusals),
and tiny ``.ipk`` files built here (gzipped tar of ``debian-binary``,
``control.tar.gz`` and ``data.tar.gz``, as OpenWrt's ipkg-build makes them). The router's
real ``opkg`` installs them from the uploaded files. A full flash is a small tmpfs mounted on
the router's ``/overlay`` (where a squashfs router keeps its writable flash).
"""

from __future__ import annotations

import gzip
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.adapters.ssh import ssh_session
from bot.errors import OperatorError
from bot.router import usign
from bot.router.detect import RouterFacts, detect
from bot.router.packages import (
    FeedConfig,
    NotEnoughFlash,
    feed_urls,
    install_packages,
    parse_index,
    resolve,
)
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_detect import remove_packages
from tests.test_router_feed_signing import SignedFeed, signed_feed
from tests.test_router_support import RELEASE, first_contact, target


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[SignedFeed]:
    async with signed_feed(tmp_path / "feed") as served:
        yield served


def kernel_version(router: OpenWrtRouter) -> str:
    status = router.run("opkg status kernel").stdout
    return next(line.split(": ", 1)[1] for line in status.splitlines()
                if line.startswith("Version:"))


async def facts_of(router: OpenWrtRouter, key: str, pinned: str) -> RouterFacts:
    async with ssh_session(target(router, key, pinned)) as conn:
        return (await detect(conn)).facts


# --- pure ---------------------------------------------------------------------------------

def test_feed_urls_follow_the_official_layout() -> None:
    facts = RouterFacts(release="23.05.3", target="ramips/mt76x8", arch="mipsel_24kc")
    urls = feed_urls(facts, FeedConfig())
    assert urls[0] == ("https://downloads.openwrt.org/releases/23.05.3/targets/ramips/mt76x8/"
                       "packages")
    assert ("https://downloads.openwrt.org/releases/23.05.3/packages/mipsel_24kc/base"
            in urls)
    snap = feed_urls(RouterFacts(release="SNAPSHOT", target="ath79/generic", arch="mips_24kc"),
                     FeedConfig(base_url="https://mirror.example/openwrt/"))
    assert snap[0] == "https://mirror.example/openwrt/snapshots/targets/ath79/generic/packages"
    branch = feed_urls(RouterFacts(release="23.05-SNAPSHOT", target="x86/64", arch="x86_64"),
                       FeedConfig())
    assert branch[1] == "https://downloads.openwrt.org/releases/23.05-SNAPSHOT/packages/x86_64/base"
    with pytest.raises(Exception, match="unknown"):
        feed_urls(RouterFacts(), FeedConfig())


def test_resolve_pulls_in_what_is_missing_and_checks_the_kernel() -> None:
    index = parse_index(
        "Package: uqmi\nVersion: 1\nDepends: libc, libubox20230523, libblobmsg-json20230523\n"
        "Filename: uqmi.ipk\nSize: 10\n\n"
        "Package: libblobmsg-json20230523\nVersion: 1\nDepends: libc\nFilename: b.ipk\nSize: 1\n"
        "Provides: libblobmsg-json\n\n"
        "Package: kmod-usb-net-qmi-wwan\nVersion: 5.15.150-1\n"
        "Depends: kernel (= 5.15.150-1-abc), kmod-usb-wdm | kmod-usb-acm\nFilename: k.ipk\n"
        "Size: 1\n\n"
        "Package: kmod-usb-wdm\nVersion: 5.15.150-1\nDepends: kernel (= 5.15.150-1-abc)\n"
        "Filename: w.ipk\nSize: 1\n",
        "http://feed")
    installed = {"libc": "1", "libubox20230523": "1", "kernel": "5.15.150-1-abc"}
    names = [p.name for p in resolve(["uqmi", "kmod-usb-net-qmi-wwan"], installed, index)]
    assert names == ["uqmi", "kmod-usb-net-qmi-wwan", "libblobmsg-json20230523", "kmod-usb-wdm"]
    wrong_kernel = re.escape("built for kernel 5.15.150-1-abc, but the router")
    with pytest.raises(OperatorError, match=wrong_kernel):
        resolve(["kmod-usb-wdm"], {**installed, "kernel": "5.15.137-1-xyz"}, index)
    with pytest.raises(OperatorError, match="not in the OpenWrt feeds"):
        resolve(["no-such-package"], installed, index)


# --- against the router and the local feed ------------------------------------------------

async def test_offline_install_downloads_uploads_and_installs_with_opkg(
    openwrt_router: OpenWrtRouter, feed: SignedFeed
) -> None:
    router = openwrt_router
    kernel = kernel_version(router)
    remove_packages(router, "kmod-usb-net-cdc-ether")
    targets = f"{RELEASE}/targets/x86/64/packages"
    feed.add(targets, "kmod-usb-net-cdc-ether", f"kernel (= {kernel}), kmod-usb-net",
             version="5.15.137-1")
    feed.add(f"{RELEASE}/packages/x86_64/packages", "crtest-tool", "libc, crtest-lib")
    feed.add(f"{RELEASE}/packages/x86_64/base", "crtest-lib", "libc")
    key, pinned = await first_contact(router)
    facts = await facts_of(router, key, pinned)
    assert not facts.has_package("kmod-usb-net-cdc-ether")

    async with ssh_session(target(router, key, pinned)) as conn:
        result = await install_packages(
            conn, facts, ["kmod-usb-net-cdc-ether", "crtest-tool", "uqmi"],
            feed.config(), online=None)

    # The router has no internet, so `opkg update` failed and camreach went offline.
    assert result.method == "offline"
    assert set(result.installed) == {"kmod-usb-net-cdc-ether", "crtest-tool", "crtest-lib"}
    installed = router.run("opkg list-installed").stdout
    assert "kmod-usb-net-cdc-ether - 5.15.137-1" in installed
    assert "crtest-tool - 1.0-1" in installed and "crtest-lib - 1.0-1" in installed
    assert (router.root / "usr/share/crtest-tool/marker").read_text() == "crtest-tool"
    assert not (router.root / "tmp/camreach-pkgs").exists()  # uploads cleaned up
    # uqmi was installed already: nothing of it was fetched.
    assert not any("uqmi" in p for p in feed.requests)
    assert f"/{targets}/Packages.gz" in feed.requests


async def test_a_full_flash_is_refused_before_anything_is_uploaded(
    openwrt_router: OpenWrtRouter, feed: SignedFeed
) -> None:
    router = openwrt_router
    # The router's writable flash: 64 KiB, nearly full (what a TL-MR3020 v3 looks like).
    router.run("mkdir -p /overlay && mount -t tmpfs -o size=64k camreach-overlay /overlay"
               " && dd if=/dev/zero of=/overlay/filler bs=1k count=40 2>/dev/null")
    feed.add(f"{RELEASE}/packages/x86_64/base", "crtest-big", "libc", installed_size=600_000)
    key, pinned = await first_contact(router)
    facts = await facts_of(router, key, pinned)
    assert facts.flash_free_kb is not None and facts.flash_free_kb <= 24
    before = router.run("opkg list-installed").stdout

    async with ssh_session(target(router, key, pinned)) as conn:
        with pytest.raises(NotEnoughFlash, match="Nothing was uploaded") as refused:
            await install_packages(conn, facts, ["crtest-big"],
                                   feed.config(), online=False)
    assert "about 586 KiB of flash" in refused.value.user_message
    assert not any(p.endswith(".ipk") for p in feed.requests)  # not even downloaded
    assert not (router.root / "tmp/camreach-pkgs").exists()
    assert router.run("opkg list-installed").stdout == before


async def test_a_tampered_package_is_not_installed(
    openwrt_router: OpenWrtRouter, feed: SignedFeed
) -> None:
    router = openwrt_router
    base = f"{RELEASE}/packages/x86_64/base"
    feed.add(base, "crtest-lib", "libc")
    ipk = next((feed.root / base).glob("*.ipk"))
    ipk.write_bytes(ipk.read_bytes() + b"tampered")
    key, pinned = await first_contact(router)
    facts = await facts_of(router, key, pinned)
    async with ssh_session(target(router, key, pinned)) as conn:
        with pytest.raises(Exception, match="does not match the feed's checksum"):
            await install_packages(conn, facts, ["crtest-lib"],
                                   feed.config(), online=False)
    assert "crtest-lib" not in router.run("opkg list-installed").stdout


async def test_nothing_missing_means_nothing_fetched(
    openwrt_router: OpenWrtRouter, feed: SignedFeed
) -> None:
    key, pinned = await first_contact(openwrt_router)
    facts = await facts_of(openwrt_router, key, pinned)
    async with ssh_session(target(openwrt_router, key, pinned)) as conn:
        result = await install_packages(conn, facts, ["uqmi", "comgt-ncm"],
                                        feed.config())
    assert result.method == "nothing" and "Nothing to install" in result.message
    assert feed.requests == []


async def test_httpx_is_the_client(feed: SignedFeed) -> None:
    # The feed serves what the index promises, signed (sanity check of the stand-in itself).
    feed.add(f"{RELEASE}/packages/x86_64/base", "crtest-lib", "libc")
    base = f"{feed.base_url}/{RELEASE}/packages/x86_64/base"
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=feed.ca_file)) as c:
        resp, sig = await c.get(f"{base}/Packages.gz"), await c.get(f"{base}/Packages.sig")
    index = gzip.decompress(resp.content)
    entries = parse_index(index.decode(), "x")
    assert entries["crtest-lib"].sha256 and entries["crtest-lib"].installed_size == 2048
    key = usign.parse_public_key(feed.key_file.read_text())
    assert usign.verify(index, usign.parse_signature(sig.content), [key]) is key
