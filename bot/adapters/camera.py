"""The camera on the site's LAN, over HTTP: HIKVision ISAPI, or a generic snapshot URL.

The path to the camera comes from the site file (``via``), never from a guess per request:

* ``via: droplet`` (the default): every TCP connection is an SSH ``direct-tcpip`` channel on
  camreach's pinned connection to the droplet, to the camera's LAN address; the droplet routes
  the site LAN through wg0 to the router, which forwards vpn -> lan. No local port is opened.
* ``via: direct``: plain TCP from this machine, for a bot host on the camera's network.

Both are the same httpx client over an httpcore connection pool; only the pool's network
backend differs (:class:`ChannelBackend` for the droplet, httpcore's own for direct).

Logins. A HIKVision camera gets Digest (MD5, qop=auth) and never Basic: it locks the client
address for about 30 minutes after a few failed logins, and a Basic attempt counts. Each call
makes exactly one authenticated attempt: it asks without credentials, answers the challenge
once, and a 401 to that answer raises :class:`CameraAuthRefused` with what the camera's
``<userCheck>`` says (attempts left; or, when that password was the last straw, the minutes
until the lock lifts). A camera that is already locked raises :class:`CameraLocked`, which is
*not* a refusal of the password: while locked the camera refuses every password, right or
wrong. If its challenge says so, it gets no password at all. A 401 with ``stale=true`` (the
nonce expired within the call) is no refusal either: :class:`CameraFailed`, try again; it is
never answered a second time within the call. A ``generic`` camera gets whichever the
challenge asks for, Digest preferred over Basic.

Errors name the hop that failed (``hop`` on each class): the droplet's SSH connection, the
tunnel/router, or the camera. Added to the tree of :mod:`bot.errors`::

    OperatorError
    ├── AuthRejected
    │   ├── CameraAuthRefused        this password was refused: attempts_left, locked_minutes
    │   └── CameraLocked             locked out (the password may be right): locked_minutes
    ├── CameraAuthUnsupported        the camera asks only for a scheme camreach will not use
    └── ForwardingProhibited         the droplet's sshd refuses to forward (hop "droplet")
    TransientError
    ├── Unreachable
    │   ├── DropletLinkLost          the SSH connection to the droplet died (hop "droplet")
    │   ├── TunnelUnreachable        the droplet cannot reach the camera's address (hop "tunnel")
    │   └── CameraUnreachable        refused, or connected and no answer in time (hop "camera")
    └── RemoteFailed
        └── CameraFailed             HTTP 5xx/4xx, not HTTP, not a JPEG, too large (hop "camera")

Every call is bounded: connect (default 5 s), read (10 s), and the whole call (18 s).
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NoReturn
from urllib.request import parse_http_list, parse_keqv_list

import asyncssh
import httpcore
import httpx

from bot import __version__
from bot.actions import action
from bot.adapters.ssh import SshConnection
from bot.errors import (
    AuthRejected,
    CamreachError,
    ConfigError,
    OperatorError,
    RemoteFailed,
    Unreachable,
)
from bot.render.isapi import (
    DeviceInfo,
    IsapiParseError,
    UserCheck,
    parse_device_info,
    parse_response_status,
    parse_user_check,
)

__all__ = [
    "CameraAuthRefused",
    "CameraAuthUnsupported",
    "CameraClient",
    "CameraFailed",
    "CameraLocked",
    "CameraTarget",
    "CameraUnreachable",
    "ChannelBackend",
    "DeviceInfo",
    "DropletLinkLost",
    "ForwardingProhibited",
    "Hop",
    "Snapshot",
    "TunnelUnreachable",
    "camera_client",
    "camera_errors",
    "jpeg_problem",
]

Hop = Literal["droplet", "tunnel", "camera"]
Kind = Literal["hikvision", "generic"]
Via = Literal["droplet", "direct"]
Channel = Literal["main", "sub"]

ISAPI_DEVICE_INFO = "/ISAPI/System/deviceInfo"
ISAPI_PICTURE = {"main": "/ISAPI/Streaming/channels/101/picture",
                 "sub": "/ISAPI/Streaming/channels/102/picture"}
MAX_SNAPSHOT_BYTES = 20 * 1024 * 1024
_USER_AGENT = f"camreach/{__version__}"


# -- errors ---------------------------------------------------------------------------------


class DropletLinkLost(Unreachable):
    """The SSH connection to the droplet broke while reaching the camera."""

    hop: ClassVar[Hop] = "droplet"


class ForwardingProhibited(OperatorError):
    """The droplet's SSH server refuses ``direct-tcpip`` to the camera (a setting, not luck)."""

    hop: ClassVar[Hop] = "droplet"


class TunnelUnreachable(Unreachable):
    """The droplet could not open a TCP connection to the camera's LAN address."""

    hop: ClassVar[Hop] = "tunnel"


class CameraUnreachable(Unreachable):
    """The camera refused the connection, or accepted it and did not answer in time."""

    hop: ClassVar[Hop] = "camera"


class CameraFailed(RemoteFailed):
    """The camera answered, with an error or with something that is not what was asked."""

    hop: ClassVar[Hop] = "camera"


class CameraAuthUnsupported(OperatorError):
    """The camera asks only for an authentication scheme camreach will not send it."""

    hop: ClassVar[Hop] = "camera"


class CameraAuthRefused(AuthRejected):
    """The camera refused the password. Do not try the same password again."""

    hop: ClassVar[Hop] = "camera"

    def __init__(self, user_message: str, *, attempts_left: int | None = None,
                 locked_minutes: int | None = None, detail: str | None = None) -> None:
        super().__init__(user_message, detail=detail)
        self.attempts_left = attempts_left
        self.locked_minutes = locked_minutes


class CameraLocked(AuthRejected):
    """The camera has locked camreach's address out; it refuses any password until it lifts.

    Not a verdict on the password camreach has: ``password_sent`` says whether it was sent.
    """

    hop: ClassVar[Hop] = "camera"

    def __init__(self, user_message: str, *, locked_minutes: int | None,
                 password_sent: bool, detail: str | None = None) -> None:
        super().__init__(user_message, detail=detail)
        self.locked_minutes = locked_minutes
        self.password_sent = password_sent


# -- what to reach, and what comes back ------------------------------------------------------


@dataclass(frozen=True)
class CameraTarget:
    """One camera of a site file. ``label`` and ``site`` only shape messages."""

    name: str
    host: str
    port: int = 80
    user: str = "admin"
    password: str | None = field(default=None, repr=False)
    kind: Kind = "hikvision"
    via: Via = "droplet"
    snapshot_url: str | None = None  # generic: a path ("/snap.jpg") or http://<host>[:port]/...
    site: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 18.0  # the whole call (ask, answer, picture): under the 20 s bound
    max_snapshot_bytes: int = MAX_SNAPSHOT_BYTES

    def __post_init__(self) -> None:
        if self.kind == "generic":
            if not self.snapshot_url:
                raise ValueError(f"camera {self.name}: a generic camera needs a snapshot_url")
            self.snapshot_target()  # validates
        if not self.connect_timeout < self.total_timeout:
            raise ValueError("connect_timeout must be shorter than total_timeout")

    @property
    def where(self) -> str:
        return f"camera {self.name} ({self.host}:{self.port})"

    @property
    def subject(self) -> str:
        """``where`` to start a sentence with."""
        return f"Camera {self.name} ({self.host}:{self.port})"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def snapshot_target(self) -> str:
        """The generic snapshot URL's path and query; it must point at this camera."""
        assert self.snapshot_url is not None
        url = httpx.URL(self.snapshot_url)
        if url.userinfo:
            raise ValueError(f"camera {self.name}: no user or password in snapshot_url "
                             "(the password comes from password_env)")
        if url.is_absolute_url:
            if url.scheme != "http":
                raise ValueError(f"camera {self.name}: snapshot_url must be http:// "
                                 "(the tunnel already encrypts)")
            if url.host != self.host or (url.port or 80) != self.port:
                raise ValueError(f"camera {self.name}: snapshot_url points at "
                                 f"{url.host}:{url.port or 80}, not at the camera's "
                                 f"{self.host}:{self.port}")
        path = url.raw_path.decode("ascii")
        if not path.startswith("/"):
            raise ValueError(f"camera {self.name}: snapshot_url must be a path or http:// URL")
        return path


@dataclass(frozen=True)
class Snapshot:
    """A still picture exactly as the camera sent it."""

    data: bytes = field(repr=False)
    content_type: str
    channel: Channel | None = None  # None for a generic camera

    @property
    def size(self) -> int:
        return len(self.data)


def jpeg_problem(data: bytes) -> str | None:
    """Why ``data`` is not a whole JPEG (start and end markers), or None when it is."""
    if not data.startswith(b"\xff\xd8\xff"):
        return "it is not a JPEG (no start-of-image marker)"
    # Some encoders pad after the end-of-image marker with zero bytes.
    if not data.endswith(b"\xff\xd9") and not data[-4096:].rstrip(b"\0").endswith(b"\xff\xd9"):
        return "the JPEG is cut short (no end-of-image marker)"
    return None


# -- the channel as httpcore's network -------------------------------------------------------


class ChannelStream(httpcore.AsyncNetworkStream):
    """One ``direct-tcpip`` channel, read and written with timeouts as httpcore wants."""

    def __init__(self, reader: asyncssh.SSHReader[bytes], writer: asyncssh.SSHWriter[bytes],
                 peer: tuple[str, int]) -> None:
        self._reader = reader
        self._writer = writer
        self._peer = peer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(f"no data within {timeout} s") from exc
        except (asyncssh.Error, OSError) as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(f"could not send within {timeout} s") from exc
        except (asyncssh.Error, OSError) as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        # Closing sends CHANNEL_CLOSE; waiting for the peer's would cost a round trip.
        self._writer.close()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:  # noqa: ASYNC109
        raise httpcore.UnsupportedProtocol("https to a camera is not supported over the tunnel")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle keep-alive channel that became readable was closed by the camera.
            return self._reader.at_eof() or self._writer.is_closing()
        if info == "server_addr":
            return self._peer
        return None


def _close_late_channel(opening: asyncio.Future[tuple[asyncssh.SSHReader[bytes],
                                                      asyncssh.SSHWriter[bytes]]]) -> None:
    """A channel that opened after its caller gave up is closed, not leaked."""
    if opening.cancelled() or opening.exception() is not None:
        return
    _, writer = opening.result()
    writer.close()


class ChannelBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network on an SSH connection: each TCP connection is a direct-tcpip channel."""

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        # The open runs as its own task: a timeout must not leave a half-open channel that
        # the droplet later confirms; that one is closed as soon as it arrives.
        opening = asyncio.ensure_future(self._conn.open_connection(host, port))
        try:
            reader, writer = await asyncio.wait_for(asyncio.shield(opening), timeout)
        except TimeoutError as exc:
            opening.add_done_callback(_close_late_channel)
            raise httpcore.ConnectTimeout(f"no channel to {host}:{port} within {timeout} s") \
                from exc
        except (asyncssh.Error, OSError) as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        except BaseException:
            opening.add_done_callback(_close_late_channel)
            raise
        return ChannelStream(reader, writer, (host, port))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("no UNIX sockets over the tunnel")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# -- httpcore pool as an httpx transport -----------------------------------------------------


class ResponseTooLarge(httpx.TransportError):
    """The body went past the transport's limit; reading stopped there."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"response body larger than {limit} bytes")
        self.limit = limit


# Most specific first: the first match wins.
_HTTPCORE_TO_HTTPX: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
)


@contextmanager
def _httpcore_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _HTTPCORE_TO_HTTPX:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _BoundedStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        with _httpcore_errors():
            async for part in self._stream:
                seen += len(part)
                if seen > self._limit:
                    raise ResponseTooLarge(self._limit)
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _httpcore_errors():
                await close()


class PoolTransport(httpx.AsyncBaseTransport):
    """httpx over an httpcore pool with any network backend; bodies bounded at ``max_body``."""

    def __init__(self, pool: httpcore.AsyncConnectionPool, max_body: int) -> None:
        self._pool = pool
        self._max_body = max_body

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpcore_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_BoundedStream(response.stream, self._max_body),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _pool(backend: httpcore.AsyncNetworkBackend | None) -> httpcore.AsyncConnectionPool:
    # A camera serves few clients at once; idle channels are dropped before it drops them.
    return httpcore.AsyncConnectionPool(max_connections=4, max_keepalive_connections=2,
                                        keepalive_expiry=5.0, retries=0,
                                        network_backend=backend)


# -- authentication: one attempt per call ----------------------------------------------------


def _answer_digest(user: str, password: str, request: httpx.Request,
                   challenge: httpx.Response) -> httpx.Request | None:
    """``request`` with httpx's Digest answer to ``challenge`` (httpx.DigestAuth, fresh)."""
    flow = httpx.DigestAuth(user, password).auth_flow(request)
    next(flow)  # a fresh DigestAuth first sends the request without credentials: done already
    try:
        return flow.send(challenge)
    except StopIteration:
        return None


def _answer_basic(user: str, password: str, request: httpx.Request) -> httpx.Request:
    return next(httpx.BasicAuth(user, password).auth_flow(request))


class CameraAuth(httpx.Auth):
    """Ask without credentials; answer the camera's challenge once; never a second time.

    Digest goes through a fresh ``httpx.DigestAuth`` per call, so no nonce from an earlier call
    is replayed (a stale nonce would be a second answer). Basic only with ``allow_basic``.
    """

    def __init__(self, user: str, password: str | None, *, allow_basic: bool) -> None:
        self._user = user
        self._password = password
        self._allow_basic = allow_basic
        self.credentials_sent = 0
        self.offered: tuple[str, ...] = ()  # the schemes the camera's challenge named
        self.challenge_check: UserCheck | None = None  # <userCheck> of the challenge, if any
        self.locked_before: UserCheck | None = None

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request,
                                                                  httpx.Response, None]:
        raise RuntimeError("CameraAuth is for httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request,
                                                                              httpx.Response]:
        response = yield request
        if response.status_code != 401:
            return
        await response.aread()  # bounded by the transport
        self.offered = tuple(h.split(None, 1)[0].lower()
                             for h in response.headers.get_list("www-authenticate") if h.strip())
        check = self.challenge_check = parse_user_check(response.content)
        if check is not None and check.locked:
            self.locked_before = check  # a password now would only restart the lock
            return
        if self._password is None:
            return
        answer: httpx.Request | None = None
        if "digest" in self.offered:
            answer = _answer_digest(self._user, self._password, request, response)
        elif "basic" in self.offered and self._allow_basic:
            answer = _answer_basic(self._user, self._password, request)
        if answer is None:
            return
        self.credentials_sent += 1
        yield answer


def _says_stale(response: httpx.Response) -> bool:
    for header in response.headers.get_list("www-authenticate"):
        if header.lower().startswith("digest "):
            params = _auth_params(header[7:])
            return params.get("stale", "").lower() == "true"
    return False


def _auth_params(text: str) -> dict[str, str]:
    """``k=v, k="v"`` pairs of an authentication challenge (RFC 7235 auth-params)."""
    return {k.lower(): v for k, v in parse_keqv_list(
        [item for item in parse_http_list(text) if "=" in item]).items()}


# -- error mapping at the boundary -----------------------------------------------------------


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _os_error(exc: BaseException) -> OSError | None:
    """The first OSError with an errno in the chain (anyio wraps the real one in another)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno is not None:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _refused(reason: str) -> bool:
    """OpenSSH says "Connection refused"; asyncssh passes on "[Errno 111] Connect call failed"."""
    return "refused" in reason.lower() or f"[Errno {errno.ECONNREFUSED}]" in reason


def _status_hint() -> str:
    return f"check the site with {action('status')}"


@contextmanager
def camera_errors(target: CameraTarget,
                  link: asyncssh.SSHClientConnection | None = None) -> Iterator[None]:
    """Map httpx/httpcore/asyncssh/OS errors to camreach errors naming the failed hop.

    ``link`` is the SSH connection to the droplet: whatever failed, if it is closed now, the
    droplet hop is the one named.
    """
    try:
        yield
    except CamreachError:
        raise
    except Exception as exc:
        if link is not None and link.is_closed():
            raise DropletLinkLost(
                f"The SSH connection to the droplet broke while reaching {target.where}. Try "
                f"again; {_status_hint()}."
            ) from exc
        _raise_mapped(target, exc)


def _raise_mapped(target: CameraTarget, exc: Exception) -> NoReturn:
    where, subject = target.where, target.subject
    if isinstance(exc, ResponseTooLarge):
        raise CameraFailed(f"{subject} sent more than {exc.limit // (1024 * 1024)} MB; camreach "
                           "stopped reading.") from exc
    if isinstance(exc, httpx.ConnectTimeout):
        if target.via == "droplet":
            raise TunnelUnreachable(
                f"No connection to {where} through the droplet within "
                f"{target.connect_timeout:g} s: the tunnel to the router is down or the router "
                f"is offline, or the camera is off the router's LAN ({_status_hint()})."
            ) from exc
        raise CameraUnreachable(
            f"{subject} did not accept a connection within {target.connect_timeout:g} s from "
            "this machine (via: direct). Is this machine on the camera's network? If not, "
            "use via: droplet."
        ) from exc
    if isinstance(exc, httpx.ConnectError):
        _raise_connect_error(target, exc)
    if isinstance(exc, httpx.TimeoutException):  # read, write, pool
        raise CameraUnreachable(
            f"{subject} accepted the connection but did not answer within "
            f"{target.read_timeout:g} s. It may be overloaded or hung; try again, or restart it."
        ) from exc
    if isinstance(exc, TimeoutError):  # the whole call's limit
        raise CameraUnreachable(
            f"{subject} did not finish answering within {target.total_timeout:g} s "
            "(a slow camera or a slow tunnel). Try again, or use the sub stream."
        ) from exc
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError) and \
            _cause(exc, asyncssh.Error) is not None and target.via == "droplet":
        raise DropletLinkLost(
            f"The SSH connection to the droplet broke while talking to {where}. Try again; "
            f"{_status_hint()}."
        ) from exc
    if isinstance(exc, httpx.NetworkError) or (
            isinstance(exc, httpx.RemoteProtocolError) and _cut_short(exc)):
        raise CameraUnreachable(
            f"{subject} closed the connection before it had answered. Try again; if it keeps "
            "happening, restart the camera."
        ) from exc
    if isinstance(exc, httpx.RemoteProtocolError):
        raise CameraFailed(
            f"{subject} answered with something that is not valid HTTP ({exc}). Is that the "
            "camera's web port?"
        ) from exc
    if isinstance(exc, httpx.HTTPError):
        raise CameraFailed(f"Talking to {where} failed: {exc}.") from exc
    if isinstance(exc, asyncssh.Error):
        raise DropletLinkLost(
            f"The SSH connection to the droplet failed while reaching {where} "
            f"({getattr(exc, 'reason', exc)}). Try again; {_status_hint()}."
        ) from exc
    if isinstance(exc, OSError):
        raise CameraUnreachable(f"Cannot reach {where}: {exc.strerror or exc}.") from exc
    raise exc


def _cut_short(exc: httpx.RemoteProtocolError) -> bool:
    """h11's words for a peer that closed early, as opposed to one that spoke nonsense."""
    text = str(exc).lower()
    return "disconnected" in text or "peer closed" in text or "incomplete" in text


def _raise_connect_error(target: CameraTarget, exc: httpx.ConnectError) -> NoReturn:
    where, subject = target.where, target.subject
    opened = _cause(exc, asyncssh.ChannelOpenError)
    if isinstance(opened, asyncssh.ChannelOpenError):
        reason = opened.reason or ""
        if opened.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
            raise ForwardingProhibited(
                f"The droplet's SSH server will not forward to {where} (administratively "
                f"prohibited: {reason}). TCP forwarding must be allowed for camreach's key on "
                "the droplet (AllowTcpForwarding, PermitOpen in sshd_config)."
            ) from exc
        if reason == "SSH connection closed":
            raise DropletLinkLost(
                f"The SSH connection to the droplet was closed before a channel to {where} "
                f"opened. Try again; {_status_hint()}."
            ) from exc
        if _refused(reason):
            raise CameraUnreachable(
                f"{subject} refused the connection (the droplet reached the address, and "
                f"nothing listens on port {target.port}): check the port in the site file, or "
                "wait if the camera is restarting."
            ) from exc
        said = f" ({reason})" if reason and reason.lower() != "open failed" else ""
        raise TunnelUnreachable(
            f"The droplet could not connect to {where}{said}: the tunnel to the router is "
            f"down or the router is offline, or the camera is off the router's LAN "
            f"({_status_hint()})."
        ) from exc
    if target.via == "droplet" and _cause(exc, asyncssh.Error) is not None:
        raise DropletLinkLost(
            f"The SSH connection to the droplet failed while opening a channel to {where}. "
            f"Try again; {_status_hint()}."
        ) from exc
    os_error = _os_error(exc)
    code = os_error.errno if os_error is not None else None
    if code == errno.ECONNREFUSED or "refused" in str(exc).lower():
        raise CameraUnreachable(
            f"{subject} refused the connection: nothing listens on port {target.port} (check "
            "the port in the site file, or wait if the camera is restarting)."
        ) from exc
    raise CameraUnreachable(
        f"Cannot connect to {where} from this machine (via: direct): "
        f"{(os_error.strerror if os_error else None) or exc}. Is this machine on the camera's "
        "network? If not, use via: droplet."
    ) from exc


# -- the client ------------------------------------------------------------------------------


class CameraClient:
    """``device_info()`` and ``snapshot()`` for one camera; use :func:`camera_client`."""

    def __init__(self, target: CameraTarget, http: httpx.AsyncClient,
                 link: asyncssh.SSHClientConnection | None = None) -> None:
        self.target = target
        self._http = http
        self._link = link

    async def device_info(self) -> DeviceInfo:
        """Model, serial number and firmware (HIKVision ISAPI only)."""
        if self.target.kind != "hikvision":
            raise CameraFailed(f"{self.target.subject} is a {self.target.kind} camera: camreach "
                               "can only read device information from a HIKVision camera.")
        response = await self._get(ISAPI_DEVICE_INFO, "its device information")
        try:
            return parse_device_info(response.content)
        except IsapiParseError as exc:
            raise CameraFailed(
                f"{self.target.subject} did not answer {ISAPI_DEVICE_INFO} with HIKVision device "
                "information. Is it a HIKVision camera (kind: hikvision in the site file)?",
                detail=str(exc),
            ) from exc

    async def snapshot(self, channel: Channel = "main") -> Snapshot:
        """A JPEG from the main stream (``101``) or the sub stream (``102``, smaller)."""
        if self.target.kind == "hikvision":
            path, shot_channel = ISAPI_PICTURE[channel], channel
        else:
            path, shot_channel = self.target.snapshot_target(), None
        response = await self._get(path, "a picture")
        data = response.content
        problem = jpeg_problem(data)
        if problem:
            kind = response.headers.get("content-type", "no content type")
            raise CameraFailed(f"{self.target.subject} sent {len(data)} bytes ({kind}) for a "
                               f"picture, but {problem}.")
        content_type = response.headers.get("content-type", "image/jpeg").split(";")[0].strip()
        return Snapshot(data, content_type or "image/jpeg", shot_channel)

    async def _get(self, path: str, what: str) -> httpx.Response:
        target = self.target
        auth = CameraAuth(target.user, target.password, allow_basic=target.kind == "generic")
        with camera_errors(target, self._link):
            async with asyncio.timeout(target.total_timeout):
                response = await self._http.get(path, auth=auth)
        if response.status_code == 200:
            return response
        if response.status_code in (401, 403):
            self._raise_auth_error(response, auth, path, what)
        raise self._http_error(response, path, what)

    def _raise_auth_error(self, response: httpx.Response, auth: CameraAuth, path: str,
                          what: str) -> NoReturn:
        target = self.target
        subject = target.subject
        check = auth.locked_before or parse_user_check(response.content)
        if check is not None and check.locked:
            minutes = check.locked_minutes
            when = f" for about {minutes} more minute{'s' if minutes != 1 else ''}" \
                if minutes else ""
            before = auth.challenge_check
            if auth.credentials_sent and before is not None and not before.locked:
                # Unlocked when it challenged, locked after this password: it was wrong.
                raise CameraAuthRefused(
                    f"{subject} refused the password for user {target.user!r}, and that was "
                    f"the last try it allowed: it has locked camreach's address out{when}. "
                    "Give camreach the right password; it will not send this one again.",
                    attempts_left=0, locked_minutes=minutes,
                )
            sent = ("camreach sent it no password now." if not auth.credentials_sent else
                    "While locked it refuses every password, so this says nothing about the "
                    "one camreach has.")
            raise CameraLocked(
                f"{subject} has locked camreach's address out after too many wrong passwords"
                f"{when}. {sent} Wait until then (a try while it is locked may restart the "
                "wait); if the password may be wrong, give the right one first.",
                locked_minutes=minutes, password_sent=bool(auth.credentials_sent),
            )
        if response.status_code == 403:
            raise self._http_error(response, path, what)
        if auth.credentials_sent == 0:
            if target.password is None:
                raise ConfigError(f"{subject} asks for a password, and the site file gives none: "
                                  "name its environment variable in password_env.")
            if not auth.offered:
                raise CameraFailed(f"{subject} answered {path} with 401 but named no way to log "
                                   "in (no WWW-Authenticate).")
            if "digest" in auth.offered:
                raise CameraFailed(f"{subject} sent a Digest challenge camreach could not "
                                   "answer (malformed).")
            offered = ", ".join(s.capitalize() for s in auth.offered)
            if target.kind == "hikvision" and "basic" in auth.offered:
                raise CameraAuthUnsupported(
                    f"{subject} asks for {offered} authentication. camreach sends a HIKVision "
                    "camera's password only with Digest (Basic tries count toward its lockout): "
                    "turn on digest authentication in the camera's web page (Configuration → "
                    "System → Security → Authentication)."
                )
            raise CameraAuthUnsupported(
                f"{subject} asks for {offered} authentication, which camreach does not speak "
                "(it speaks Digest, and Basic for generic cameras)."
            )
        if _says_stale(response):
            # A compliant camera says stale only of a correct answer on an expired nonce.
            raise CameraFailed(f"{subject} took the login as stale (its nonce expired at once). "
                               "Try again.")
        left = check.attempts_left if check is not None else None
        if left is None:
            count = "it did not say how many attempts are left"
        else:
            count = f"it allows {left} more attempt{'s' if left != 1 else ''} before it locks"
        lockout = (" HIKVision cameras lock an address out for about 30 minutes after a few "
                   "wrong passwords." if target.kind == "hikvision" else "")
        raise CameraAuthRefused(
            f"{subject} refused the password for user {target.user!r} ({count}). Give camreach "
            f"the right password before it tries again.{lockout}",
            attempts_left=left,
        )

    def _http_error(self, response: httpx.Response, path: str, what: str) -> CameraFailed:
        subject = self.target.subject
        status = response.status_code
        reason = response.reason_phrase or ""
        said = parse_response_status(response.content)
        told = f": {said.describe()}" if said is not None and said.describe() else ""
        code = f"HTTP {status}{' ' + reason if reason else ''}{told}"
        if status >= 500:
            return CameraFailed(f"{subject} reported an error when asked for {what} ({code}). "
                                "Try again; if it keeps failing, restart the camera.")
        if status == 403:
            return CameraFailed(f"{subject} accepted the password but refuses {what} to user "
                                f"{self.target.user!r} ({code}): give that user the right to "
                                "see live view in the camera.")
        if status == 404:
            hint = ("Is it a HIKVision camera (kind: hikvision), and does it have that stream?"
                    if self.target.kind == "hikvision" else "Check snapshot_url in the site file.")
            return CameraFailed(f"{subject} has nothing at {path} ({code}). {hint}")
        if 300 <= status < 400:
            location = response.headers.get("location", "?")
            return CameraFailed(f"{subject} redirects {path} to {location} ({code}); camreach does "
                                "not follow redirects: put the final address in the site file.")
        return CameraFailed(f"{subject} refused the request for {what} ({code}).")


def _raw_connection(ssh: SshConnection | asyncssh.SSHClientConnection) -> \
        asyncssh.SSHClientConnection:
    return ssh.raw if isinstance(ssh, SshConnection) else ssh


@asynccontextmanager
async def camera_client(
    target: CameraTarget, *, ssh: SshConnection | asyncssh.SSHClientConnection | None,
) -> AsyncIterator[CameraClient]:
    """A client for ``target`` over the path its site file names.

    ``via: droplet`` needs ``ssh``, the open connection to the site's droplet (its failures to
    connect are the caller's, named there); ``via: direct`` must not get one.
    """
    if target.via == "droplet":
        if ssh is None:
            raise ValueError(f"camera {target.name} is reached via the droplet: pass its SSH "
                             "connection")
        raw = _raw_connection(ssh)
        link: asyncssh.SSHClientConnection | None = raw
        backend: httpcore.AsyncNetworkBackend | None = ChannelBackend(raw)
    else:
        if ssh is not None:
            raise ValueError(f"camera {target.name} is reached directly (via: direct), not "
                             "over SSH")
        link, backend = None, None
    # Every body (a 401's too) is bounded by the picture limit; past it the read stops.
    transport = PoolTransport(_pool(backend), max_body=target.max_snapshot_bytes)
    timeout = httpx.Timeout(connect=target.connect_timeout, read=target.read_timeout,
                            write=target.read_timeout, pool=target.connect_timeout)
    http = httpx.AsyncClient(transport=transport, base_url=target.base_url, timeout=timeout,
                             follow_redirects=False, trust_env=False,
                             headers={"User-Agent": _USER_AGENT, "Accept": "*/*"})
    try:
        yield CameraClient(target, http, link)
    finally:
        await http.aclose()

