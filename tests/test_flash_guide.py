"""The model table and the texts built from it (CLI and Telegram /flash)."""

from __future__ import annotations

import fnmatch
import shlex

import pytest

from bot.errors import NotFound
from bot.flash import guide
from bot.flash.cli import flash
from bot.flash.models import MODELS, get_model, model_keys

TELEGRAM_MAX = 4096


def test_the_table_has_the_mr3020_v3_and_other_tplinks_with_usb_or_lte() -> None:
    m = get_model("tl-mr3020-v3")
    assert (m.server_ip, m.recovery_filename, m.openwrt_ip) == (
        "192.168.0.225",
        "tp_recovery.bin",
        "192.168.1.1",
    )
    assert m.flash_bytes == 8 * 1024 * 1024
    assert "hold the reset" in " ".join(m.recovery_steps).lower()
    assert len(MODELS) >= 4
    assert {x.uplink for x in MODELS} >= {"USB modem", "built-in LTE"}
    assert all(x.name.startswith("TP-Link ") for x in MODELS)


@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.key)
def test_every_row_is_sourced_and_consistent(m: object) -> None:
    from bot.flash.models import RouterModel

    assert isinstance(m, RouterModel)
    assert m.sources
    assert all(s.startswith("https://") for s in m.sources)
    assert 0 < m.max_image_bytes <= m.flash_bytes
    assert fnmatch.fnmatchcase(
        f"openwrt-23.05.5-{m.openwrt_target.replace('/', '-')}-{m.openwrt_device}"
        "-squashfs-tftp-recovery.bin",
        m.image_pattern,
    )
    assert m.server_ip.startswith("192.168.0.")
    assert not m.server_ip.endswith(".255")


def test_keyboard_lists_every_model_once_with_a_label() -> None:
    buttons = guide.models_for_keyboard()

    assert [k for k, _ in buttons] == list(model_keys())
    assert ("tl-mr3020-v3", "TP-Link TL-MR3020 v3 (USB modem)") in buttons
    assert all(len(f"flash:{k}".encode()) <= 64 for k, _ in buttons)  # callback_data limit


@pytest.mark.parametrize("key", model_keys())
def test_instructions_name_the_image_the_address_and_a_command_that_parses(key: str) -> None:
    m = get_model(key)
    text = guide.flash_instructions(key)

    assert len(text) < TELEGRAM_MAX
    assert m.image_pattern in text
    assert m.selector_url in text
    assert "Not the sysupgrade image" in text
    assert f"sudo ip addr add {m.server_ip}/24" in text
    assert "netsh" in text
    assert "not 255" in text
    for step in m.recovery_steps:
        assert step in text
    command = guide.flash_command(m)
    assert command in text
    argv = shlex.split(command)
    assert argv[:3] == ["sudo", "camreach", "flash"]
    ctx = flash.make_context("flash", argv[3:])
    assert ctx.params["model_key"] == key
    assert str(ctx.params["image"]).endswith(m.image_pattern)
    assert ctx.params["port"] == 69


def test_instructions_for_an_unknown_model_raise_not_found() -> None:
    with pytest.raises(NotFound, match="tl-mr3020-v3"):
        guide.flash_instructions("nonsense")


def test_the_reminder_spells_out_the_last_number() -> None:
    assert "225 (two-two-five), not 255" in guide.broadcast_reminder("192.168.0.225")
    assert "66 (six-six), not 255" in guide.broadcast_reminder("192.168.0.66")


def test_next_steps_and_troubleshooting_cover_what_the_issue_asks() -> None:
    target = guide.target_for(get_model("tl-mr3020-v3"))

    after = guide.next_steps(target, "enp3s0")
    expected_after = [
        "Do not power the router off",
        "LEDs",
        "sudo ip addr del 192.168.0.225/24 dev enp3s0",
        "source=dhcp",
        "http://192.168.1.1",
        "ssh root@192.168.1.1",
        "/setup",
    ]
    for text in expected_after:
        assert text in after
    help_ = guide.troubleshooting(target, 600)
    expected_help = ["within 600 s", "Cable", "Wi-Fi", "Recovery mode", "reset button"]
    for text in [*expected_help, "ufw allow 69/udp", "tp_recovery.bin"]:
        assert text in help_


def test_models_table_lists_rows_and_their_sources() -> None:
    table = guide.models_table()

    for m in MODELS:
        assert m.key in table
        assert m.sources[0] in table
        assert m.image_pattern in table
    assert "--server-ip and --filename" in table
