"""/router in Telegram and `camreach router ...` on the terminal, against the real router."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.core import Core
from bot.db.models import Droplet, Router, Site
from bot.services.audit import Actor
from bot.services.vpn_keys import ensure_site_keys
from bot.settings import Settings
from tests.botharness import running_bot
from tests.conftest import ADMIN_ID
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_detect import plant_e3372h_stick
from tests.test_router_tunnel import ROUTER_PW_ENV, setup, site_spec  # noqa: F401 (fixture)


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as fake:
        yield fake


def texts_from(api: FakeTelegramAPI) -> list[str]:
    return [m.content or "" for m in api.messages_to(ADMIN_ID)]


async def test_router_commands_in_telegram(
    settings: Settings, core: Core, setup: dict[str, Any],  # noqa: F811
    api: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch,
) -> None:
    router: OpenWrtRouter = setup["router"]
    monkeypatch.setenv(ROUTER_PW_ENV, router.root_password)
    async with running_bot(settings, api, core=core):
        api.inject_message(ADMIN_ID, "/router connect")
        await api.wait_for("editMessageText", lambda c: "Connected" in c.params["text"], timeout=30)
        assert "camreach" in (router.root / "etc/dropbear/authorized_keys").read_text()

        api.inject_message(ADMIN_ID, "/router detect farm")
        found = await api.wait_for("editMessageText", lambda c: "Modem:" in c.params["text"],
                                   timeout=30)
        assert "E3372h" in found.params["text"] and "carrier-grade NAT" in found.params["text"]

        api.inject_message(ADMIN_ID, "/router push")
        diff = await api.wait_for("sendMessage", lambda c: "Changes for the router" in
                                  c.params["text"], timeout=30)
        assert "network.camreach_droplet" in diff.params["text"]
        assert router.run("uci -q get network.camreach_droplet", check=False).returncode != 0
        msg_id = diff.result["message_id"]
        apply_data = api.message(ADMIN_ID, msg_id).button_data()[0]
        api.inject_callback(ADMIN_ID, apply_data, msg_id)
        done = await api.wait_for("editMessageText", lambda c: "Done" in c.params["text"],
                                  timeout=60)
        assert "Applied and confirmed" in done.params["text"]
        assert router.run("uci get network.camreach_droplet.endpoint_host").stdout.strip() == (
            setup["droplet"].addr)

        api.inject_message(ADMIN_ID, "/router push")
        await api.wait_for("sendMessage", lambda c: "No changes" in c.params["text"], timeout=30)

        api.inject_message(ADMIN_ID, "/router nonsense")
        usage = await api.wait_for("sendMessage", lambda c: "Usage: /router" in c.params["text"])
        assert "push" in usage.params["text"]
    async with core.sessions() as s:
        row = (await s.execute(select(Router))).scalar_one()
    assert row.last_push_at is not None


async def camreach(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    exe = shutil.which("camreach", path=str(Path(sys.executable).parent)) or "camreach"
    proc = await asyncio.create_subprocess_exec(exe, *args, env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_router_cli_on_the_bench(cli_env: dict[str, str], settings: Settings,
                                       openwrt_router: OpenWrtRouter) -> None:
    """A router on the desk: connect, detect, dry run, push confirmed over the LAN, again."""
    router = openwrt_router
    plant_e3372h_stick(router)
    core = await Core.open(settings)
    try:
        spec = site_spec(router)
        await core.apply_site(spec, Actor.cli())
        async with core.sessions.begin() as s:
            site = (await s.execute(select(Site))).scalar_one()
            # The endpoint is the host side of the router's own test link: nothing leaves it.
            s.add(Droplet(site_id=site.id, name="camreach-farm", region="fra1", size="s",
                          image="ubuntu-24-04-x64", status="active",
                          public_ipv4=router.host_addr))
            await ensure_site_keys(s, core.secrets.box, site, spec)
    finally:
        await core.close()
    env = dict(cli_env, **{ROUTER_PW_ENV: router.root_password})
    before = (router.root / "etc/config/network").read_bytes()

    code, out, err = await camreach(env, "router", "connect", "farm")
    assert code == 0, err
    assert "pinned" in out
    code, out, err = await camreach(env, "router", "detect", "farm")
    assert code == 0, err
    assert "Proposed protocol: ncm" in out
    code, out, err = await camreach(env, "router", "push", "farm", "--dry-run")
    assert code == 0, err
    assert "+ network.wg0" in out
    assert (router.root / "etc/config/network").read_bytes() == before  # dry run
    assert router.root_password not in out + err
    code, out, err = await camreach(env, "router", "push", "farm", "--yes",
                                    "--confirm-via", "lan")
    assert code == 0, err
    assert "Applied and confirmed" in err
    assert router.run("uci get network.wg0.proto").stdout.strip() == "wireguard"
    assert router.run("uci get network.wwan.proto").stdout.strip() == "ncm"
    code, out, err = await camreach(env, "router", "push", "farm", "--yes")
    assert code == 0 and "No changes" in out
    code, out, err = await camreach(env, "router", "modem", "farm")
    assert code == 0, err
    # the stand-in modem answers no AT commands: every reading is "unknown", not a crash
    assert out.startswith("Operator: unknown (unknown), unknown")
    assert "RSSI unknown" in out
