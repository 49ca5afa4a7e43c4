"""The `flash` click command in-process (CliRunner), as the lead registers it on a group."""

from __future__ import annotations

import io
import os
import socket
import threading
from pathlib import Path

import click
import pytest
import tftpy
from click.testing import CliRunner

from bot.flash import preflight
from bot.flash.cli import _Console, flash
from bot.flash.server import ClientConnected, Progress, RecoveryServer, TransferComplete


@click.group()
def main() -> None:
    """Stand-in for camreach's top-level group."""


main.add_command(flash)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_list_models_through_the_group() -> None:
    result = CliRunner().invoke(main, ["flash", "--list-models"])

    assert result.exit_code == 0
    assert "tl-mr3020-v3" in result.output
    assert "192.168.0.225" in result.output


def test_usage_errors_exit_2_or_3_with_what_to_give() -> None:
    runner = CliRunner()

    no_image = runner.invoke(main, ["flash", "--model", "tl-mr3020-v3"])
    assert no_image.exit_code == 2
    assert "Missing --image" in no_image.output

    no_router = runner.invoke(main, ["flash", "--image", "x.bin"])
    assert no_router.exit_code == 3
    assert "--server-ip and --filename" in no_router.output

    unknown = runner.invoke(main, ["flash", "--model", "tl-wr9999", "--image", "x.bin"])
    assert unknown.exit_code == 3
    assert "Unknown router model" in unknown.output


def test_the_address_check_fails_before_any_port_is_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if preflight.address_is_local("192.168.0.225"):
        pytest.skip("this machine has 192.168.0.225")
    image = tmp_path / "openwrt-1-ramips-mt76x8-tplink_tl-mr3020-v3-squashfs-tftp-recovery.bin"
    image.write_bytes(os.urandom(1_100_000))
    bound: list[object] = []
    monkeypatch.setattr(preflight, "bind_server_socket", lambda *a: bound.append(a))

    result = CliRunner().invoke(main, ["flash", "--model", "tl-mr3020-v3", "--image", str(image)])

    assert result.exit_code == 3
    assert "No interface of this PC has the address 192.168.0.225" in result.output
    assert bound == []


def test_a_router_not_in_the_table_is_served_with_server_ip_and_filename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "vendor-recovery.bin"
    image.write_bytes(os.urandom(1_200_000))
    port = free_udp_port()
    serving = threading.Event()
    original_start = RecoveryServer.start

    def start(self: RecoveryServer) -> None:
        original_start(self)
        serving.set()

    monkeypatch.setattr(RecoveryServer, "start", start)
    fetched = io.BytesIO()

    def client() -> None:
        assert serving.wait(10)
        tftpy.TftpClient("127.0.0.1", port).download("recovery.bin", fetched, timeout=5)

    worker = threading.Thread(target=client)
    worker.start()
    result = CliRunner().invoke(
        main,
        [
            "flash",
            "--server-ip",
            "192.168.0.66",
            "--filename",
            "recovery.bin",
            "--image",
            str(image),
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--timeout",
            "20",
        ],
    )
    worker.join(10)

    assert result.exit_code == 0, result.output
    assert fetched.getvalue() == image.read_bytes()
    assert "served as is, its kind unchecked" in result.output
    assert "as recovery.bin on UDP 127.0.0.1:" in result.output
    assert "sudo ip addr del 192.168.0.66/24" in result.output


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_line_redrawn_in_place_on_a_terminal() -> None:
    stream = _Tty()
    out = _Console(stream)
    client = ("192.168.0.1", 2048)

    out.event(ClientConnected(client, "tp_recovery.bin", 512, True, 4 * 1024 * 1024))
    for sent in (1, 2, 3, 4):
        out.event(Progress(client, sent * 1024 * 1024, 4 * 1024 * 1024, sent / 2))

    text = stream.getvalue()
    connected, bar = text.split("\n", 1)
    assert "Router 192.168.0.1:2048 is fetching tp_recovery.bin" in connected
    assert bar.count("\r[") == 4
    assert "\n" not in bar  # redrawn in place
    assert bar.endswith(f"[{'#' * 30}] 100%  4.0 MiB of 4.0 MiB  2048 KiB/s\x1b[K")


def test_progress_is_plain_lines_elsewhere() -> None:
    stream = io.StringIO()
    out = _Console(stream)
    client = ("192.168.0.1", 2048)
    total = 10 * 1024 * 1024

    out.event(ClientConnected(client, "tp_recovery.bin", 512, False, total))
    for step in range(1, 101):
        out.event(Progress(client, total * step // 100, total, step / 10))
    out.event(TransferComplete(client, total, 10.0))

    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    progress = [line for line in lines if "MiB of" in line]
    assert len(progress) == 11  # the start, then one line per tenth
    assert progress[-1].strip().startswith("100%")
    assert lines[-1] == "Transfer complete: 10.0 MiB to 192.168.0.1:2048 in 10.0 s (1024 KiB/s)."
