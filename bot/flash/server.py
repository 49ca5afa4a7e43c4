"""A read-only TFTP server for one image, on tftpy's protocol state machine.

Not ``tftpy.TftpServer`` itself: that serves a directory (and accepts uploads unless told
otherwise), cannot tell a completed transfer from an abandoned one, and only notices a stop
request once per socket timeout. Here each transfer is a tftpy ``TftpContextServer`` (so
option negotiation, blksize, tsize and retransmission are tftpy's), driven by a small loop
of our own in a thread, which

- answers read requests for exactly one file name and refuses everything else,
- never opens a file: the image bytes were read and checked before, and are served from
  memory, so nothing can be written and a file changed after the check is not sent,
- reports what happens through ``on_event`` (called from the server thread),
- stops after the first complete transfer, and keeps waiting after a client that stopped.
"""

from __future__ import annotations

import io
import logging
import select
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tftpy.TftpContexts import TftpContextServer
from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketERR, TftpPacketRRQ, TftpPacketWRQ
from tftpy.TftpShared import TftpErrors, TftpException, TftpTimeoutExpectACK

log = logging.getLogger(__name__)

Client = tuple[str, int]

# RFC 2348's largest block: 65464 data bytes still fit one UDP datagram, tftpy's 65536 not.
MAX_BLKSIZE = 65464
_RECV_SIZE = 65536 + 4


@dataclass(frozen=True, slots=True)
class ClientConnected:
    client: Client
    filename: str
    blksize: int
    tsize: bool  # whether the client asked for the size up front
    total: int


@dataclass(frozen=True, slots=True)
class Progress:
    client: Client
    sent: int
    total: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class TransferComplete:
    client: Client
    total: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class TransferStopped:
    """A transfer that ended before the last block was acknowledged."""

    client: Client
    sent: int
    total: int
    reason: str


@dataclass(frozen=True, slots=True)
class RequestRefused:
    client: Client
    filename: str
    reason: str


@dataclass(frozen=True, slots=True)
class ServerFailed:
    message: str


FlashEvent = (
    ClientConnected | Progress | TransferComplete | TransferStopped | RequestRefused | ServerFailed
)


class _ImageReader(io.BytesIO):
    """The file object tftpy reads blocks from; reports how far the transfer got."""

    def __init__(self, data: bytes, on_read: Callable[[int], None]) -> None:
        super().__init__(data)
        self._on_read = on_read

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self._on_read(self.tell())
        return chunk


@dataclass(eq=False, slots=True)
class _Session:
    client: Client
    ctx: Any  # tftpy.TftpContextServer (untyped)
    total: int
    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    last_progress: float = 0.0
    announced: bool = False  # progress waits for ClientConnected, even for the first block


def _no_uploads(path: str, context: object) -> None:
    """tftpy's upload hook: None makes it answer "access violation" (a second guard; write
    requests are refused before they reach tftpy)."""
    return None


class RecoveryServer:
    """Serve ``image`` as ``filename`` on an already bound UDP socket, in a thread.

    The server owns ``sock`` from ``start()`` on and closes it when it stops.
    """

    def __init__(
        self,
        sock: socket.socket,
        image: bytes,
        filename: str,
        on_event: Callable[[FlashEvent], object],  # its result is ignored
        *,
        retransmit_timeout: float = 5.0,
        retries: int = 5,
        tick: float = 0.1,
        progress_interval: float = 0.1,
    ) -> None:
        self._sock = sock
        self._image = image
        self._filename = filename
        self._on_event = on_event
        self._retransmit_timeout = retransmit_timeout
        self._retries = retries
        self._tick = tick
        self._progress_interval = progress_interval
        self._factory = TftpPacketFactory()
        self._sessions: dict[Client, _Session] = {}
        self._stopping = threading.Event()
        self._completed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camreach-tftp", daemon=True)
        self._root = ""
        # Replies leave from the address the router sent to, not whatever the route picks.
        bound_ip = sock.getsockname()[0]
        self._local_ip = "" if bound_ip == "0.0.0.0" else bound_ip  # noqa: S104

    @property
    def address(self) -> Client:
        host, port = self._sock.getsockname()
        return str(host), int(port)

    @property
    def completed(self) -> bool:
        return self._completed.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True once it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the loop, in the server thread -------------------------------------------------

    def _run(self) -> None:
        try:
            # tftpy looks for the requested file in a root directory before asking our
            # opener; an empty private one guarantees it never finds a real file.
            with tempfile.TemporaryDirectory(prefix="camreach-tftp-") as root:
                self._root = root
                while not self._stopping.is_set():
                    self._poll()
                    self._check_timeouts()
        except Exception as exc:  # the caller must hear of it rather than wait for a timeout
            log.exception("TFTP server failed")
            self._emit(ServerFailed(f"{type(exc).__name__}: {exc}"))
        finally:
            for session in list(self._sessions.values()):
                self._finish(session, "camreach stopped serving")
            self._sock.close()

    def _poll(self) -> None:
        by_sock = {s.ctx.sock: s for s in self._sessions.values()}
        ready, _, _ = select.select([self._sock, *by_sock], [], [], self._tick)
        for sock in ready:
            if sock is self._sock:
                self._on_request()
            elif self._is_live(session := by_sock[sock]):
                self._pump(session)
            if self._stopping.is_set():
                return

    def _on_request(self) -> None:
        try:
            data, client = self._sock.recvfrom(_RECV_SIZE)
        except OSError as exc:  # e.g. Windows reports an ICMP "port unreachable" here
            log.debug("recvfrom on the server socket: %s", exc)
            return
        try:
            pkt = self._factory.parse(data)
        except (TftpException, ValueError, struct.error):
            self._refuse(client, "", "not a TFTP request", TftpErrors.IllegalTftpOp)
            return
        if isinstance(pkt, TftpPacketWRQ):
            self._refuse(
                client, pkt.filename, "uploads are not accepted", TftpErrors.AccessViolation
            )
            return
        if not isinstance(pkt, TftpPacketRRQ):
            log.info("ignored a stray %s from %s:%d", type(pkt).__name__, *client)
            return
        name: str = pkt.filename
        refusal = self._judge(name)
        if refusal is not None:
            self._refuse(client, name, *refusal)
            return
        old = self._sessions.get(client)
        if old is not None and old.ctx.next_block <= 1:
            # The client repeated its request before our first answer arrived: repeat that.
            self._resend(old)
            return
        if old is not None:
            self._finish(old, "the router asked for the file again from the start")
        self._start_session(client, pkt)

    def _judge(self, name: str) -> tuple[str, int] | None:
        """None to serve ``name``, else (why, TFTP error code)."""
        if name == self._filename:
            return None
        parts = name.replace("\\", "/").split("/")
        if ".." in parts:
            return "a path with '..'", TftpErrors.AccessViolation
        if len(parts) > 1:
            return "a path, not a plain file name", TftpErrors.AccessViolation
        return f"only {self._filename} is served", TftpErrors.FileNotFound

    def _refuse(self, client: Client, name: str, reason: str, code: int) -> None:
        log.info("refused %r from %s:%d: %s", name, client[0], client[1], reason)
        err = TftpPacketERR()
        err.errorcode = code
        try:
            self._sock.sendto(err.encode().buffer, client)
        except OSError as exc:
            log.debug("could not send the error to %s:%d: %s", *client, exc)
        self._emit(RequestRefused(client, name, reason))

    def _start_session(self, client: Client, pkt: Any) -> None:
        ctx = TftpContextServer(
            client[0],
            client[1],
            self._retransmit_timeout,
            self._root,
            dyn_file_func=None,  # set below: the opener reports progress for this session
            upload_open=_no_uploads,
            retries=self._retries,
            flock=False,
        )
        if self._local_ip:
            ctx.sock.bind((self._local_ip, 0))
        session = _Session(client=client, ctx=ctx, total=len(self._image))
        ctx.dyn_file_func = lambda _name, **_peer: _ImageReader(
            self._image, lambda pos: self._on_read(session, pos)
        )
        blksize = pkt.options.get("blksize")
        if blksize is not None and blksize.isdigit() and int(blksize) > MAX_BLKSIZE:
            pkt.options["blksize"] = str(MAX_BLKSIZE)
        ctx.metrics.start_time = time.time()
        ctx.last_update = time.monotonic()
        try:
            # What TftpContextServer.start() does, minus re-parsing the request.
            ctx.state = ctx.state.handle(pkt, client[0], client[1])
        except (TftpException, ValueError, OSError) as exc:
            ctx.end()
            self._emit(RequestRefused(client, pkt.filename, f"could not start: {exc}"))
            return
        self._sessions[client] = session
        options = ctx.options or {}
        log.info("serving %s to %s:%d", pkt.filename, *client)
        self._emit(
            ClientConnected(
                client=client,
                filename=pkt.filename,
                blksize=int(options.get("blksize", 512)),
                tsize="tsize" in options,
                total=session.total,
            )
        )
        session.announced = True
        if session.sent:
            self._on_read(session, session.sent)

    def _pump(self, session: _Session) -> None:
        """Handle one packet on a transfer's own socket (what tftpy's cycle() does, but
        packets from anyone other than the client are dropped, as RFC 1350 says)."""
        ctx = session.ctx
        try:
            data, peer = ctx.sock.recvfrom(_RECV_SIZE)
        except OSError as exc:
            self._finish(session, f"network error: {exc}")
            return
        if peer != session.client:
            log.info(
                "dropped a packet from %s:%d during a transfer to %s:%d", *peer, *session.client
            )
            return
        ctx.last_update = time.monotonic()
        ctx.timeout_expectACK = False
        try:
            ctx.state = ctx.state.handle(self._factory.parse(data), peer[0], peer[1])
        except TftpTimeoutExpectACK:
            ctx.timeout_expectACK = True  # resend now rather than after the timeout
            return
        except (TftpException, ValueError, struct.error, OSError) as exc:
            self._finish(session, _describe(exc))
            return
        ctx.retry_count = 0
        if ctx.state is None:
            self._complete(session)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for session in list(self._sessions.values()):
            ctx = session.ctx
            if not ctx.timeout_expectACK and now - ctx.last_update <= ctx.timeout:
                continue
            ctx.retry_count += 1
            if ctx.retry_count > ctx.retries:
                waited = ctx.timeout * ctx.retry_count
                self._finish(session, f"the client stopped answering ({waited:g} s without an ACK)")
            else:
                self._resend(session)

    def _resend(self, session: _Session) -> None:
        ctx = session.ctx
        try:
            ctx.state.resendLast()
        except (TftpException, OSError) as exc:
            self._finish(session, _describe(exc))
            return
        ctx.last_update = time.monotonic()
        ctx.timeout_expectACK = False

    def _on_read(self, session: _Session, pos: int) -> None:
        session.sent = pos
        now = time.monotonic()
        if not session.announced:
            return
        if pos >= session.total or now - session.last_progress >= self._progress_interval:
            session.last_progress = now
            self._emit(Progress(session.client, pos, session.total, now - session.started))

    def _is_live(self, session: _Session) -> bool:
        # A session ended earlier in this round may have been replaced by a new one from
        # the same client: identity, not the client address, says which is which.
        return self._sessions.get(session.client) is session

    def _drop(self, session: _Session) -> None:
        if self._is_live(session):
            del self._sessions[session.client]
        session.ctx.end()

    def _complete(self, session: _Session) -> None:
        self._drop(session)
        elapsed = time.monotonic() - session.started
        log.info("sent %d bytes to %s:%d in %.1f s", session.total, *session.client, elapsed)
        self._completed.set()
        self._stopping.set()
        self._emit(TransferComplete(session.client, session.total, elapsed))

    def _finish(self, session: _Session, reason: str) -> None:
        """End a transfer that did not complete."""
        self._drop(session)
        log.info("transfer to %s:%d stopped at %d bytes: %s", *session.client, session.sent, reason)
        self._emit(TransferStopped(session.client, session.sent, session.total, reason))

    def _emit(self, event: FlashEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not take the transfer down
            log.exception("flash event listener failed on %r", event)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if "ERR packet" in text or "ERR from peer" in text:
        return "the client cancelled the transfer"
    return f"protocol error: {text}"
