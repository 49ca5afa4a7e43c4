"""A fake HIKVision camera (DS-2CD1321-I-like) on a real socket, with real Digest auth.

    async with FakeHikvisionCamera(password="Cam-Pass-1") as cam:   # 127.0.0.1, ephemeral port
        ... cam.host, cam.port, cam.last_jpeg, cam.failed_logins ...

What it does, as the real camera does it:

* Digest (RFC 7616, MD5, ``qop="auth"``), challenge spelled like HIKVision's
  (``Digest qop="auth", realm="IP Camera(C2183)", nonce="...", stale="FALSE"``). A new nonce per
  challenge; a nonce goes stale after ``nonce_max_age`` seconds or ``nonce_max_uses`` uses (or
  once per ``stale_next``): a correct answer on it gets 401 with ``stale="TRUE"`` and is not a
  failed login. ``nc`` must grow per nonce (a replay gets a plain 401). The hash is checked
  against the nonce the client sent, so a wrong password is a wrong password whatever the nonce.
* Basic is never accepted by the HIKVision endpoints: the header is recorded
  (``basic_attempts``), counted as a failed login, and answered with a Digest challenge.
* Failed logins are counted per client address; after ``max_failures`` the address is locked for
  ``lock_seconds`` (1800: HIKVision's 30 minutes). Every 401 carries the ``<userCheck>`` body
  (``statusValue``, ``statusString``, ``lockStatus`` lock|unlock, ``unlockTime`` seconds left,
  ``retryLoginTime`` attempts left; ``user_check_on_challenge = False`` leaves it out of the
401 to a request without credentials). While locked, every login is refused, even a correct one
  (``lock_restarts_on_attempt`` restarts the wait, as the SDK guide describes).
* ``GET /ISAPI/System/deviceInfo`` (namespace ``http://www.hikvision.com/ver20/XMLSchema``;
  ``namespace=None`` for none, another URI, or ``prefix`` for ``<hik:DeviceInfo>``), and
  ``GET /ISAPI/Streaming/channels/101/picture`` / ``102``: a real JPEG made with Pillow, the
  request counter drawn in, so every picture differs; ``main_bytes`` pads the main stream's
  picture up to that size with comment segments of random bytes (still a valid JPEG).
  ``last_jpeg`` is exactly what was served last, ``last_byte_ns`` (CLOCK_MONOTONIC) when its
  last byte left (the kernel had all of it).
* ``kind="generic"``: one snapshot URL (``generic_path``) behind ``generic_auth`` "digest",
  "basic" (a Basic challenge) or "none".

Failure switches: ``await cam.stop()`` (down: connection refused), ``await cam.start()`` (back on
the same port), ``mode = "hang"`` (accept, read, never answer), ``"error500"``, ``"garbage"``
(bytes that are not HTTP), ``"not_jpeg"``, ``"cut_short"`` (half a picture, then the
connection closes); ``response_delay`` holds every answer (a slow
camera or link). Counters: ``requests``, ``challenges``, ``credential_attempts``,
``failed_logins``, ``basic_attempts``, ``stale_answers``, ``replays``, ``successes``, and
``auth_headers`` (every Authorization header received, in order).

Also here: :class:`ForwardOnlySshServer`, an asyncssh server that only forwards TCP
(``direct-tcpip``), no shell, no exec: a droplet hop with nothing else on it.

Run alone (the benchmark does): ``python -m tests.fakes.hikvision_camera --port 0`` prints one
JSON line with the port; it serves ``GET /_fake/stats`` (counters, ``last_byte_ns``) outside
auth, and with ``--ssh`` also a :class:`ForwardOnlySshServer`. It stops when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import io
import json
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, Literal
from urllib.request import parse_http_list, parse_keqv_list

import asyncssh
from aiohttp import web
from PIL import Image, ImageDraw

HIK_NS = "http://www.hikvision.com/ver20/XMLSchema"
Mode = Literal["ok", "hang", "error500", "garbage", "not_jpeg", "cut_short"]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def make_jpeg(label: str, size: tuple[int, int], pad_to: int | None = None) -> bytes:
    """A real JPEG with ``label`` drawn in; COM segments of random bytes pad it to ``pad_to``."""
    image = Image.new("RGB", size, (32, 96, 64))
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 8, size[0] - 8, size[1] // 5), fill=(0, 0, 0))
    draw.text((16, 16), label, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    data = out.getvalue()
    if pad_to is None or len(data) >= pad_to:
        return data
    # After SOI and the JFIF APP0 segment: COM (0xFFFE) segments, at most 65533 bytes each.
    app0_end = 4 + int.from_bytes(data[4:6], "big")
    segments = bytearray()
    missing = pad_to - len(data)
    while missing > 4:
        payload = min(65533, missing - 4)
        segments += b"\xff\xfe" + (payload + 2).to_bytes(2, "big") + os.urandom(payload)
        missing -= payload + 4
    return data[:app0_end] + bytes(segments) + data[app0_end:]


def device_info_xml(*, model: str, serial: str, firmware: str, release: str, name: str,
                    mac: str, namespace: str | None = HIK_NS, prefix: str | None = None) -> bytes:
    fields = [
        ("deviceName", name), ("deviceID", "88"), ("deviceDescription", "IPCamera"),
        ("deviceLocation", "hangzhou"), ("systemContact", "Hikvision.China"),
        ("model", model), ("serialNumber", serial), ("macAddress", mac),
        ("firmwareVersion", firmware), ("firmwareReleasedDate", release),
        ("encoderVersion", "V7.3"), ("encoderReleasedDate", "build 200116"),
        ("bootVersion", "V1.3.4"), ("bootReleasedDate", "100316"),
        ("hardwareVersion", "0x0"), ("deviceType", "IPCamera"), ("telecontrolID", "88"),
        ("supportBeep", "false"), ("supportVideoLoss", "false"),
        ("firmwareVersionInfo", "B-R-E7-0"),
    ]
    p = f"{prefix}:" if prefix else ""
    if namespace is None:
        xmlns = ""
    elif prefix:
        xmlns = f' xmlns:{prefix}="{namespace}"'
    else:
        xmlns = f' xmlns="{namespace}"'
    body = "".join(f"<{p}{k}>{v}</{p}{k}>\n" for k, v in fields)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<{p}DeviceInfo version="2.0"{xmlns}>\n'
            f"{body}</{p}DeviceInfo>\n").encode()


def user_check_xml(*, locked: bool, unlock_seconds: int, retry_login_time: int) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<userCheck version="2.0" xmlns="{HIK_NS}">\n'
        "<statusValue>401</statusValue>\n<statusString>Unauthorized</statusString>\n"
        "<isDefaultPassword>false</isDefaultPassword>\n<isRiskPassword>false</isRiskPassword>\n"
        "<isActivated>true</isActivated>\n"
        f"<lockStatus>{'lock' if locked else 'unlock'}</lockStatus>\n"
        f"<unlockTime>{unlock_seconds}</unlockTime>\n"
        f"<retryLoginTime>{retry_login_time}</retryLoginTime>\n"
        "</userCheck>\n"
    ).encode()


def response_status_xml(url: str, code: int, text: str, sub: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ResponseStatus version="2.0" xmlns="{HIK_NS}">\n'
        f"<requestURL>{url}</requestURL>\n<statusCode>{code}</statusCode>\n"
        f"<statusString>{text}</statusString>\n<subStatusCode>{sub}</subStatusCode>\n"
        "</ResponseStatus>\n"
    ).encode()


@dataclass
class _Nonce:
    issued: float
    uses: int = 0
    last_nc: int = 0


class FakeHikvisionCamera:
    """One fake camera. ``async with`` starts and stops it; see the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "admin",
        password: str = "Cam-Pass-1",
        kind: Literal["hikvision", "generic"] = "hikvision",
        generic_path: str = "/cgi-bin/snapshot.jpg",
        generic_auth: Literal["digest", "basic", "none"] = "digest",
        realm: str = "IP Camera(C2183)",
        opaque: str | None = None,
        nonce_max_age: float = 30.0,
        nonce_max_uses: int = 1000,
        max_failures: int = 5,
        lock_seconds: int = 1800,
        lock_restarts_on_attempt: bool = False,
        namespace: str | None = HIK_NS,
        prefix: str | None = None,
        model: str = "DS-2CD1321-I",
        serial: str = "DS-2CD1321-I20200305AAWRE12345678",
        firmware: str = "V5.5.82",
        firmware_release: str = "build 190909",
        device_name: str = "IP CAMERA",
        mac: str = "44:19:b6:12:34:56",
        main_size: tuple[int, int] = (1280, 720),
        sub_size: tuple[int, int] = (640, 360),
        main_bytes: int | None = None,
        response_delay: float = 0.0,
        control: bool = False,
    ) -> None:
        self.host, self._port = host, port
        self.user, self.password, self.kind = user, password, kind
        self.generic_path, self.generic_auth = generic_path, generic_auth
        self.realm, self.opaque = realm, opaque
        self.nonce_max_age, self.nonce_max_uses = nonce_max_age, nonce_max_uses
        self.max_failures, self.lock_seconds = max_failures, lock_seconds
        self.lock_restarts_on_attempt = lock_restarts_on_attempt
        self.namespace, self.prefix = namespace, prefix
        self.model, self.serial, self.firmware = model, serial, firmware
        self.firmware_release, self.device_name, self.mac = firmware_release, device_name, mac
        self.main_size, self.sub_size, self.main_bytes = main_size, sub_size, main_bytes
        self.response_delay = response_delay
        self.control = control
        self.mode: Mode = "ok"
        self.stale_next = 0  # this many correct answers are called stale first
        self.user_check_on_challenge = True  # False: a bare 401 until credentials come
        self.clock_offset = 0.0
        # counters
        self.requests = 0
        self.challenges = 0
        self.credential_attempts = 0
        self.failed_logins = 0
        self.basic_attempts = 0
        self.stale_answers = 0
        self.replays = 0
        self.successes = 0
        self.pictures = 0
        self.auth_headers: list[str] = []
        self.failures_by_address: dict[str, int] = {}
        self.attempts_by_address: dict[str, int] = {}
        self.last_jpeg: bytes | None = None
        self.served: list[bytes] = []
        self.last_byte_ns = 0
        self._in_flight = 0
        self.waited_sends = 0
        self._nonces: dict[str, _Nonce] = {}
        self._locked_until: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeHikvisionCamera:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (again: on the port it had, after a stop)."""
        self._release = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0,
                                     handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self._port).start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Down: close the listening socket and every connection."""
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lockout state -------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the camera's clock on (nonce ages, lockouts)."""
        self.clock_offset += seconds

    def locked_for(self, address: str) -> int:
        """Seconds until ``address`` is unlocked (0 when it is not locked)."""
        until = self._locked_until.get(address)
        if until is None:
            return 0
        left = until - self.now()
        if left <= 0:
            del self._locked_until[address]
            self.failures_by_address[address] = 0
            return 0
        return int(left + 0.999)

    def lock(self, address: str, seconds: int | None = None) -> None:
        self._locked_until[address] = self.now() + (seconds or self.lock_seconds)
        self.failures_by_address[address] = self.max_failures

    def _retry_left(self, address: str) -> int:
        return max(0, self.max_failures - self.failures_by_address.get(address, 0))

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.control and request.path == "/_fake/stats":
            while self._in_flight:  # a picture still leaving: its last byte is yet to come
                await asyncio.sleep(0.0005)
            return web.json_response(self.stats())
        self.requests += 1
        if self.mode == "hang":
            await self._release.wait()
            raise web.HTTPServiceUnavailable()
        if self.response_delay:
            await asyncio.sleep(self.response_delay)
        if self.mode == "garbage":
            transport = request.transport
            assert transport is not None
            transport.write(b"\x00\x15\x03\x01 this is not HTTP at all\r\n\r\n")
            transport.close()
            return web.Response()  # never sent: the connection is gone
        address = request.remote or ""
        refused = self._authenticate(request, address)
        if refused is not None:
            return refused
        self.successes += 1
        if self.mode == "error500":
            return web.Response(status=500, content_type="application/xml",
                                body=response_status_xml(request.path, 6, "Device Error",
                                                         "deviceError"))
        if request.method != "GET":
            return web.Response(status=405, content_type="application/xml",
                                body=response_status_xml(request.path, 4, "Invalid Operation",
                                                         "methodNotAllowed"))
        path = request.path
        if self.kind == "generic":
            if path == self.generic_path:
                return await self._picture(request, "main")
        elif path == "/ISAPI/System/deviceInfo":
            return web.Response(content_type="application/xml", body=device_info_xml(
                model=self.model, serial=self.serial, firmware=self.firmware,
                release=self.firmware_release, name=self.device_name, mac=self.mac,
                namespace=self.namespace, prefix=self.prefix))
        elif path == "/ISAPI/Streaming/channels/101/picture":
            return await self._picture(request, "main")
        elif path == "/ISAPI/Streaming/channels/102/picture":
            return await self._picture(request, "sub")
        return web.Response(status=404, content_type="application/xml",
                            body=response_status_xml(path, 4, "Invalid Operation",
                                                     "notSupport"))

    async def _picture(self, request: web.Request, channel: str) -> web.StreamResponse:
        self.pictures += 1
        if self.mode == "not_jpeg":
            return web.Response(content_type="text/html", body=b"<html>login</html>")
        label = f"{self.device_name} #{self.pictures} {channel} {time.time():.3f}"
        if channel == "main":
            data = make_jpeg(label, self.main_size, self.main_bytes)
        else:
            data = make_jpeg(label, self.sub_size)
        # Recorded before it is sent: a client may have it all before this handler runs again.
        self.last_jpeg = data
        self.served = [*self.served[-9:], data]
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = len(data)
        self._in_flight += 1
        try:
            await response.prepare(request)
            transport = request.transport
            if self.mode == "cut_short" and transport is not None:
                await response.write(data[: len(data) // 2])
                transport.close()
                return response
            await response.write(data)
            await response.write_eof()
            if transport is not None and transport.get_write_buffer_size():
                self.waited_sends += 1  # the kernel did not take it all at once
            while transport is not None and not transport.is_closing() \
                    and transport.get_write_buffer_size():
                await asyncio.sleep(0.0002)
            self.last_byte_ns = time.monotonic_ns()
        finally:
            self._in_flight -= 1
        return response

    # -- authentication ------------------------------------------------------------------------

    def _challenge_header(self, *, stale: bool = False) -> str:
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = _Nonce(issued=self.now())
        opaque = f', opaque="{self.opaque}"' if self.opaque else ""
        return (f'Digest qop="auth", realm="{self.realm}", nonce="{nonce}"{opaque}, '
                f'stale="{"TRUE" if stale else "FALSE"}"')

    def _unauthorized(self, address: str, *, stale: bool = False, basic: bool = False,
                      challenge: bool = False) -> web.Response:
        if basic:
            header = f'Basic realm="{self.realm}"'
        else:
            header = self._challenge_header(stale=stale)
        if challenge and not self.user_check_on_challenge:
            return web.Response(status=401, headers={"WWW-Authenticate": header},
                                content_type="text/html", body=b"<html>401</html>")
        locked = self.locked_for(address)
        body = user_check_xml(locked=bool(locked), unlock_seconds=locked,
                              retry_login_time=0 if locked else self._retry_left(address))
        return web.Response(status=401, headers={"WWW-Authenticate": header},
                            content_type="application/xml", body=body)

    def _fail(self, address: str, *, basic: bool = False) -> web.Response:
        self.failed_logins += 1
        failures = self.failures_by_address.get(address, 0) + 1
        self.failures_by_address[address] = failures
        if failures >= self.max_failures:
            self._locked_until[address] = self.now() + self.lock_seconds
        return self._unauthorized(address, basic=basic)

    def _authenticate(self, request: web.Request, address: str) -> web.Response | None:
        """None when the request may go on; otherwise the 401 to send."""
        wants = "digest" if self.kind == "hikvision" else self.generic_auth
        if wants == "none":
            return None
        header = request.headers.get("Authorization")
        if header is None:
            self.challenges += 1
            return self._unauthorized(address, basic=wants == "basic", challenge=True)
        self.auth_headers.append(header)
        self.credential_attempts += 1
        self.attempts_by_address[address] = self.attempts_by_address.get(address, 0) + 1
        scheme, _, rest = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            self.basic_attempts += 1
        if self.locked_for(address):
            if self.lock_restarts_on_attempt:
                self._locked_until[address] = self.now() + self.lock_seconds
            return self._unauthorized(address, basic=wants == "basic")
        if scheme == "basic":
            if wants != "basic":  # HIKVision: a Basic try is a failed login
                return self._fail(address)
            return None if self._basic_ok(rest) else self._fail(address, basic=True)
        if scheme != "digest" or wants != "digest":
            return self._fail(address, basic=wants == "basic")
        return self._check_digest(request, address, rest)

    def _basic_ok(self, token: str) -> bool:
        try:
            user, _, password = base64.b64decode(token.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.user) and \
            secrets.compare_digest(password, self.password)

    def _check_digest(self, request: web.Request, address: str, rest: str) -> web.Response | None:
        params = {k.lower(): v for k, v in
                  parse_keqv_list([i for i in parse_http_list(rest) if "=" in i]).items()}
        needed = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
        if any(k not in params for k in needed) or params["qop"] != "auth" or \
                params.get("algorithm", "MD5").upper() != "MD5" or \
                params["uri"] != request.raw_path or \
                (self.opaque is not None and params.get("opaque") != self.opaque):
            return self._fail(address)
        if params["username"] != self.user or params["realm"] != self.realm:
            return self._fail(address)
        ha1 = _md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = _md5(f"{request.method}:{params['uri']}")
        expected = _md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
        if not secrets.compare_digest(expected, params["response"].lower()):
            return self._fail(address)
        # The password is right; is the nonce still good?
        nonce = self._nonces.get(params["nonce"])
        if nonce is None or self.now() - nonce.issued > self.nonce_max_age or \
                nonce.uses >= self.nonce_max_uses or self.stale_next > 0:
            self.stale_next = max(0, self.stale_next - 1)
            self._nonces.pop(params["nonce"], None)
            self.stale_answers += 1
            return self._unauthorized(address, stale=True)
        try:
            nc = int(params["nc"], 16)
        except ValueError:
            return self._fail(address)
        if nc <= nonce.last_nc:
            self.replays += 1
            return self._unauthorized(address)
        nonce.last_nc = nc
        nonce.uses += 1
        self.failures_by_address[address] = 0
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "challenges": self.challenges,
            "credential_attempts": self.credential_attempts,
            "failed_logins": self.failed_logins, "basic_attempts": self.basic_attempts,
            "stale_answers": self.stale_answers, "successes": self.successes,
            "pictures": self.pictures, "last_byte_ns": self.last_byte_ns,
            "waited_sends": self.waited_sends,
            "last_jpeg_sha256": hashlib.sha256(self.last_jpeg).hexdigest()
            if self.last_jpeg else None,
            "last_jpeg_size": len(self.last_jpeg) if self.last_jpeg else 0,
        }


# -- a droplet hop that only forwards ---------------------------------------------------------


class LateChannel(asyncssh.SSHTCPSession[bytes]):
    """The server's end of a channel accepted late: did the client close it?"""

    def __init__(self) -> None:
        self.opened = False
        self.closed = asyncio.Event()

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self.opened = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


class ForwardOnlySshServer:
    """An SSH server on 127.0.0.1 that allows ``direct-tcpip`` and nothing else.

    Sessions (shell, exec, subsystems) and remote forwards are refused. ``prohibited`` holds
    (host, port) pairs answered "administratively prohibited"; ``delayed`` maps pairs to the
    seconds their channel open waits before it is accepted (the channel's life is then recorded
    in ``late_channels``: opened, and closed by the client?); ``blackhole`` pairs never get an
    answer to their channel open (a tunnel that swallows packets). Channel opens are recorded
    in ``channel_requests``.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 client_key: asyncssh.SSHKey | None = None) -> None:
        self.host, self._port = host, port
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = client_key or asyncssh.generate_private_key("ssh-ed25519")
        self.prohibited: set[tuple[str, int]] = set()
        self.blackhole: set[tuple[str, int]] = set()
        self.delayed: dict[tuple[str, int], float] = {}
        self.late_channels: list[LateChannel] = []
        self.channel_requests: list[tuple[str, int]] = []
        self.sessions_refused = 0
        self.connections: list[asyncssh.SSHServerConnection] = []
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._release = asyncio.Event()

    async def __aenter__(self) -> ForwardOnlySshServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def host_public_key(self) -> str:
        return self.host_key.export_public_key().decode().strip()

    async def start(self) -> None:
        owner = self
        authorized = asyncssh.import_authorized_keys(
            self.client_key.export_public_key().decode())

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                owner.connections.append(conn)

            def begin_auth(self, username: str) -> bool:
                return True

            def session_requested(self) -> bool:
                owner.sessions_refused += 1
                return False

            def server_requested(self, listen_host: str, listen_port: int) -> bool:
                return False

            def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                                     orig_port: int) -> Any:
                owner.channel_requests.append((dest_host, dest_port))
                if (dest_host, dest_port) in owner.prohibited:
                    raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                                    "Port forwarding not permitted")
                if (dest_host, dest_port) in owner.blackhole:
                    return owner._swallow()
                if (dest_host, dest_port) in owner.delayed:
                    return owner._late(owner.delayed[(dest_host, dest_port)])
                return True

        self._release = asyncio.Event()
        self._acceptor = await asyncssh.create_server(
            Server, self.host, self._port, server_host_keys=[self.host_key],
            authorized_client_keys=authorized, allow_pty=False, agent_forwarding=False,
            x11_forwarding=False, login_timeout=10,
        )
        self._port = self._acceptor.get_port()

    def _swallow(self) -> Coroutine[Any, Any, asyncssh.SSHTCPSession[bytes]]:
        async def wait() -> asyncssh.SSHTCPSession[bytes]:
            await self._release.wait()
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "Connection timed out")

        return wait()

    def _late(self, seconds: float) -> Coroutine[Any, Any, asyncssh.SSHTCPSession[bytes]]:
        async def wait() -> asyncssh.SSHTCPSession[bytes]:
            await asyncio.sleep(seconds)
            channel = LateChannel()
            self.late_channels.append(channel)
            return channel

        return wait()

    async def stop(self) -> None:
        self._release.set()
        for conn in self.connections:
            conn.close()
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """A client connection as camreach makes one: key only, pinned host key."""
        known = asyncssh.import_known_hosts(
            f"[{self.host}]:{self.port} {self.host_public_key}\n")
        async with asyncssh.connect(self.host, self.port, username="camreach",
                                    client_keys=[self.client_key], known_hosts=known,
                                    agent_path=None, config=[], connect_timeout=10) as conn:
            yield conn


# -- standalone (for the benchmark) -----------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    camera = FakeHikvisionCamera(host=args.host, port=args.port, password=args.password,
                                 main_bytes=args.main_bytes,
                                 response_delay=args.delay_ms / 1000, control=True)
    await camera.start()
    info: dict[str, Any] = {"host": camera.host, "port": camera.port}
    forwarder: ForwardOnlySshServer | None = None
    if args.ssh:
        forwarder = ForwardOnlySshServer(host=args.host)
        await forwarder.start()
        # A throw-away key made for this run, handed to the parent that started us.
        info.update(ssh_port=forwarder.port, ssh_host_key=forwarder.host_public_key,
                    ssh_client_key=forwarder.client_key.export_private_key().decode())
    print(json.dumps(info), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, _wait_stdin_closed)  # parent gone
    if forwarder is not None:
        await forwarder.stop()
    await camera.stop()


def _wait_stdin_closed() -> None:
    sys.stdin.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password", default="Cam-Pass-1")
    parser.add_argument("--main-bytes", type=int, default=None)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--ssh", action="store_true",
                        help="also run a forward-only SSH server (its client key is printed)")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
