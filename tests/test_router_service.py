"""RouterService against the real router and camreach's database: first contact, key auth,
host-key pinning, detection stored in the rows, packages installed offline, secrets kept out
of the logs. (The push through the tunnel is in test_router_tunnel.py.)"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from sqlalchemy import select

from bot.actions import for_terminal
from bot.core import Core
from bot.db.models import Modem, Router, Site
from bot.errors import AuthRejected, ConfigError, HostKeyMismatch, NotFound
from bot.router.access import RouterTiming
from bot.router.service import RouterService
from bot.services import identity
from bot.services.audit import Actor
from bot.site import parse_site
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_detect import plant_e3372h_stick, remove_packages
from tests.test_router_feed_signing import SignedFeed as Feed
from tests.test_router_feed_signing import signed_feed as local_feed
from tests.test_router_packages import kernel_version
from tests.test_router_support import RELEASE

PW_ENV = "CAMREACH_TEST_ROUTER_PASSWORD"


async def add_site(core: Core, router: OpenWrtRouter) -> None:
    spec = parse_site({
        "name": "farm",
        "router": {"host": router.addr, "password_env": PW_ENV, "lan_subnet": "10.199.0.0/16"},
        "modem": {"protocol": "auto", "apn": "internet"},
    })
    await core.apply_site(spec, Actor.cli())


def service_for(core: Core, env: dict[str, str], **kw: Any) -> RouterService:
    return RouterService(core.sessions, core.secrets, core.droplets, env=env,
                         timing=RouterTiming(connect_timeout=5, command_timeout=20), **kw)


async def router_row(core: Core) -> Router:
    async with core.sessions() as s:
        return (await s.execute(select(Router).join(Site).where(Site.name == "farm"))
                ).scalar_one()


async def test_first_contact_pins_installs_the_key_and_then_only_the_key_is_used(
    core: Core, openwrt_router: OpenWrtRouter, caplog: pytest.LogCaptureFixture
) -> None:
    router = openwrt_router
    await add_site(core, router)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("asyncssh").setLevel(logging.DEBUG)
    service = service_for(core, {PW_ENV: router.root_password})

    first = await service.first_contact("farm")

    assert first.pinned_now and first.key_added
    row = await router_row(core)
    assert row.key_installed
    assert row.ssh_host_key == first.host_key
    assert first.host_key in router.host_public_keys().values()
    public = identity.client_public_key(await identity.client_key(core.secrets))
    assert (router.root / "etc/dropbear/authorized_keys").read_text() == public + "\n"

    again = await service.first_contact("farm")
    assert not again.pinned_now and not again.key_added
    assert (router.root / "etc/dropbear/authorized_keys").read_text() == public + "\n"

    # From now on no password: a service without one in its environment still gets in.
    keyonly = service_for(core, {})
    async with keyonly.session("farm", "lan") as conn:
        assert (await conn.run("echo in")).stdout == "in\n"
    await keyonly.close()
    assert "Pubkey auth succeeded" in router.run("logread").stdout

    assert router.root_password not in caplog.text
    await service.close()


async def test_a_changed_host_key_is_refused_before_logging_in(
    core: Core, openwrt_router: OpenWrtRouter
) -> None:
    router = openwrt_router
    await add_site(core, router)
    service = service_for(core, {PW_ENV: router.root_password})
    await service.first_contact("farm")
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    async with core.sessions.begin() as s:
        row = (await s.execute(select(Router).join(Site).where(Site.name == "farm"))
               ).scalar_one()
        row.ssh_host_key = " ".join(other.split()[:2])
    await service.pool.close()
    logins_before = router.run("logread").stdout.count("auth succeeded")

    with pytest.raises(HostKeyMismatch, match="other than the one camreach pinned") as err:
        await service.detect("farm")
    assert "camreach router forget-key farm" in for_terminal(err.value.user_message)
    with pytest.raises(HostKeyMismatch):
        await service.first_contact("farm")  # the password is not sent either
    assert router.run("logread").stdout.count("auth succeeded") == logins_before

    await service.forget_host_key("farm")  # on purpose, after a reflash
    assert (await service.first_contact("farm")).pinned_now
    await service.close()


async def test_wrong_or_missing_password(core: Core, openwrt_router: OpenWrtRouter) -> None:
    await add_site(core, openwrt_router)
    with pytest.raises(AuthRejected, match="refused the login"):
        await service_for(core, {PW_ENV: "not-it"}).first_contact("farm")
    with pytest.raises(ConfigError, match=f"{PW_ENV}, which is not set"):
        await service_for(core, {}).first_contact("farm")
    assert not (await router_row(core)).key_installed


async def test_detection_is_stored_in_the_router_and_modem_rows(
    core: Core, openwrt_router: OpenWrtRouter
) -> None:
    router = openwrt_router
    plant_e3372h_stick(router)
    await add_site(core, router)
    service = service_for(core, {PW_ENV: router.root_password})
    await service.first_contact("farm")

    found = await service.detect("farm")

    row = await router_row(core)
    assert row.openwrt_release == "23.05-SNAPSHOT r23633-c7b6cfac40"
    assert (row.board, row.arch) == ("TP-Link TL-MR3020 v3", "x86_64")
    async with core.sessions() as s:
        modem = (await s.execute(select(Modem).join(Site).where(Site.name == "farm"))
                 ).scalar_one()
    assert (modem.model, modem.usb_id, modem.mode, modem.device) == (
        "Huawei E3372h (stick firmware)", "12d1:1506", "ncm", "/dev/cdc-wdm0")
    assert modem.protocol == "auto"  # the site's wish stays; the detection is beside it
    assert found.modem is not None and found.modem.protocol == "ncm"
    await service.close()


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[Feed]:
    async with local_feed(tmp_path / "feed") as served:
        yield served


async def test_missing_packages_are_installed_offline_and_detection_refreshed(
    core: Core, openwrt_router: OpenWrtRouter, feed: Feed
) -> None:
    router = openwrt_router
    # A HiLink stick whose driver package is missing, on a router without internet.
    (router.root / "sys/bus/usb/devices/1-1").mkdir(parents=True)
    (router.root / "sys/bus/usb/devices/1-1/idVendor").write_text("12d1\n")
    (router.root / "sys/bus/usb/devices/1-1/idProduct").write_text("14dc\n")
    remove_packages(router, "kmod-usb-net-cdc-ether")
    feed.add(f"{RELEASE}/targets/x86/64/packages", "kmod-usb-net-cdc-ether",
             f"kernel (= {kernel_version(router)}), kmod-usb-net", version="5.15.137-1")
    await add_site(core, router)
    service = service_for(core, {PW_ENV: router.root_password},
                          feeds=feed.config())
    await service.first_contact("farm")
    assert (await service.detect("farm")).missing_packages == ("kmod-usb-net-cdc-ether",)

    result = await service.install_missing("farm")

    assert (result.method, result.installed) == ("offline", ("kmod-usb-net-cdc-ether",))
    assert "uploaded (the router had no internet)" in result.message
    assert (await service.detect("farm")).missing_packages == ()
    await service.close()


async def test_config_needs_the_droplet_first(core: Core, openwrt_router: OpenWrtRouter) -> None:
    await add_site(core, openwrt_router)
    service = service_for(core, {PW_ENV: openwrt_router.root_password})
    with pytest.raises(NotFound, match="has no droplet yet"):
        await service.plan_push("farm")
    with pytest.raises(NotFound, match="no site named"):
        await service.detect("nowhere")
