"""``camreach flash``: put OpenWrt on a router through its bootloader's TFTP recovery.

Exit codes: 0 the router fetched the whole image; 2 bad usage; 3 a pre-flight check failed
(nothing was served); 4 no complete transfer within --timeout; 1 the server failed;
130 interrupted.
"""

from __future__ import annotations

import logging
import queue
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import click

from bot.errors import CamreachError
from bot.flash import guide, preflight
from bot.flash.models import FlashTarget
from bot.flash.server import (
    ClientConnected,
    FlashEvent,
    Progress,
    RecoveryServer,
    RequestRefused,
    ServerFailed,
    TransferComplete,
    TransferStopped,
)

EXIT_SERVER_FAILED = 1
EXIT_PREFLIGHT = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130

MIB = 1024 * 1024
_BAR = 30


@dataclass(frozen=True, slots=True)
class _Plan:
    target: FlashTarget
    image: preflight.CheckedImage
    sock: socket.socket
    listen: str
    port: int
    trial: bool  # listening on loopback: no router can connect


@click.command(
    "flash",
    help="Put OpenWrt on a router through its bootloader's TFTP recovery: check the image"
    " and this PC's network, then serve the image to the router, once.",
    epilog="Try it without a router: --listen 127.0.0.1 --port 6969, then fetch"
    " tftp://127.0.0.1:6969/tp_recovery.bin with curl. Exit codes: 0 done, 3 a check"
    " failed, 4 timed out.",
)
@click.option("--model", "model_key", metavar="MODEL", help="Router model (see --list-models).")
@click.option(
    "--image",
    type=click.Path(path_type=Path),
    help="The OpenWrt tftp-recovery image (no need to rename it).",
)
@click.option(
    "--listen",
    metavar="ADDR",
    help="Address to serve on [default: the router's server address].",
)
@click.option("--port", type=click.IntRange(1, 65535), default=69, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=600,
    show_default=True,
    help="Seconds to wait for a complete transfer.",
)
@click.option("--sha256", "sha256_hex", metavar="HEX", help="Expected SHA-256 of the image.")
@click.option("--server-ip", metavar="ADDR", help="The PC's address the bootloader asks.")
@click.option("--filename", metavar="NAME", help="The file name the bootloader asks for.")
@click.option("--list-models", is_flag=True, help="List the routers camreach knows and exit.")
# For tests and odd bootloaders: how long to wait for an ACK before resending, and how often.
@click.option("--retransmit-timeout", type=click.FloatRange(min=0.05), default=5.0, hidden=True)
@click.option("--retries", type=click.IntRange(0, 50), default=5, hidden=True)
@click.pass_context
def flash(
    ctx: click.Context,
    model_key: str | None,
    image: Path | None,
    listen: str | None,
    port: int,
    timeout: float,
    sha256_hex: str | None,
    server_ip: str | None,
    filename: str | None,
    list_models: bool,
    retransmit_timeout: float,
    retries: int,
) -> None:
    if list_models:
        click.echo(guide.models_table())
        return
    if image is None:
        raise click.UsageError(
            "Missing --image: the OpenWrt tftp-recovery image to serve"
            " (`camreach flash --list-models` shows which one)."
        )
    # tftpy logs every packet and warns on each retransmission; camreach reports itself.
    logging.getLogger("tftpy").setLevel(logging.CRITICAL)
    out = _Console(sys.stdout)
    try:
        plan = _preflight(
            model_key, image.expanduser(), listen, port, sha256_hex, server_ip, filename
        )
    except CamreachError as exc:
        click.echo(f"Error: {exc.user_message}", err=True)
        ctx.exit(EXIT_PREFLIGHT)
    _announce(out, plan, timeout)
    events: queue.Queue[FlashEvent] = queue.Queue()
    server = RecoveryServer(
        plan.sock,
        plan.image.data,
        plan.target.filename,
        events.put,  # called in the server's thread; read here in the main one
        retransmit_timeout=retransmit_timeout,
        retries=retries,
    )
    ctx.exit(_serve(out, plan, timeout, server, events))


def _preflight(
    model_key: str | None,
    image: Path,
    listen: str | None,
    port: int,
    sha256_hex: str | None,
    server_ip: str | None,
    filename: str | None,
) -> _Plan:
    target = preflight.resolve_target(model_key, server_ip, filename)
    checked = preflight.check_image(image, target, sha256_hex)
    address = listen or target.server_ip
    note = preflight.check_listen_address(target, address)
    sock = preflight.bind_server_socket(address, port, target)
    return _Plan(target, checked, sock, address, port, trial=note is not None)


def _announce(out: _Console, plan: _Plan, timeout: float) -> None:
    img = plan.image
    out.line(f"Flashing {plan.target.label} by TFTP recovery")
    out.line(f"  image:  {img.path} ({_mib(img.size)}, SHA-256 {img.sha256})")
    for note in img.notes:
        out.line(f"          {note}")
    out.line(
        f"  served: as {plan.target.filename} on UDP {plan.listen}:{plan.port}, read-only;"
        " any other request is refused"
    )
    if plan.trial:
        out.line(f"  note:   listening on {plan.listen}: only this machine can connect (a trial)")
    out.line("")
    out.line(f"Waiting up to {timeout:g} s for the router.")
    out.line(guide.waiting_text(plan.target))
    if not plan.trial:
        out.line(f"If nothing shows up within a minute: {guide.FIREWALL_HINT}")


def _serve(
    out: _Console,
    plan: _Plan,
    timeout: float,
    server: RecoveryServer,
    events: queue.Queue[FlashEvent],
) -> int:
    server.start()
    deadline = time.monotonic() + timeout
    active: set[tuple[str, int]] = set()
    stops: list[TransferStopped] = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not active:
                break  # a transfer under way may finish after the deadline
            try:
                event = events.get(timeout=max(remaining, 0.5))
            except queue.Empty:
                continue
            if isinstance(event, ClientConnected):
                active.add(event.client)
            elif isinstance(event, TransferStopped):
                active.discard(event.client)
                stops.append(event)
            out.event(event)
            if isinstance(event, TransferComplete):
                server.join(5)
                out.line("")
                out.line(guide.next_steps(plan.target, preflight.guess_interface()))
                return 0
            if isinstance(event, ServerFailed):
                return EXIT_SERVER_FAILED
    except KeyboardInterrupt:
        server.stop()
        server.join(2)
        out.line("")
        out.error("Interrupted: nothing more is served. If a transfer was under way, power the")
        out.error("router off and start the recovery again.")
        return EXIT_INTERRUPTED
    server.stop()
    server.join(2)
    text = guide.troubleshooting(plan.target, timeout, preflight.guess_interface())
    if stops:
        last = stops[-1]
        text += (
            f"\n  - A transfer started but stopped at {_mib(last.sent)} of {_mib(last.total)}"
            f" ({last.reason}): check the cable, then power the router off and try again."
        )
    out.error(f"Error: {text}")
    return EXIT_TIMEOUT


class _Console:
    """Progress as a bar redrawn in place on a terminal, as plain lines elsewhere."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._bar_shown = False
        self._last_decile: dict[tuple[str, int], int] = {}

    def line(self, text: str) -> None:
        self._end_bar()
        click.echo(text, file=self._stream)

    def error(self, text: str) -> None:
        self._end_bar()
        click.echo(text, err=True)

    def event(self, ev: FlashEvent) -> None:
        if isinstance(ev, ClientConnected):
            tsize = ", size announced" if ev.tsize else ""
            self.line(
                f"Router {_peer(ev.client)} is fetching {ev.filename}"
                f" ({_mib(ev.total)}, block size {ev.blksize}{tsize})"
            )
            self._last_decile[ev.client] = -1
        elif isinstance(ev, Progress):
            self._progress(ev)
        elif isinstance(ev, TransferComplete):
            rate = ev.total / ev.elapsed if ev.elapsed > 0 else 0.0
            self.line(
                f"Transfer complete: {_mib(ev.total)} to {_peer(ev.client)} in"
                f" {ev.elapsed:.1f} s ({_rate(rate)})."
            )
        elif isinstance(ev, TransferStopped):
            self.line(
                f"Transfer to {_peer(ev.client)} stopped at {_mib(ev.sent)} of"
                f" {_mib(ev.total)}: {ev.reason}. Still waiting: power the router off and"
                " start the recovery again."
            )
        elif isinstance(ev, RequestRefused):
            self.line(f"Refused {ev.filename!r} from {_peer(ev.client)}: {ev.reason}.")
        else:
            self.error(f"Error: the TFTP server failed: {ev.message}")

    def _progress(self, ev: Progress) -> None:
        rate = ev.sent / ev.elapsed if ev.elapsed > 0 else 0.0
        frac = ev.sent / ev.total if ev.total else 1.0
        stats = f"{frac:4.0%}  {_mib(ev.sent)} of {_mib(ev.total)}  {_rate(rate)}"
        if self._tty:
            filled = int(frac * _BAR)
            bar = "#" * filled + "-" * (_BAR - filled)
            self._stream.write(f"\r[{bar}] {stats}\x1b[K")
            self._stream.flush()
            self._bar_shown = True
            return
        decile = int(frac * 10)
        if decile > self._last_decile.get(ev.client, -1):
            self._last_decile[ev.client] = decile
            self.line(f"  {stats}")

    def _end_bar(self) -> None:
        if self._bar_shown:
            self._stream.write("\n")
            self._bar_shown = False


def _peer(client: tuple[str, int]) -> str:
    return f"{client[0]}:{client[1]}"


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def _rate(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1024:.0f} KiB/s"


if __name__ == "__main__":
    flash(prog_name="camreach flash")
