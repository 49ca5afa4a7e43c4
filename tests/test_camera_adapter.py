"""The camera adapter against a fake HIKVision camera on real sockets: direct, through an
SSH server that only forwards, and through the droplet stand-in's real sshd."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import asyncssh
import httpx
import pytest
from PIL import Image

from bot.adapters.camera import (
    CameraAuthRefused,
    CameraAuthUnsupported,
    CameraFailed,
    CameraLocked,
    CameraTarget,
    CameraUnreachable,
    DropletLinkLost,
    ForwardingProhibited,
    TunnelUnreachable,
    camera_client,
    jpeg_problem,
)
from bot.adapters.ssh import SshConnection, SshTarget, public_key_line, ssh_session
from bot.errors import AuthRejected, ConfigError, OperatorError, TransientError, Unreachable
from bot.render.isapi import IsapiParseError, parse_device_info, parse_user_check, parse_xml
from tests.fakes.hikvision_camera import HIK_NS, FakeHikvisionCamera, ForwardOnlySshServer
from tests.infra.droplet_host import DropletHost

PASSWORD = "Cam-Pass-1"
ANSWER_WITHIN = 20.0  # the bound on every answer


def target(cam: FakeHikvisionCamera, **kw: Any) -> CameraTarget:
    values: dict[str, Any] = dict(name="porch", host=cam.host, port=cam.port, user="admin",
                                  password=PASSWORD, via="direct", site="farmhouse")
    values.update(kw)
    return CameraTarget(**values)


@pytest.fixture
async def cam() -> AsyncIterator[FakeHikvisionCamera]:
    async with FakeHikvisionCamera(password=PASSWORD) as camera:
        yield camera


@pytest.fixture
async def forwarder() -> AsyncIterator[ForwardOnlySshServer]:
    async with ForwardOnlySshServer() as server:
        yield server


async def settle() -> None:
    """Long enough for a second attempt to arrive, had one been sent."""
    await asyncio.sleep(0.3)


def only_digest(cam: FakeHikvisionCamera) -> None:
    assert cam.basic_attempts == 0
    assert all(h.startswith("Digest ") for h in cam.auth_headers), cam.auth_headers


# -- direct: Digest, device information, pictures -------------------------------------------


async def test_device_info_with_digest(cam: FakeHikvisionCamera) -> None:
    async with camera_client(target(cam), ssh=None) as client:
        info = await client.device_info()
    assert (info.model, info.serial, info.firmware) == (cam.model, cam.serial, cam.firmware)
    assert info.firmware_release_date == "build 190909"
    assert info.device_name == "IP CAMERA" and info.mac == cam.mac
    # asked once without credentials, answered the challenge once
    assert (cam.challenges, cam.credential_attempts, cam.failed_logins) == (1, 1, 0)
    only_digest(cam)
    header = cam.auth_headers[0]
    assert 'qop=auth' in header and 'nc=00000001' in header and 'algorithm=MD5' in header


@pytest.mark.parametrize(("namespace", "prefix"), [
    (HIK_NS, None),
    ("http://www.std-cgi.com/ver20/XMLSchema", None),
    ("http://www.isapi.org/ver20/XMLSchema", None),
    (None, None),
    (HIK_NS, "hik"),
], ids=["hikvision", "std-cgi", "isapi", "none", "prefixed"])
async def test_device_info_whatever_the_namespace(namespace: str | None,
                                                  prefix: str | None) -> None:
    async with FakeHikvisionCamera(password=PASSWORD, namespace=namespace, prefix=prefix,
                                   firmware="V5.7.3") as cam, \
            camera_client(target(cam), ssh=None) as client:
        info = await client.device_info()
    assert (info.model, info.firmware) == ("DS-2CD1321-I", "V5.7.3")


async def test_snapshot_is_exactly_what_the_camera_served() -> None:
    async with FakeHikvisionCamera(password=PASSWORD, main_bytes=1_000_000) as cam, \
            camera_client(target(cam), ssh=None) as client:
        first = await client.snapshot("main")
        assert first.data == cam.last_jpeg
        second = await client.snapshot("main")
        assert second.data == cam.last_jpeg
        sub = await client.snapshot("sub")
        assert sub.data == cam.last_jpeg
    assert first.data != second.data  # a new picture per request
    assert len(first.data) == 1_000_000 and first.content_type == "image/jpeg"
    assert first.channel == "main" and sub.channel == "sub"
    assert len(sub.data) < len(first.data)
    with Image.open(io.BytesIO(first.data)) as image:
        assert image.format == "JPEG" and image.size == cam.main_size
    with Image.open(io.BytesIO(sub.data)) as image:
        assert image.size == cam.sub_size
    only_digest(cam)


async def test_keep_alive_connection_closed_by_a_restarted_camera(
        cam: FakeHikvisionCamera) -> None:
    async with camera_client(target(cam), ssh=None) as client:
        await client.snapshot("sub")
        await cam.stop()
        await cam.start()  # same port; the pooled connection is dead
        shot = await client.snapshot("sub")
    assert shot.data == cam.last_jpeg


# -- the lockout: one attempt, and what the camera said ----------------------------------------


async def test_wrong_password_is_one_failed_attempt_and_says_how_many_are_left(
        cam: FakeHikvisionCamera) -> None:
    async with camera_client(target(cam, password="Not-Cam-Pass-9"), ssh=None) as client:
        with pytest.raises(CameraAuthRefused) as err:
            await client.snapshot()
        await settle()
    assert isinstance(err.value, AuthRejected) and isinstance(err.value, OperatorError)
    assert (cam.failed_logins, cam.credential_attempts) == (1, 1)
    assert cam.requests == 2  # the unauthenticated ask and the one answer: nothing after
    assert err.value.attempts_left == 4 and err.value.locked_minutes is None
    assert "refused the password for user 'admin'" in err.value.user_message
    assert "4 more attempts" in err.value.user_message
    assert "Not-Cam-Pass-9" not in err.value.user_message  # never the password
    only_digest(cam)


async def test_last_wrong_password_locks_and_the_error_says_for_how_long() -> None:
    async with FakeHikvisionCamera(password=PASSWORD, max_failures=5) as cam:
        cam.failures_by_address["127.0.0.1"] = 4
        async with camera_client(target(cam, password="wrong"), ssh=None) as client:
            with pytest.raises(CameraAuthRefused) as err:
                await client.device_info()
    assert err.value.locked_minutes == 30 and err.value.attempts_left == 0
    assert "refused the password" in err.value.user_message
    assert "the last try" in err.value.user_message
    assert "about 30 more minutes" in err.value.user_message
    assert cam.failed_logins == 1 and cam.credential_attempts == 1


async def test_attempts_left_count_down_to_the_lock() -> None:
    seen: list[tuple[int | None, int | None]] = []
    async with FakeHikvisionCamera(password=PASSWORD, max_failures=5) as cam, \
            camera_client(target(cam, password="wrong"), ssh=None) as client:
        for _ in range(5):
            with pytest.raises(CameraAuthRefused) as err:
                await client.snapshot("sub")
            seen.append((err.value.attempts_left, err.value.locked_minutes))
        with pytest.raises(CameraLocked) as locked:  # the sixth call sends nothing
            await client.snapshot("sub")
    assert seen == [(4, None), (3, None), (2, None), (1, None), (0, 30)]
    assert locked.value.password_sent is False and locked.value.locked_minutes == 30
    assert not isinstance(locked.value, CameraAuthRefused)  # not a verdict on the password
    assert cam.credential_attempts == 5 and cam.failed_logins == 5


async def test_locked_camera_that_hides_it_until_a_password_comes(
        cam: FakeHikvisionCamera) -> None:
    cam.user_check_on_challenge = False
    cam.lock("127.0.0.1", seconds=600)
    async with camera_client(target(cam), ssh=None) as client:  # the right password
        with pytest.raises(CameraLocked) as err:
            await client.snapshot()
    assert err.value.password_sent is True and err.value.locked_minutes == 10
    assert "says nothing about the one camreach has" in err.value.user_message
    assert cam.credential_attempts == 1


async def test_locked_camera_gets_no_password_and_says_minutes_left(
        cam: FakeHikvisionCamera) -> None:
    cam.lock("127.0.0.1", seconds=125)
    async with camera_client(target(cam), ssh=None) as client:  # the right password
        with pytest.raises(CameraLocked) as err:
            await client.snapshot()
    assert err.value.locked_minutes == 3
    assert "about 3 more minutes" in err.value.user_message
    assert "sent it no password" in err.value.user_message
    assert cam.credential_attempts == 0 and cam.auth_headers == []


async def test_lock_lifts_and_the_right_password_works_again(cam: FakeHikvisionCamera) -> None:
    cam.lock("127.0.0.1")
    async with camera_client(target(cam), ssh=None) as client:
        with pytest.raises(CameraLocked):
            await client.snapshot("sub")
        cam.advance(1801)
        shot = await client.snapshot("sub")
    assert shot.data == cam.last_jpeg


async def test_lockout_counts_per_address_and_a_basic_try_counts() -> None:
    async with FakeHikvisionCamera(password=PASSWORD, max_failures=3) as cam, \
            httpx.AsyncClient(base_url=cam.url) as raw:
        for _ in range(3):
            response = await raw.get("/ISAPI/System/deviceInfo",
                                     auth=httpx.BasicAuth("admin", PASSWORD))
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Digest ")
        check = parse_user_check(response.content)
    assert cam.basic_attempts == 3 and cam.failed_logins == 3
    assert check is not None and check.locked and check.unlock_seconds == 1800
    assert check.retry_login_time == 0


# -- Digest details of the fake: stale nonces, nc, replays -------------------------------------


async def test_fake_nonce_goes_stale_by_age_and_httpx_recovers(cam: FakeHikvisionCamera) -> None:
    cam.nonce_max_age = 5
    auth = httpx.DigestAuth("admin", PASSWORD)  # reuses the nonce, nc 1, 2, ...
    async with httpx.AsyncClient(base_url=cam.url, auth=auth) as raw:
        assert (await raw.get("/ISAPI/System/deviceInfo")).status_code == 200
        assert (await raw.get("/ISAPI/System/deviceInfo")).status_code == 200
        assert "nc=00000002" in cam.auth_headers[-1]
        cam.advance(6)
        stale = await raw.get("/ISAPI/System/deviceInfo")
    assert stale.status_code == 200
    assert cam.stale_answers == 1 and cam.failed_logins == 0
    assert stale.history[0].status_code == 401
    assert 'stale="TRUE"' in stale.history[0].headers["www-authenticate"]


async def test_fake_nonce_goes_stale_by_uses(cam: FakeHikvisionCamera) -> None:
    cam.nonce_max_uses = 1
    async with httpx.AsyncClient(base_url=cam.url,
                                 auth=httpx.DigestAuth("admin", PASSWORD)) as raw:
        for _ in range(3):
            assert (await raw.get("/ISAPI/Streaming/channels/102/picture")).status_code == 200
    assert cam.stale_answers == 2 and cam.failed_logins == 0


async def test_fake_refuses_a_replayed_answer(cam: FakeHikvisionCamera) -> None:
    async with httpx.AsyncClient(base_url=cam.url) as raw:
        ok = await raw.get("/ISAPI/System/deviceInfo", auth=httpx.DigestAuth("admin", PASSWORD))
        assert ok.status_code == 200
        replay = await raw.get("/ISAPI/System/deviceInfo",
                               headers={"Authorization": cam.auth_headers[-1]})
    assert replay.status_code == 401 and cam.replays == 1 and cam.failed_logins == 0


async def test_stale_answer_is_not_a_refused_password_and_is_not_retried(
        cam: FakeHikvisionCamera) -> None:
    cam.stale_next = 1
    async with camera_client(target(cam), ssh=None) as client:
        with pytest.raises(CameraFailed, match="stale") as err:
            await client.snapshot("sub")
        assert isinstance(err.value, TransientError)
        assert cam.credential_attempts == 1 and cam.failed_logins == 0
        shot = await client.snapshot("sub")  # the next call, a new nonce
    assert shot.data == cam.last_jpeg


# -- never Basic to a HIKVision camera; generic cameras ----------------------------------------


async def test_hikvision_camera_offering_only_basic_gets_no_password() -> None:
    async with FakeHikvisionCamera(password=PASSWORD, kind="generic", generic_auth="basic",
                                   generic_path="/ISAPI/Streaming/channels/101/picture") as cam:
        async with camera_client(target(cam), ssh=None) as client:  # kind: hikvision
            with pytest.raises(CameraAuthUnsupported, match="only with Digest"):
                await client.snapshot()
    assert cam.basic_attempts == 0 and cam.auth_headers == []


async def test_no_basic_ever_reaches_a_hikvision_camera(cam: FakeHikvisionCamera) -> None:
    async with camera_client(target(cam), ssh=None) as good, \
            camera_client(target(cam, password="wrong"), ssh=None) as bad:
        await good.device_info()
        await good.snapshot("main")
        await good.snapshot("sub")
        with pytest.raises(CameraAuthRefused):
            await bad.snapshot()
    assert len(cam.auth_headers) == 4
    only_digest(cam)


@pytest.mark.parametrize("scheme", ["basic", "digest", "none"])
async def test_generic_camera_gets_the_scheme_it_asks_for(
        scheme: Literal["basic", "digest", "none"]) -> None:
    async with FakeHikvisionCamera(password=PASSWORD, kind="generic", generic_auth=scheme,
                                   generic_path="/cgi-bin/snapshot.cgi") as cam:
        generic = target(cam, kind="generic", snapshot_url=f"{cam.url}/cgi-bin/snapshot.cgi")
        async with camera_client(generic, ssh=None) as client:
            shot = await client.snapshot()
            with pytest.raises(CameraFailed, match="HIKVision"):
                await client.device_info()
    assert shot.data == cam.last_jpeg and shot.channel is None
    assert cam.basic_attempts == (1 if scheme == "basic" else 0)
    assert [h.split()[0] for h in cam.auth_headers] == \
        {"basic": ["Basic"], "digest": ["Digest"], "none": []}[scheme]


async def test_generic_camera_wrong_basic_password_is_one_attempt() -> None:
    async with FakeHikvisionCamera(password=PASSWORD, kind="generic", generic_auth="basic",
                                   generic_path="/snap.jpg") as cam:
        generic = target(cam, kind="generic", snapshot_url="/snap.jpg", password="wrong")
        async with camera_client(generic, ssh=None) as client:
            with pytest.raises(CameraAuthRefused) as err:
                await client.snapshot()
            await settle()
    assert cam.basic_attempts == 1 and cam.failed_logins == 1 and cam.requests == 2
    assert "HIKVision" not in err.value.user_message


async def test_camera_without_a_configured_password(cam: FakeHikvisionCamera) -> None:
    async with camera_client(target(cam, password=None), ssh=None) as client:
        with pytest.raises(ConfigError, match="password_env"):
            await client.snapshot()
    assert cam.auth_headers == []


def test_target_checks_the_generic_url() -> None:
    with pytest.raises(ValueError, match="snapshot_url"):
        CameraTarget("gate", "192.168.1.70", kind="generic")
    with pytest.raises(ValueError, match="not at the camera"):
        CameraTarget("gate", "192.168.1.70", kind="generic",
                     snapshot_url="http://192.168.1.99/snap.jpg")
    with pytest.raises(ValueError, match="password_env"):
        CameraTarget("gate", "192.168.1.70", kind="generic",
                     snapshot_url="http://admin:pw@192.168.1.70/snap.jpg")
    ok = CameraTarget("gate", "192.168.1.70", 8080, kind="generic",
                      snapshot_url="http://192.168.1.70:8080/snap.jpg?channel=1")
    assert ok.snapshot_target() == "/snap.jpg?channel=1"


async def test_path_comes_from_the_configuration(cam: FakeHikvisionCamera,
                                                 forwarder: ForwardOnlySshServer) -> None:
    with pytest.raises(ValueError, match="via the droplet"):
        async with camera_client(target(cam, via="droplet"), ssh=None):
            pass
    async with forwarder.connect() as conn:
        with pytest.raises(ValueError, match="directly"):
            async with camera_client(target(cam, via="direct"), ssh=conn):
                pass


# -- camera errors, and every answer within the bound ------------------------------------------


async def test_camera_error_500(cam: FakeHikvisionCamera) -> None:
    cam.mode = "error500"
    async with camera_client(target(cam), ssh=None) as client:
        with pytest.raises(CameraFailed, match=r"reported an error .*HTTP 500.*Device Error"):
            await client.snapshot()


async def test_camera_answers_garbage(cam: FakeHikvisionCamera) -> None:
    cam.mode = "garbage"
    async with camera_client(target(cam), ssh=None) as client:
        with pytest.raises(CameraFailed, match="not valid HTTP") as err:
            await client.device_info()
    assert err.value.hop == "camera"


async def test_camera_sends_something_that_is_not_a_jpeg(cam: FakeHikvisionCamera) -> None:
    cam.mode = "not_jpeg"
    async with camera_client(target(cam), ssh=None) as client:
        with pytest.raises(CameraFailed, match=r"text/html.*not a JPEG"):
            await client.snapshot()


async def test_picture_larger_than_the_limit_stops_the_read() -> None:
    async with FakeHikvisionCamera(password=PASSWORD, main_bytes=3_000_000) as cam, \
            camera_client(target(cam, max_snapshot_bytes=1024 * 1024), ssh=None) as client:
        with pytest.raises(CameraFailed, match="more than 1 MB"):
            await client.snapshot()


async def test_unknown_stream_is_a_camera_error(cam: FakeHikvisionCamera) -> None:
    async with camera_client(target(cam, kind="generic", snapshot_url="/nothing/here"),
                             ssh=None) as client:
        with pytest.raises(CameraFailed, match=r"nothing at /nothing/here \(HTTP 404"):
            await client.snapshot()


async def test_camera_down_direct(cam: FakeHikvisionCamera) -> None:
    await cam.stop()
    began = time.monotonic()
    async with camera_client(target(cam), ssh=None) as client:
        with pytest.raises(CameraUnreachable, match="refused the connection") as err:
            await client.snapshot()
    assert time.monotonic() - began < ANSWER_WITHIN
    assert err.value.hop == "camera" and isinstance(err.value, Unreachable)


async def test_camera_hangs_direct(cam: FakeHikvisionCamera) -> None:
    cam.mode = "hang"
    began = time.monotonic()
    async with camera_client(target(cam, read_timeout=1.0), ssh=None) as client:
        with pytest.raises(CameraUnreachable, match="did not answer within 1 s"):
            await client.snapshot()
    assert time.monotonic() - began < 5


async def test_slow_camera_is_cut_at_the_total_limit(cam: FakeHikvisionCamera) -> None:
    cam.response_delay = 0.8  # every answer, the 401 included
    began = time.monotonic()
    slow = target(cam, connect_timeout=0.5, read_timeout=5.0, total_timeout=1.2)
    async with camera_client(slow, ssh=None) as client:
        with pytest.raises(CameraUnreachable, match=r"did not finish answering within 1\.2 s"):
            await client.snapshot()
    assert time.monotonic() - began < 3


# -- through an SSH server that only forwards ----------------------------------------------------


def listening_inodes() -> set[str]:
    """Socket inodes this process holds that are in LISTEN state (IPv4 and IPv6)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # an fd closed meanwhile
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                mine.add(link[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                listening.add(fields[9])
    return mine & listening


async def test_forward_only_server_has_no_shell(forwarder: ForwardOnlySshServer) -> None:
    async with forwarder.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.run("id", check=True)
    assert forwarder.sessions_refused == 1


async def test_over_an_ssh_channel(cam: FakeHikvisionCamera,
                                   forwarder: ForwardOnlySshServer) -> None:
    cam.main_bytes = 1_000_000
    async with forwarder.connect() as conn:
        before = listening_inodes()
        async with camera_client(target(cam, via="droplet"), ssh=conn) as client:
            info = await client.device_info()
            shot = await client.snapshot("main")
            during = listening_inodes()
            sub = await client.snapshot("sub")
    assert info.model == "DS-2CD1321-I"
    assert shot.data != sub.data and sub.data == cam.last_jpeg and len(shot.data) == 1_000_000
    assert cam.served[-2] == shot.data
    assert during == before  # no local listening port: channels only
    # Keep-alive: the deviceInfo exchange and both pictures shared channels.
    assert forwarder.channel_requests and set(forwarder.channel_requests) == {(cam.host, cam.port)}
    assert len(forwarder.channel_requests) <= 2
    only_digest(cam)


async def test_over_ssh_wrong_password_is_one_failed_attempt(
        cam: FakeHikvisionCamera, forwarder: ForwardOnlySshServer) -> None:
    async with forwarder.connect() as conn, \
            camera_client(target(cam, via="droplet", password="wrong"), ssh=conn) as client:
        with pytest.raises(CameraAuthRefused) as err:
            await client.snapshot()
        await settle()
    assert (cam.failed_logins, cam.credential_attempts, cam.requests) == (1, 1, 2)
    assert err.value.attempts_left == 4
    only_digest(cam)


async def test_over_ssh_forwarding_prohibited(cam: FakeHikvisionCamera,
                                              forwarder: ForwardOnlySshServer) -> None:
    forwarder.prohibited.add((cam.host, cam.port))
    async with forwarder.connect() as conn, \
            camera_client(target(cam, via="droplet"), ssh=conn) as client:
        with pytest.raises(ForwardingProhibited, match="administratively prohibited") as err:
            await client.snapshot()
    assert err.value.hop == "droplet" and cam.requests == 0


async def test_over_ssh_tunnel_swallows_the_connection(cam: FakeHikvisionCamera,
                                                       forwarder: ForwardOnlySshServer) -> None:
    forwarder.blackhole.add((cam.host, cam.port))
    began = time.monotonic()
    async with forwarder.connect() as conn, \
            camera_client(target(cam, via="droplet", connect_timeout=1.0), ssh=conn) as client:
        with pytest.raises(TunnelUnreachable, match="within 1 s: the tunnel to the router") as e:
            await client.snapshot()
    assert time.monotonic() - began < 5
    assert e.value.hop == "tunnel"


async def test_over_ssh_a_channel_that_opens_too_late_is_closed(
        cam: FakeHikvisionCamera, forwarder: ForwardOnlySshServer) -> None:
    forwarder.delayed[(cam.host, cam.port)] = 1.0
    async with forwarder.connect() as conn:
        async with camera_client(target(cam, via="droplet", connect_timeout=0.3),
                                 ssh=conn) as client:
            with pytest.raises(TunnelUnreachable, match=r"within 0\.3 s"):
                await client.snapshot()
        await asyncio.wait_for(_until(lambda: bool(forwarder.late_channels)), 5)
        late = forwarder.late_channels[0]
        await asyncio.wait_for(late.closed.wait(), 5)  # closed by camreach, not leaked
        assert late.opened and not conn.is_closed()


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.02)


async def test_over_ssh_nobody_listens(cam: FakeHikvisionCamera,
                                       forwarder: ForwardOnlySshServer) -> None:
    await cam.stop()
    async with forwarder.connect() as conn, \
            camera_client(target(cam, via="droplet"), ssh=conn) as client:
        with pytest.raises(CameraUnreachable, match="refused the connection") as err:
            await client.snapshot()
    assert err.value.hop == "camera"


async def test_over_ssh_camera_hangs(cam: FakeHikvisionCamera,
                                     forwarder: ForwardOnlySshServer) -> None:
    cam.mode = "hang"
    began = time.monotonic()
    async with forwarder.connect() as conn, \
            camera_client(target(cam, via="droplet", read_timeout=1.0), ssh=conn) as client:
        with pytest.raises(CameraUnreachable, match="accepted the connection but did not"):
            await client.snapshot()
    assert time.monotonic() - began < 5


async def test_over_ssh_the_droplet_connection_breaks_mid_answer(
        cam: FakeHikvisionCamera, forwarder: ForwardOnlySshServer) -> None:
    cam.mode = "hang"
    async with forwarder.connect() as conn, \
            camera_client(target(cam, via="droplet"), ssh=conn) as client:
        fetching = asyncio.ensure_future(client.snapshot())
        await asyncio.wait_for(_until(lambda: cam.requests >= 1), 5)
        began = time.monotonic()
        for server_side in forwarder.connections:
            server_side.abort()
        with pytest.raises(DropletLinkLost, match="broke while"):
            await fetching
    assert time.monotonic() - began < 3


async def test_camera_closes_the_connection_mid_picture(cam: FakeHikvisionCamera) -> None:
    cam.mode = "cut_short"
    async with camera_client(target(cam), ssh=None) as client:
        with pytest.raises(CameraUnreachable, match="closed the connection before"):
            await client.snapshot()


async def test_over_ssh_the_droplet_connection_is_gone(cam: FakeHikvisionCamera,
                                                       forwarder: ForwardOnlySshServer) -> None:
    async with forwarder.connect() as conn:
        async with camera_client(target(cam, via="droplet"), ssh=conn) as client:
            await client.snapshot("sub")
            for server_side in forwarder.connections:
                server_side.close()
            await conn.wait_closed()
            with pytest.raises(DropletLinkLost, match="SSH connection to the droplet") as err:
                await client.snapshot("sub")
    assert err.value.hop == "droplet"


# -- through the droplet stand-in's real sshd ---------------------------------------------------


@asynccontextmanager
async def droplet_session(droplet: DropletHost) -> AsyncIterator[SshConnection]:
    """camreach's own SSH session to the droplet: pinned host key, its key only."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    droplet.authorize(public_key_line(key))
    ssh_target = SshTarget(droplet.addr, droplet.ssh_port, "root", "the droplet",
                           droplet.host_public_key, key.export_private_key().decode(),
                           connect_timeout=5, command_timeout=10)
    async with ssh_session(ssh_target) as conn:
        yield conn


@pytest.fixture
async def lan_cam(droplet_host: DropletHost) -> AsyncIterator[FakeHikvisionCamera]:
    """The camera where the droplet's sshd can reach it: the host side of its veth pair."""
    async with FakeHikvisionCamera(host=droplet_host.host_addr, password=PASSWORD,
                                   main_bytes=1_000_000) as camera:
        yield camera


async def test_through_the_droplet_sshd(droplet_host: DropletHost,
                                        lan_cam: FakeHikvisionCamera) -> None:
    async with droplet_session(droplet_host) as conn, \
            camera_client(target(lan_cam, via="droplet"), ssh=conn) as client:
        info = await client.device_info()
        shot = await client.snapshot()
    assert info.serial == lan_cam.serial
    assert shot.data == lan_cam.last_jpeg and len(shot.data) == 1_000_000
    # The camera saw the droplet, as a real one sees the router's forward from the tunnel.
    assert set(lan_cam.attempts_by_address) == {droplet_host.addr}
    only_digest(lan_cam)


async def test_through_the_droplet_sshd_wrong_password(droplet_host: DropletHost,
                                                       lan_cam: FakeHikvisionCamera) -> None:
    async with droplet_session(droplet_host) as conn, \
            camera_client(target(lan_cam, via="droplet", password="wrong"), ssh=conn) as client:
        with pytest.raises(CameraAuthRefused) as err:
            await client.device_info()
        await settle()
    assert lan_cam.failures_by_address == {droplet_host.addr: 1}
    assert (lan_cam.credential_attempts, lan_cam.requests) == (1, 2)
    assert err.value.attempts_left == 4
    only_digest(lan_cam)


async def test_through_the_droplet_sshd_camera_down(droplet_host: DropletHost,
                                                    lan_cam: FakeHikvisionCamera) -> None:
    await lan_cam.stop()
    began = time.monotonic()
    async with droplet_session(droplet_host) as conn, \
            camera_client(target(lan_cam, via="droplet"), ssh=conn) as client:
        with pytest.raises(CameraUnreachable, match="refused the connection"):
            await client.snapshot()
    assert time.monotonic() - began < ANSWER_WITHIN


async def test_through_the_droplet_sshd_camera_hangs(droplet_host: DropletHost,
                                                     lan_cam: FakeHikvisionCamera) -> None:
    lan_cam.mode = "hang"
    began = time.monotonic()
    async with droplet_session(droplet_host) as conn, \
            camera_client(target(lan_cam, via="droplet", read_timeout=2.0), ssh=conn) as client:
        with pytest.raises(CameraUnreachable, match="did not answer within 2 s"):
            await client.snapshot()
    assert time.monotonic() - began < ANSWER_WITHIN


async def test_through_the_droplet_sshd_no_route_to_the_lan(droplet_host: DropletHost) -> None:
    droplet_host.run("ip route add unreachable 192.168.1.0/24", check=True)
    lan = CameraTarget("porch", "192.168.1.64", 80, password=PASSWORD)
    began = time.monotonic()
    async with droplet_session(droplet_host) as conn, camera_client(lan, ssh=conn) as client:
        with pytest.raises(TunnelUnreachable, match="could not connect") as err:
            await client.snapshot()
    assert time.monotonic() - began < ANSWER_WITHIN
    assert "tunnel to the router" in err.value.user_message and err.value.hop == "tunnel"


async def test_through_the_droplet_sshd_tunnel_down(droplet_host: DropletHost) -> None:
    """wg0 routes the site LAN to a router that never answers: packets vanish."""
    from tests.infra.droplet_host import wg_keypair

    server_private, _ = wg_keypair()
    _, router_public = wg_keypair()
    droplet_host.bring_up_wg0(
        f"[Interface]\nPrivateKey = {server_private}\nAddress = 10.8.0.1/24\n"
        f"ListenPort = 51820\n\n[Peer]\nPublicKey = {router_public}\n"
        "AllowedIPs = 10.8.0.2/32, 192.168.1.0/24\n")
    droplet_host.run("ip route add 192.168.1.0/24 dev wg0", check=True)
    lan = CameraTarget("porch", "192.168.1.64", 80, password=PASSWORD, connect_timeout=2.0)
    began = time.monotonic()
    async with droplet_session(droplet_host) as conn, camera_client(lan, ssh=conn) as client:
        with pytest.raises(TunnelUnreachable, match="within 2 s: the tunnel to the router"):
            await client.snapshot()
    assert time.monotonic() - began < ANSWER_WITHIN


# -- ISAPI parsing and the JPEG check ------------------------------------------------------------


def test_xml_with_a_doctype_is_refused() -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><DeviceInfo>&b;</DeviceInfo>')
    with pytest.raises(IsapiParseError, match="document type"):
        parse_xml(bomb)
    external = b'<!DOCTYPE d SYSTEM "http://example.invalid/x.dtd"><DeviceInfo/>'
    with pytest.raises(IsapiParseError, match="document type"):
        parse_xml(external)
    with pytest.raises(IsapiParseError, match="lacks serialNumber"):
        parse_device_info(b"<DeviceInfo><model>M</model><firmwareVersion>F</firmwareVersion>"
                          b"</DeviceInfo>")
    with pytest.raises(IsapiParseError, match="expected <DeviceInfo>"):
        parse_device_info(b"<html><body>login</body></html>")


def test_user_check_and_jpeg_markers() -> None:
    check = parse_user_check(b"<userCheck><statusValue>401</statusValue><lockStatus>unlock"
                             b"</lockStatus><unlockTime>0</unlockTime><retryLoginTime>2"
                             b"</retryLoginTime></userCheck>")
    assert check is not None and check.attempts_left == 2 and check.locked_minutes is None
    assert parse_user_check(b"<html>401</html>") is None
    assert jpeg_problem(b"\xff\xd8\xff\xe0" + b"x" * 10 + b"\xff\xd9") is None
    assert jpeg_problem(b"\xff\xd8\xff\xe0" + b"x" * 10 + b"\xff\xd9\0\0") is None
    assert "cut short" in (jpeg_problem(b"\xff\xd8\xff\xe0" + b"x" * 10) or "")
    assert "not a JPEG" in (jpeg_problem(b"<html>") or "")
