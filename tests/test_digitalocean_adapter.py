"""bot.adapters.digitalocean through the real python-digitalocean against the fake DO API."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import digitalocean
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bot.adapters.digitalocean import (
    AUTH_REJECTED_MESSAGE,
    DigitalOceanClient,
    DropletNotReady,
    RateLimited,
    RequestRejected,
    ServerError,
    resolve_end_point,
    ssh_fingerprint,
)
from bot.errors import (
    AuthRejected,
    CamreachError,
    NotFound,
    OperatorError,
    TransientError,
    Unreachable,
    ValidationFailed,
)
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.fakes.digitalocean_api import ssh_fingerprint as fake_fingerprint

WG_SECRET = "wg-private-key-c2VjcmV0IHNlY3JldCBzZWNyZXQ="
USER_DATA = (
    f"#cloud-config\nwrite_files:\n- path: /etc/wireguard/wg0.conf\n  content: {WG_SECRET}\n"
)


def openssh_key() -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode() + " camreach@test"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDigitalOcean]:
    async with FakeDigitalOcean(public_ipv4="127.0.0.1") as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(
    fake: FakeDigitalOcean, sleeps: list[float]
) -> Callable[..., DigitalOceanClient]:
    async def recording_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    def make(**overrides: Any) -> DigitalOceanClient:
        options: dict[str, Any] = {
            "endpoint": fake.endpoint, "backoff": 0.01, "max_backoff": 0.05,
            "request_timeout": 2.0, "poll_interval": 0.01, "max_poll_interval": 0.02,
            "sleep": recording_sleep,
        }
        options.update(overrides)
        token = options.pop("token", fake.token)
        return DigitalOceanClient(token, **options)

    return make


@pytest.fixture
def client(make_client: Callable[..., DigitalOceanClient]) -> DigitalOceanClient:
    return make_client()


async def create(client: DigitalOceanClient, name: str = "cam-site-a", **kw: Any) -> Any:
    args: dict[str, Any] = {"region": "fra1", "size": "s-1vcpu-512mb-10gb",
                            "image": "ubuntu-24-04-x64", "ssh_key_ids": [],
                            "tags": ["camreach", "site-a"], "user_data": USER_DATA}
    args.update(kw)
    return await client.create_droplet(name, **args)


# ----------------------------------------------------------------------------- happy paths


async def test_token_is_checked_before_anything_else(
    client: DigitalOceanClient, fake: FakeDigitalOcean
) -> None:
    regions = await client.list_regions()
    assert [(r.method, r.path) for r in fake.requests[:2]] == [
        ("GET", "/v2/account/"), ("GET", "/v2/regions/")]
    assert {r.slug for r in regions} >= {"blr1", "fra1", "nyc1", "sfo1"}
    account = await client.check_token()
    assert account.email == "ops@example.com" and account.status == "active"
    assert account.droplet_limit == 25


async def test_catalogue(client: DigitalOceanClient) -> None:
    regions = {r.slug: r for r in await client.list_regions()}
    assert not regions["sfo1"].available
    sizes = {s.slug: s for s in await client.list_sizes()}
    assert sizes["s-1vcpu-1gb"].price_monthly == 6.0
    assert sizes["s-1vcpu-512mb-10gb"].memory_mb == 512

    small = [r.slug for r in await client.available_regions_for("s-1vcpu-512mb-10gb")]
    assert small == ["ams3", "fra1", "nyc1", "sgp1"]  # not blr1 (no such size), not sfo1 (closed)
    assert (await client.smallest_size()).slug == "s-1vcpu-512mb-10gb"
    assert (await client.smallest_size("blr1")).slug == "s-1vcpu-1gb"
    assert await client.monthly_price("s-1vcpu-512mb-10gb") == 4.0
    with pytest.raises(NotFound):
        await client.monthly_price("s-64vcpu-1tb")
    # 25.04 is newer but not LTS.
    assert (await client.default_image()).slug == "ubuntu-24-04-x64"


async def test_droplet_goes_new_to_active(client: DigitalOceanClient,
                                          fake: FakeDigitalOcean) -> None:
    fake.public_ipv4 = "127.0.0.1"  # where a test's SSH stand-in would listen
    key = await client.ensure_ssh_key("camreach", openssh_key())
    droplet = await create(client, ssh_key_ids=[key.id])
    assert droplet.status == "new" and droplet.public_ipv4 is None
    assert (droplet.region, droplet.size, droplet.price_monthly) == (
        "fra1", "s-1vcpu-512mb-10gb", 4.0)
    stored = fake.droplets[droplet.id]
    assert stored.tags == ["camreach", "site-a"]
    assert stored.ssh_keys == [key.id]
    assert stored.user_data == USER_DATA

    progress: list[str] = []

    async def on_progress(line: str) -> None:
        progress.append(line)

    active = await client.wait_active(droplet.id, on_progress, timeout=10)
    assert active.status == "active" and active.public_ipv4 == "127.0.0.1"
    assert active.tags == ("camreach", "site-a") and active.image == "ubuntu-24-04-x64"
    assert any("starting" in line for line in progress)
    assert progress[-1] == "Droplet cam-site-a is active at 127.0.0.1."

    await client.destroy_droplet(droplet.id)
    assert droplet.id not in fake.droplets


async def test_find_droplets_by_tag_follows_pagination(client: DigitalOceanClient,
                                                       fake: FakeDigitalOcean) -> None:
    fake.max_per_page = 2
    for i in range(5):
        fake.add_droplet(f"cam-{i}", tags=["camreach", "site-a"])
    fake.add_droplet("other", tags=["camreach", "site-b"])
    found = await client.find_droplets_by_tag("site-a")
    assert sorted(d.name for d in found) == [f"cam-{i}" for i in range(5)]
    assert all(d.status == "active" and d.public_ipv4 == "127.0.0.1" for d in found)
    pages = [r.query.get("page") for r in fake.requests if r.path.startswith("/v2/droplets")]
    assert pages == [None, "2", "3"]
    assert await client.find_droplets_by_tag("site-zzz") == []
    with pytest.raises(ValidationFailed):
        await client.find_droplets_by_tag("bad tag!")


async def test_ssh_key_is_reused_by_fingerprint(client: DigitalOceanClient,
                                                fake: FakeDigitalOcean) -> None:
    public = openssh_key()
    assert ssh_fingerprint(public) == fake_fingerprint(public)
    first = await client.ensure_ssh_key("camreach", public)
    again = await client.ensure_ssh_key("another name", public + "\n")
    assert again == first
    assert len(fake.keys) == 1 and fake.count("POST", "/v2/account/keys") == 1
    assert first.fingerprint == fake.keys[0].fingerprint

    # A key registered by hand (other name, other comment) is found too; nothing is posted.
    other = openssh_key()
    seeded = fake.add_key("laptop", other.rsplit(" ", 1)[0] + " someone@laptop")
    assert (await client.ensure_ssh_key("camreach-2", other)).id == seeded.id
    assert fake.count("POST", "/v2/account/keys") == 1

    with pytest.raises(ValidationFailed):
        await client.ensure_ssh_key("x", "ssh-ed25519 not-base64!")


# ----------------------------------------------------------------------------- errors


async def test_wrong_token_is_auth_rejected(make_client: Callable[..., DigitalOceanClient],
                                            fake: FakeDigitalOcean) -> None:
    client = make_client(token="dop_v1_" + "ab" * 32)
    with pytest.raises(AuthRejected) as caught:
        await create(client)
    assert caught.value.user_message == AUTH_REJECTED_MESSAGE
    assert caught.value.__cause__ is not None  # the library's error, chained
    assert fake.count("POST") == 0  # stopped at the token check
    assert fake.requests[-1].status == 401


async def test_malformed_token_is_rejected_without_a_request() -> None:
    with pytest.raises(AuthRejected) as caught:
        DigitalOceanClient("dop_v1_abc def\n\x00")
    assert "abc" not in str(caught.value)


async def test_401_midway(client: DigitalOceanClient, fake: FakeDigitalOcean) -> None:
    await client.check_token()
    fake.fail_next("GET", "/v2/sizes", 401)
    with pytest.raises(AuthRejected):
        await client.list_sizes()
    assert fake.count("GET", "/v2/sizes") == 1  # never retried


async def test_403_is_an_operator_error(client: DigitalOceanClient,
                                        fake: FakeDigitalOcean) -> None:
    fake.fail_next("POST", "/v2/droplets", 403)
    with pytest.raises(OperatorError) as caught:
        await create(client)
    assert not isinstance(caught.value, AuthRejected)
    assert "read+write" in caught.value.user_message
    assert fake.count("POST", "/v2/droplets") == 1 and not fake.droplets


async def test_404(client: DigitalOceanClient, fake: FakeDigitalOcean) -> None:
    with pytest.raises(NotFound) as caught:
        await client.get_droplet(123)
    assert "droplet 123" in caught.value.user_message
    with pytest.raises(NotFound):
        await client.destroy_droplet(123)
    await client.destroy_droplet(123, missing_ok=True)


async def test_422_says_what_do_objected_to(client: DigitalOceanClient,
                                            fake: FakeDigitalOcean) -> None:
    with pytest.raises(RequestRejected) as caught:
        await create(client, region="blr1", size="s-1vcpu-512mb-10gb")
    err = caught.value
    assert isinstance(err, ValidationFailed)
    assert err.do_message == "Size is not available in this region."
    assert set(err.fields) == {"region", "size"}
    assert "Size is not available in this region." in err.user_message
    assert "region=blr1" in err.user_message and "size=s-1vcpu-512mb-10gb" in err.user_message
    assert "Regions that offer s-1vcpu-512mb-10gb: ams3, fra1, nyc1, sgp1." in err.user_message
    assert not fake.droplets

    with pytest.raises(RequestRejected) as caught:
        await create(client, image="windows-11")
    assert caught.value.fields == ("image",)
    assert "invalid image" in caught.value.user_message


async def test_429_waits_for_the_reset_then_succeeds(client: DigitalOceanClient,
                                                     fake: FakeDigitalOcean,
                                                     sleeps: list[float]) -> None:
    await client.check_token()
    fake.fail_next("GET", "/v2/regions", 429,
                   headers={"retry-after": "2", "ratelimit-reset": str(int(time.time()) + 2)})
    assert await client.list_regions()
    assert fake.count("GET", "/v2/regions") == 2
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 3.0  # honoured, not the 0.01 s back-off


async def test_429_too_far_off_is_raised_not_slept(client: DigitalOceanClient,
                                                   fake: FakeDigitalOcean,
                                                   sleeps: list[float]) -> None:
    await client.check_token()
    fake.fail_next("GET", "/v2/regions", 429,
                   headers={"retry-after": "3600",
                            "ratelimit-reset": str(int(time.time()) + 3600)})
    with pytest.raises(RateLimited) as caught:
        await client.list_regions()
    assert isinstance(caught.value, TransientError)
    assert caught.value.retry_after > 3000 and sleeps == []


async def test_500_is_retried_with_backoff(client: DigitalOceanClient, fake: FakeDigitalOcean,
                                           sleeps: list[float]) -> None:
    await client.check_token()
    fake.fail_next("GET", "/v2/sizes", 500, count=2)
    assert await client.list_sizes()
    assert fake.count("GET", "/v2/sizes") == 3
    assert sleeps == [0.01, 0.02]


async def test_500_forever_is_a_transient_error(make_client: Callable[..., DigitalOceanClient],
                                                fake: FakeDigitalOcean,
                                                sleeps: list[float]) -> None:
    client = make_client(max_retries=3)
    await client.check_token()
    # DO-unlike bodies too: python-digitalocean raises IndexError on a body without "id".
    fake.fail_next("GET", "/v2/sizes", 500, body={"message": "boom"}, count=2)
    fake.fail_next("GET", "/v2/sizes", 502, body="<html>Bad Gateway</html>", count=100)
    with pytest.raises(ServerError) as caught:
        await client.list_sizes()
    assert isinstance(caught.value, TransientError)
    assert fake.count("GET", "/v2/sizes") == 4
    assert sleeps == [0.01, 0.02, 0.04]


async def test_500_on_create_does_not_duplicate(client: DigitalOceanClient,
                                                fake: FakeDigitalOcean) -> None:
    fake.fail_next("POST", "/v2/droplets", 500)
    droplet = await create(client)
    assert list(fake.droplets) == [droplet.id]
    assert fake.count("POST", "/v2/droplets") == 2


async def test_lost_create_response_does_not_duplicate(
    make_client: Callable[..., DigitalOceanClient], fake: FakeDigitalOcean
) -> None:
    client = make_client(request_timeout=0.3)
    await client.check_token()
    # DO creates the droplet but the answer never arrives in time.
    fake.delay_next("POST", "/v2/droplets", 2.0, after=True)
    droplet = await create(client)
    assert list(fake.droplets) == [droplet.id]
    assert fake.count("POST", "/v2/droplets") == 1  # found by tag+name instead of re-posting


async def test_timeouts_forever_are_unreachable(make_client: Callable[..., DigitalOceanClient],
                                                fake: FakeDigitalOcean) -> None:
    client = make_client(request_timeout=0.2, max_retries=1)
    await client.check_token()
    fake.delay_next("GET", "/v2/regions", 2.0, count=5)
    with pytest.raises(Unreachable) as caught:
        await client.list_regions()
    assert "did not answer in time" in caught.value.user_message
    assert fake.count("GET", "/v2/regions") == 2


async def test_connection_refused_is_unreachable(sleeps: list[float]) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = DigitalOceanClient("dop_v1_" + "cd" * 32, endpoint=f"http://127.0.0.1:{port}/v2",
                                max_retries=2, backoff=0.01, sleep=no_sleep)
    with pytest.raises(Unreachable):
        await client.check_token()
    assert len(sleeps) == 2


async def test_stuck_in_new_raises(make_client: Callable[..., DigitalOceanClient],
                                   fake: FakeDigitalOcean) -> None:
    client = make_client(sleep=asyncio.sleep)  # real (tiny) polling delays against the clock
    fake.stuck_in_new = True
    droplet = await create(client)
    started = time.monotonic()
    with pytest.raises(DropletNotReady) as caught:
        await client.wait_active(droplet.id, timeout=0.3)
    assert isinstance(caught.value, TransientError)
    assert "still 'new'" in caught.value.user_message
    assert time.monotonic() - started < 3


async def test_account_locked(client: DigitalOceanClient, fake: FakeDigitalOcean) -> None:
    fake.account["status"] = "locked"
    fake.account["status_message"] = "billing"
    with pytest.raises(OperatorError, match="locked"):
        await client.list_regions()


# ----------------------------------------------------------------------------- secrecy, loop


async def test_token_never_appears_in_logs_or_errors(
    make_client: Callable[..., DigitalOceanClient], fake: FakeDigitalOcean,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_token = "dop_v1_" + "9f" * 32
    errors: list[BaseException] = []
    clients = [make_client(), make_client(token=wrong_token)]

    async def attempt(call: Any) -> None:
        try:
            await call
        except CamreachError as exc:
            errors.append(exc)

    good, bad = clients
    await attempt(bad.list_regions())
    fake.fail_next("GET", "/v2/sizes", 401)
    await attempt(good.list_sizes())
    await attempt(create(good, region="blr1"))
    fake.fail_next("*", "/v2/droplets", 500, count=100)
    await attempt(create(good))
    fake.clear_faults()
    key = await good.ensure_ssh_key("camreach", openssh_key())
    droplet = await create(good, ssh_key_ids=[key.id])
    await good.wait_active(droplet.id, timeout=10)
    assert len(errors) == 4

    texts = [caplog.text, *(repr(c) for c in clients)]
    for exc in errors:
        assert isinstance(exc, CamreachError)
        texts += [str(exc), repr(exc), exc.user_message, exc.detail or ""]
        assert "Bearer" not in str(exc) + (exc.detail or "")
        texts.append("".join(traceback.format_exception(exc)))  # whole cause chain
    for text in texts:
        assert fake.token not in text and wrong_token not in text
    assert "Bearer" not in caplog.text
    assert WG_SECRET not in caplog.text  # user_data stays out of the library's DEBUG line
    library_lines = [r.getMessage() for r in caplog.records if r.name == "digitalocean"]
    assert library_lines and all("withheld" in line for line in library_lines)
    assert any(line.startswith("POST ") for line in library_lines)


async def test_library_calls_run_off_the_event_loop(
    make_client: Callable[..., DigitalOceanClient], fake: FakeDigitalOcean,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="digitalocean")
    client = make_client()
    await client.check_token()
    fake.delay_next("GET", "/v2/regions", 0.5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await client.list_regions()
    finally:
        task.cancel()
    assert ticks >= 20  # the loop kept running (and served the fake) during the slow call
    threads = {r.threadName for r in caplog.records if r.name == "digitalocean"}
    assert threads and "MainThread" not in threads


# ----------------------------------------------------------------------------- endpoint


def test_resolve_end_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGITALOCEAN_END_POINT", raising=False)
    assert resolve_end_point() == "https://api.digitalocean.com/v2/"
    assert resolve_end_point("http://127.0.0.1:8080/v2") == "http://127.0.0.1:8080/v2/"
    assert resolve_end_point("http://127.0.0.1:8080") == "http://127.0.0.1:8080/v2/"
    monkeypatch.setenv("DIGITALOCEAN_END_POINT", "http://10.0.0.1/v2/")
    assert resolve_end_point() == "http://10.0.0.1/v2/"
    assert resolve_end_point("https://other/v2/") == "https://other/v2/"
    with pytest.raises(CamreachError):
        resolve_end_point("ftp://nope")


async def test_endpoint_from_environment(fake: FakeDigitalOcean,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITALOCEAN_END_POINT", fake.endpoint.rstrip("/"))
    client = DigitalOceanClient(fake.token)
    assert client.end_point == fake.endpoint
    assert (await client.check_token()).email == "ops@example.com"


def test_fake_serves_the_sync_library_from_a_thread() -> None:
    # The synchronous form; also pins the library quirk that objects it builds itself
    # (Manager.get_account -> Account) ignore end_point= and read DIGITALOCEAN_END_POINT.
    with FakeDigitalOcean() as fake:
        manager = digitalocean.Manager(token=fake.token, end_point=fake.endpoint)
        assert [s.slug for s in manager.get_all_sizes()][:2] == [
            "s-1vcpu-512mb-10gb", "s-1vcpu-1gb"]
        with fake.set_env():
            assert digitalocean.Manager(token=fake.token).get_account().email == "ops@example.com"
        fake.fail_next("GET", "/v2/account", 401)
        with fake.set_env(), pytest.raises(digitalocean.DataReadError,
                                           match="Unable to authenticate you"):
            digitalocean.Account(token=fake.token).load()
        assert fake.count("GET", "/v2/account") == 2
