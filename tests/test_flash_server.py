"""RecoveryServer in-process: events, refusals on the wire, retries, and use from asyncio."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import queue
import socket
import struct
from collections.abc import Iterator

import pytest
import tftpy

from bot.flash.server import (
    MAX_BLKSIZE,
    ClientConnected,
    FlashEvent,
    Progress,
    RecoveryServer,
    RequestRefused,
    TransferComplete,
    TransferStopped,
)

NAME = "tp_recovery.bin"
IMAGE = os.urandom(300_000 + 7)
WAIT = 10.0


class Running:
    def __init__(self, server: RecoveryServer, events: queue.Queue[FlashEvent]) -> None:
        self.server = server
        self.events = events
        self.port = server.address[1]

    def next(self, kind: type[FlashEvent]) -> FlashEvent:
        """The next event of ``kind``, skipping others (progress, mostly)."""
        while True:
            event = self.events.get(timeout=WAIT)
            if isinstance(event, kind):
                return event

    def drain(self) -> list[FlashEvent]:
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out


def _serve(**kwargs: float) -> Running:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    events: queue.Queue[FlashEvent] = queue.Queue()
    server = RecoveryServer(sock, IMAGE, NAME, events.put, **kwargs)  # type: ignore[arg-type]
    server.start()
    return Running(server, events)


@pytest.fixture
def running() -> Iterator[Running]:
    r = _serve(retransmit_timeout=0.2, retries=1)
    yield r
    r.server.stop()
    assert r.server.join(WAIT)


@pytest.fixture
def raw() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(WAIT)
    yield s
    s.close()


def rrq(name: str, opcode: int = 1, mode: bytes = b"octet") -> bytes:
    return struct.pack("!H", opcode) + name.encode() + b"\0" + mode + b"\0"


def ack(block: int) -> bytes:
    return struct.pack("!HH", 4, block)


def header(packet: bytes) -> tuple[int, int]:
    return struct.unpack("!HH", packet[:4])


def download(port: int, **options: int) -> tuple[bytes, dict[str, str]]:
    client = tftpy.TftpClient("127.0.0.1", port, options=options)
    buf = io.BytesIO()
    client.download(NAME, buf, timeout=5)
    return buf.getvalue(), client.context.options


def test_a_complete_transfer_reports_connect_progress_complete_then_stops(
    running: Running,
) -> None:
    data, _ = download(running.port, blksize=1024)

    assert hashlib.sha256(data).digest() == hashlib.sha256(IMAGE).digest()
    assert running.server.join(WAIT)  # stopped by itself after one complete transfer
    assert running.server.completed
    events = running.drain()
    kinds = [type(e) for e in events]
    assert kinds[0] is ClientConnected
    assert kinds[-1] is TransferComplete
    assert set(kinds[1:-1]) == {Progress}
    first = events[0]
    assert isinstance(first, ClientConnected)
    assert (first.filename, first.blksize, first.total) == (NAME, 1024, len(IMAGE))
    last_progress = events[-2]
    assert isinstance(last_progress, Progress)
    assert last_progress.sent == last_progress.total == len(IMAGE)


@pytest.mark.parametrize(
    ("packet", "code", "reason"),
    [
        (rrq("openwrt.bin"), 1, "only tp_recovery.bin is served"),
        (rrq("TP_RECOVERY.BIN"), 1, "only tp_recovery.bin is served"),
        (rrq("../tp_recovery.bin"), 2, "'..'"),
        (rrq("..\\..\\boot.ini"), 2, "'..'"),
        (rrq("/etc/passwd"), 2, "a path"),
        (rrq("/tp_recovery.bin"), 2, "a path"),
        (rrq("sub/tp_recovery.bin"), 2, "a path"),
        (rrq(NAME, opcode=2), 2, "uploads are not accepted"),
        (b"\x00\x01garbage-without-terminators", 4, "not a TFTP request"),
    ],
)
def test_requests_for_anything_else_get_a_tftp_error_and_are_reported(
    running: Running, raw: socket.socket, packet: bytes, code: int, reason: str
) -> None:
    raw.sendto(packet, ("127.0.0.1", running.port))

    reply, _ = raw.recvfrom(1024)

    assert header(reply) == (5, code)
    refused = running.next(RequestRefused)
    assert isinstance(refused, RequestRefused)
    assert reason in refused.reason
    assert refused.client[1] == raw.getsockname()[1]
    assert not running.server.completed


def test_packets_from_a_stranger_during_a_transfer_are_dropped(
    running: Running, raw: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.flash.server")
    raw.sendto(rrq(NAME), ("127.0.0.1", running.port))
    data, tid = raw.recvfrom(2048)
    assert header(data) == (3, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.sendto(ack(1), tid)
        # Same socket, so the stranger's ACK is handled before ours.
        raw.sendto(ack(1), tid)
        data, _ = raw.recvfrom(2048)

    assert header(data) == (3, 2)
    assert any("dropped a packet" in r.getMessage() for r in caplog.records)


def test_a_repeated_request_before_any_ack_is_answered_by_the_same_transfer(
    running: Running, raw: socket.socket
) -> None:
    raw.sendto(rrq(NAME), ("127.0.0.1", running.port))
    first, tid = raw.recvfrom(2048)
    raw.sendto(rrq(NAME), ("127.0.0.1", running.port))
    again, tid2 = raw.recvfrom(2048)

    assert (header(again), again, tid2) == (header(first), first, tid)
    connected = [e for e in running.drain() if isinstance(e, ClientConnected)]
    assert len(connected) == 1


def test_a_restart_after_progress_ends_the_old_transfer_and_serves_anew(
    running: Running, raw: socket.socket
) -> None:
    raw.sendto(rrq(NAME), ("127.0.0.1", running.port))
    _, tid = raw.recvfrom(2048)
    raw.sendto(ack(1), tid)
    raw.recvfrom(2048)  # block 2

    raw.sendto(rrq(NAME), ("127.0.0.1", running.port))
    data, new_tid = raw.recvfrom(2048)

    assert header(data) == (3, 1)
    assert new_tid != tid
    stopped = running.next(TransferStopped)
    assert isinstance(stopped, TransferStopped)
    assert "again from the start" in stopped.reason
    assert stopped.sent == 1024


def test_a_client_error_mid_transfer_is_reported_and_the_server_keeps_serving(
    running: Running, raw: socket.socket
) -> None:
    raw.sendto(rrq(NAME), ("127.0.0.1", running.port))
    _, tid = raw.recvfrom(2048)
    raw.sendto(struct.pack("!HH", 5, 0) + b"user cancelled\0", tid)

    stopped = running.next(TransferStopped)
    assert isinstance(stopped, TransferStopped)
    assert stopped.reason == "the client cancelled the transfer"
    data, _ = download(running.port)
    assert data == IMAGE


def test_a_silent_client_is_retried_then_given_up(running: Running, raw: socket.socket) -> None:
    raw.sendto(rrq(NAME), ("127.0.0.1", running.port))
    first, _ = raw.recvfrom(2048)
    resent, _ = raw.recvfrom(2048)  # retries=1: one resend, then it gives up

    assert resent == first
    stopped = running.next(TransferStopped)
    assert isinstance(stopped, TransferStopped)
    assert "stopped answering" in stopped.reason
    assert stopped.sent == 512


def test_an_oversized_block_size_is_clamped_to_one_datagram(running: Running) -> None:
    data, options = download(running.port, blksize=65536)

    assert data == IMAGE
    assert int(options["blksize"]) == MAX_BLKSIZE


def test_stop_ends_an_idle_server_promptly() -> None:
    r = _serve()
    r.server.stop()

    assert r.server.join(2)
    assert not r.server.completed
    with pytest.raises(OSError):
        r.server.address  # noqa: B018 - the socket is closed


async def test_events_reach_an_asyncio_loop_while_the_server_runs_in_its_thread() -> None:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[FlashEvent] = asyncio.Queue()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    server = RecoveryServer(
        sock, IMAGE, NAME, lambda e: loop.call_soon_threadsafe(events.put_nowait, e)
    )
    server.start()
    try:
        fetch = asyncio.create_task(asyncio.to_thread(download, server.address[1]))
        seen: list[FlashEvent] = []
        while not isinstance(event := await asyncio.wait_for(events.get(), WAIT), TransferComplete):
            seen.append(event)
        data, _ = await fetch
    finally:
        server.stop()
    assert data == IMAGE
    assert isinstance(seen[0], ClientConnected)
    assert await asyncio.to_thread(server.join, WAIT)
