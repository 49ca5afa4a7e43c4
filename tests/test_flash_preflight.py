"""Pre-flight checks: each failure is a camreach error that says what to do."""

from __future__ import annotations

import errno
import hashlib
import socket
from pathlib import Path

import pytest

from bot.errors import NotFound, OperatorError, ValidationFailed
from bot.flash import preflight
from bot.flash.guide import target_for
from bot.flash.models import FlashTarget, get_model

MR3020 = target_for(get_model("tl-mr3020-v3"))
GOOD_NAME = "openwrt-23.05.5-ramips-mt76x8-tplink_tl-mr3020-v3-squashfs-tftp-recovery.bin"
CUSTOM = FlashTarget("custom", "192.168.0.66", "recovery.bin", "192.168.1.1")
SIZE = 2 * 1024 * 1024


def write(tmp_path: Path, name: str = GOOD_NAME, data: bytes | None = None) -> Path:
    path = tmp_path / name
    path.write_bytes(data if data is not None else b"\x27\x05\x19\x56" + b"\xa5" * (SIZE - 4))
    return path


# --- which router ------------------------------------------------------------------------


def test_a_model_gives_its_row_and_explicit_values_override_it() -> None:
    assert preflight.resolve_target("TL-MR3020-v3", None, None) == MR3020
    t = preflight.resolve_target("tl-mr3020-v3", "192.168.0.66", "x.bin")
    assert (t.server_ip, t.filename, t.model) == ("192.168.0.66", "x.bin", MR3020.model)


def test_an_unknown_router_needs_server_ip_and_filename() -> None:
    t = preflight.resolve_target(None, "192.168.0.66", "recovery.bin")
    assert (t.server_ip, t.filename, t.model, t.openwrt_ip) == (
        "192.168.0.66",
        "recovery.bin",
        None,
        "192.168.1.1",
    )
    with pytest.raises(ValidationFailed, match="--server-ip and --filename"):
        preflight.resolve_target(None, "192.168.0.66", None)
    with pytest.raises(NotFound, match="tl-mr3020-v3"):
        preflight.resolve_target("tl-mr9999-v9", None, None)


@pytest.mark.parametrize(
    ("server_ip", "filename"),
    [
        ("192.168.0.256", "a.bin"),
        ("router", "a.bin"),
        ("192.168.0.66", "../a.bin"),
        ("192.168.0.66", "dir/a.bin"),
        ("192.168.0.66", ""),
    ],
)
def test_bad_addresses_and_file_names_are_rejected(server_ip: str, filename: str) -> None:
    with pytest.raises(ValidationFailed):
        preflight.resolve_target(None, server_ip, filename)


# --- the image ---------------------------------------------------------------------------


def test_the_right_image_passes_with_its_checksum_and_notes(tmp_path: Path) -> None:
    path = write(tmp_path)

    checked = preflight.check_image(path, MR3020)

    assert checked.data == path.read_bytes()
    assert checked.sha256 == hashlib.sha256(checked.data).hexdigest()
    assert any("tftp-recovery image for the TP-Link TL-MR3020 v3" in n for n in checked.notes)
    assert any("not checked" in n for n in checked.notes)


def test_the_largest_image_fits_and_one_byte_more_does_not(tmp_path: Path) -> None:
    limit = MR3020.model.max_image_bytes  # type: ignore[union-attr]
    preflight.check_image(write(tmp_path, data=b"\1" * limit), MR3020)

    with pytest.raises(ValidationFailed, match="too big") as err:
        preflight.check_image(write(tmp_path, data=b"\1" * (limit + 1)), MR3020)
    assert "Wi-Fi calibration" in err.value.user_message


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"\1" * 1000, "too small"), (b"  <!DOCTYPE html><html>" + b" " * SIZE, "web page")],
)
def test_downloads_that_went_wrong_are_caught(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        preflight.check_image(write(tmp_path, data=data), MR3020)


def test_a_missing_image_or_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="does not exist"):
        preflight.check_image(tmp_path / "nope.bin", MR3020)
    with pytest.raises(ValidationFailed, match="not a file"):
        preflight.check_image(tmp_path, MR3020)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (GOOD_NAME.replace("tftp-recovery", "sysupgrade"), "sysupgrade image"),
        (GOOD_NAME.replace("tl-mr3020-v3", "tl-wr841n-v13"), "for another router"),
        ("openwrt-ramips-mt76x8-tplink_tl-mr3020-v3-initramfs-kernel.bin", "initramfs"),
        ("firmware.bin", "does not look like"),
    ],
)
def test_images_of_the_wrong_kind_are_refused_by_name(
    tmp_path: Path, name: str, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message) as err:
        preflight.check_image(write(tmp_path, name), MR3020)
    assert MR3020.model.image_pattern in err.value.user_message  # type: ignore[union-attr]


def test_an_image_renamed_as_the_write_up_says_passes_with_a_caution(tmp_path: Path) -> None:
    checked = preflight.check_image(write(tmp_path, "tp_recovery.bin"), MR3020)

    assert any("cannot show" in n for n in checked.notes)


def test_an_unknown_router_accepts_any_name(tmp_path: Path) -> None:
    checked = preflight.check_image(write(tmp_path, "stock-firmware.bin"), CUSTOM)

    assert any("unchecked" in n for n in checked.notes)


def test_sha256_option_must_match(tmp_path: Path) -> None:
    path = write(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    ok = preflight.check_image(path, MR3020, f"  {digest.upper()} ")
    assert "SHA-256 matches --sha256" in ok.notes
    with pytest.raises(ValidationFailed, match="do not flash"):
        preflight.check_image(path, MR3020, "f" * 64)
    with pytest.raises(ValidationFailed, match="64 hex digits"):
        preflight.check_image(path, MR3020, "abc")


def test_a_sha256sums_file_next_to_the_image_is_checked(tmp_path: Path) -> None:
    path = write(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sums = tmp_path / "sha256sums"

    sums.write_text(f"{'0' * 64} *other.bin\n{digest} *{GOOD_NAME}\n")
    assert "SHA-256 matches sha256sums" in preflight.check_image(path, MR3020).notes

    sums.write_text(f"{'0' * 64} *{GOOD_NAME}\n")
    with pytest.raises(ValidationFailed, match="sha256sums says"):
        preflight.check_image(path, MR3020)

    sums.write_text(f"{'0' * 64} *other.bin\n")
    notes = preflight.check_image(path, MR3020).notes
    assert any("does not list" in n for n in notes)


def test_parse_sha256sums_reads_binary_and_text_mode_lines() -> None:
    a, b = "a" * 64, "B" * 64
    text = f"{a} *one.bin\n{b}  two words.bin\nnot a line\n\n"

    assert preflight.parse_sha256sums(text) == {"one.bin": a, "two words.bin": b.lower()}


# --- this PC's address -------------------------------------------------------------------


def test_loopback_skips_the_address_check_with_a_note() -> None:
    note = preflight.check_listen_address(MR3020, "127.0.0.1")

    assert note is not None
    assert "skipped" in note


def test_listening_elsewhere_than_the_routers_target_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="never see it"):
        preflight.check_listen_address(MR3020, "10.1.2.3")
    with pytest.raises(ValidationFailed, match="IPv4"):
        preflight.check_listen_address(MR3020, "localhost")


def test_a_missing_address_says_how_to_add_it_on_each_os() -> None:
    # 192.0.2.0/24 is TEST-NET-1: no machine has it. Only bind() is tried; nothing is sent.
    target = FlashTarget("test router", "192.0.2.225", "tp_recovery.bin", "192.168.1.1")
    assert not preflight.address_is_local("192.0.2.225")

    with pytest.raises(OperatorError) as err:
        preflight.check_listen_address(target, "0.0.0.0")

    msg = err.value.user_message
    assert "No interface of this PC has the address 192.0.2.225" in msg
    assert "sudo ip addr add 192.0.2.225/24 dev" in msg
    assert 'sudo networksetup -setmanual "Ethernet" 192.0.2.225 255.255.255.0' in msg
    assert 'netsh interface ipv4 set address name="Ethernet" static 192.0.2.225' in msg
    assert "225 (two-two-five), not 255" in msg


def test_an_address_this_machine_has_passes() -> None:
    assert preflight.address_is_local("127.0.0.1")
    target = FlashTarget("lo", "127.0.0.1", "tp_recovery.bin", "192.168.1.1")
    assert preflight.check_listen_address(target, "127.0.0.1") is not None


def test_wired_interfaces_skip_virtual_and_wifi_ones(tmp_path: Path) -> None:
    for name, parts in {
        "eth0": ["device"],
        "wlan0": ["device", "wireless"],
        "lo": [],
        "docker0": [],
        "wlp2s0": ["device", "phy80211"],
    }.items():
        (tmp_path / name).mkdir()
        for part in parts:
            (tmp_path / name / part).mkdir()

    assert preflight.wired_interfaces(tmp_path) == ["eth0"]
    assert preflight.wired_interfaces(tmp_path / "absent") == []


# --- the UDP port ------------------------------------------------------------------------


def test_a_privileged_port_says_how_to_get_the_right_to_bind_it() -> None:
    err = preflight.bind_error(OSError(errno.EACCES, "Permission denied"), "0.0.0.0", 69, MR3020)

    assert isinstance(err, OperatorError)
    for text in ("needs root", "sudo camreach flash", "CAP_NET_BIND_SERVICE", "setcap"):
        assert text in err.user_message


def test_a_missing_address_at_bind_time_gives_the_address_commands() -> None:
    err = preflight.bind_error(OSError(errno.EADDRNOTAVAIL, "x"), "192.168.0.225", 69, MR3020)

    assert "ip addr add 192.168.0.225/24" in err.user_message


def test_an_occupied_port_is_reported_with_how_to_find_the_other_server() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        port = blocker.getsockname()[1]

        with pytest.raises(OperatorError, match="taken by another program") as err:
            preflight.bind_server_socket("127.0.0.1", port, MR3020)

    assert f"sport = :{port}" in err.value.user_message
    assert f"lsof -nP -iUDP:{port}" in err.value.user_message


def test_any_other_bind_failure_carries_the_firewall_hint() -> None:
    err = preflight.bind_error(OSError(errno.ENETDOWN, "Network is down"), "0.0.0.0", 69, MR3020)

    assert "Network is down" in err.user_message
    assert "firewall" in err.user_message
