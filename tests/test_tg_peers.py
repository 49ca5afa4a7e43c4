"""/peer add, list and remove through the real Application against the droplet stand-in."""

from __future__ import annotations

import configparser
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot import texts
from bot.core import Core
from bot.services.peers import PeerStatus
from bot.settings import Settings
from bot.wgkeys import public_key
from tests.botharness import running_bot
from tests.conftest import ADMIN_ID
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.infra.droplet_host import DropletHost, wg_keypair
from tests.test_peers import dump_peers, ready  # noqa: F401
from tests.test_provisioning import do_core, do_settings, fake_do  # noqa: F401
from tests.test_tg_setup import answered, api, edited, labels, press, sent  # noqa: F401

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_peer_add_list_remove(
    ready: Core, do_settings: Settings, droplet_host: DropletHost,  # noqa: F811
    api: FakeTelegramAPI, tmp_path: Path,  # noqa: F811
) -> None:
    async with running_bot(do_settings, api, core=ready):
        api.inject_message(ADMIN_ID, "/peer add anna-phone")  # the only site: no SITE needed
        doc_call = await api.wait_for("sendDocument", timeout=30)
        photo_call = await api.wait_for("sendPhoto")
        doc = api.message(ADMIN_ID, doc_call.result["message_id"])
        photo = api.message(ADMIN_ID, photo_call.result["message_id"])

        # The document is a wg-quick file for the peer the droplet now has.
        assert doc.document is not None and doc.document.filename == "anna-phone.conf"
        conf_path = tmp_path / "wg0.conf"
        conf_path.write_bytes(doc.document.data)
        subprocess.run(["wg-quick", "strip", str(conf_path)], check=True, capture_output=True)
        conf = configparser.ConfigParser()
        conf.optionxform = str  # type: ignore[assignment, method-assign]
        conf.read_string(doc.document.data.decode())
        anna = public_key(conf["Interface"]["PrivateKey"])
        assert dump_peers(droplet_host)[anna] == conf["Interface"]["Address"] == "10.8.0.3/32"
        assert conf["Peer"]["Endpoint"] == f"{droplet_host.addr}:51820"
        assert "do not forward" in (doc.caption or "")
        assert photo.photo is not None and photo.photo.data.startswith(PNG_MAGIC)
        assert "Scan from QR code" in (photo.caption or "")
        # The private key travels only in the file, never as chat text.
        assert not [c for c in api.calls("sendMessage") if "PrivateKey" in c.params["text"]]

        # A peer someone added on the server by hand is listed and flagged.
        _, stranger = wg_keypair()
        droplet_host.run(f"wg set wg0 peer {stranger} allowed-ips 10.8.0.99/32", check=True)
        api.inject_message(ADMIN_ID, "/peer list")
        listed = (await api.wait_for(
            "sendMessage", lambda c: "VPN peers of farm" in c.params["text"], 30)).params["text"]
        anna_line = next(ln for ln in listed.splitlines() if "anna-phone" in ln)
        assert "10.8.0.3" in anna_line and "handshake never" in anna_line
        unknown_line = next(ln for ln in listed.splitlines() if "10.8.0.99" in ln)
        assert "on the server but unknown to camreach" in unknown_line
        assert any("router" in ln and "10.8.0.2" in ln for ln in listed.splitlines())

        # Remove asks first; Cancel keeps the peer.
        api.inject_message(ADMIN_ID, "/peer remove anna-phone")
        ask = await sent(api, "Remove anna-phone (10.8.0.3) from farm", timeout=30)
        assert labels(api, ask) == ["Remove", "Cancel"]
        press(api, ask, "Cancel")
        await edited(api, ask, texts.CANCELLED)
        assert anna in dump_peers(droplet_host)

        api.inject_message(ADMIN_ID, "/peer remove anna-phone")
        ask = await sent(api, "Remove anna-phone (10.8.0.3) from farm", timeout=30)
        press(api, ask, "Remove")
        await edited(api, ask, "anna-phone is removed from farm", timeout=30)

    live = dump_peers(droplet_host)
    assert anna not in live and stranger in live
    assert "anna-phone" not in {p.name for p in await ready.list_peers("farm")}


async def test_peer_mistakes_are_explained(
    ready: Core, do_settings: Settings, api: FakeTelegramAPI,  # noqa: F811
) -> None:
    async with running_bot(do_settings, api, core=ready):
        api.inject_message(ADMIN_ID, "/peer")
        await sent(api, "Usage:")
        api.inject_message(ADMIN_ID, "/peer remove nobody")
        await sent(api, "farm has no peer named 'nobody'", timeout=30)
        api.inject_message(ADMIN_ID, "/peer add anna farm-x")
        await sent(api, "There is no site named 'farm-x'")
        api.inject_message(ADMIN_ID, "/peer add router")  # the core refuses reserved names
        await sent(api, "cannot name a peer", timeout=30)
    assert not api.calls("sendDocument")


def test_peer_list_text_is_human() -> None:
    now = datetime.now(UTC)
    rows = [
        PeerStatus("anna-phone", "phone", "10.8.0.3", "k1", "203.0.113.7:4242",
                   now - timedelta(minutes=3, seconds=5), 1_250_000, 310_000),
        PeerStatus(None, "unknown", "10.8.0.99", "k2", None, None, 0, 0),
    ]
    text = texts.peer_list_text("farm", rows)
    assert "anna-phone [phone] 10.8.0.3 — handshake 3 min ago, ↓1.2 MiB ↑302.7 KiB" in text
    assert "(on the server but unknown to camreach) [unknown] 10.8.0.99 — handshake never" in text
