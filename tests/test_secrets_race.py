"""Rows several processes may create at once are created race-free.

Every racer has its own engine and session factory, as a separate process would; the racers run
in their own threads (each with its own event loop, so they really run at the same time), and
two tests start real OS processes. The database is the one the ``database_url`` fixture picks:
SQLite by default, PostgreSQL when CAMREACH_TEST_POSTGRES_URL is set.

To make the race certain rather than likely, the value factories sleep: every racer has seen
"no such secret" before any of them writes one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.adapters.digitalocean import (
    DigitalOceanClient,
    KeyInfo,
    RequestRejected,
    ssh_fingerprint,
)
from bot.adapters.ssh import generate_client_key
from bot.crypto import SecretBox
from bot.db.engine import make_engine, upgrade
from bot.db.models import Secret, Site, VpnPeer
from bot.services import identity, vpn_keys
from bot.services.secrets import SecretStore
from bot.services.sites import apply_site
from bot.site import SiteSpec, parse_site
from bot.wgkeys import generate_private_key
from tests.fakes.digitalocean_api import FakeDigitalOcean

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")

RACERS = 8
WINDOW = 0.3  # seconds every factory sleeps between "missing" and the insert


@pytest.fixture
async def url(database_url: str) -> str:
    await upgrade(database_url)
    return database_url


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


def slowly(value: Callable[[], str]) -> Callable[[], str]:
    def make() -> str:
        time.sleep(WINDOW)  # blocks only this racer's own event loop
        return value()

    return make


def race(
    count: int, racer: Callable[[int, threading.Barrier], Coroutine[Any, Any, T]]
) -> list[T]:
    """Run ``racer(i, barrier)`` in ``count`` threads, each on its own event loop."""
    barrier = threading.Barrier(count, timeout=30)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = asyncio.run(racer(i, barrier))
        except BaseException as exc:  # reported below, with the traceback
            barrier.abort()
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"racer-{i}") for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    assert len(results) == count
    return [results[i] for i in range(count)]


class Racer:
    """One "process": its own engine, session factory and secret store."""

    def __init__(self, url: str, key: str) -> None:
        self.engine = make_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.store = SecretStore(self.sessions, SecretBox(key))

    async def warm_up(self) -> None:
        """Open the connection before the start line, so connecting does not stagger racers."""
        await self.store.get("warm-up")

    async def close(self) -> None:
        await self.engine.dispose()


async def secret_rows(url: str, key: str, name: str) -> list[str]:
    racer = Racer(url, key)
    try:
        async with racer.sessions() as s:
            rows = (await s.execute(select(Secret.ciphertext).where(Secret.name == name))).all()
        return [racer.store.box.decrypt(r[0]) for r in rows]
    finally:
        await racer.close()


# ------------------------------------------------------------------ get_or_create, threads


async def test_concurrent_get_or_create_returns_one_value(url: str, key: str) -> None:
    made: list[str] = []

    async def racer(i: int, barrier: threading.Barrier) -> str:
        r = Racer(url, key)
        try:
            await r.warm_up()
            barrier.wait()

            def value() -> str:
                made.append(f"value-{i}")
                return f"value-{i}"

            return await r.store.get_or_create("shared", slowly(value))
        finally:
            await r.close()

    results = await asyncio.to_thread(race, RACERS, racer)
    assert len(made) > 1, "the racers did not race (the test proves nothing)"
    assert len(set(results)) == 1, results
    assert await secret_rows(url, key, "shared") == [results[0]]

    # Once it exists the factory is not called at all.
    r = Racer(url, key)
    try:
        assert await r.store.get_or_create("shared", lambda: pytest.fail("called")) == results[0]
    finally:
        await r.close()


async def test_concurrent_put_is_an_upsert(url: str, key: str) -> None:
    names = [f"put-{n}" for n in range(5)]

    async def racer(i: int, barrier: threading.Barrier) -> None:
        r = Racer(url, key)
        try:
            await r.warm_up()
            barrier.wait()
            for name in names:
                await r.store.put(name, f"{name}-by-{i}")
        finally:
            await r.close()

    await asyncio.to_thread(race, RACERS, racer)
    for name in names:
        rows = await secret_rows(url, key, name)
        assert len(rows) == 1 and rows[0] in {f"{name}-by-{i}" for i in range(RACERS)}, rows

    r = Racer(url, key)
    try:
        await r.store.put(names[0], "overwritten")
        assert await r.store.get(names[0]) == "overwritten"
        async with r.sessions() as s:
            row = (await s.execute(select(Secret).where(Secret.name == names[0]))).scalar_one()
        assert row.updated_at >= row.created_at
    finally:
        await r.close()


# ------------------------------------------------------------------ camreach's SSH key


async def register(r: Racer, endpoint: str, token: str) -> tuple[str, KeyInfo]:
    private = await identity.client_key(r.store)
    public = identity.client_public_key(private)
    do = DigitalOceanClient(token, endpoint=endpoint, backoff=0.01, request_timeout=10)
    return public, await do.ensure_ssh_key("camreach", public)


async def test_concurrent_client_key_one_key_one_registration(
    url: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def generate() -> str:
        made.append("key")
        return generate_client_key()

    monkeypatch.setattr("bot.services.identity.generate_client_key", slowly(generate))

    async with FakeDigitalOcean() as fake:
        # Every racer's key list is answered empty, so every racer POSTs the key: all but one
        # get DigitalOcean's 422 "SSH Key is already in use on your account".
        fake.delay_next("GET", "/v2/account/keys", 1.0, count=RACERS, after=True)

        async def racer(i: int, barrier: threading.Barrier) -> tuple[str, KeyInfo]:
            r = Racer(url, key)
            try:
                await r.warm_up()
                barrier.wait()
                return await register(r, fake.endpoint, fake.token)
            finally:
                await r.close()

        results = await asyncio.to_thread(race, RACERS, racer)

        assert len(made) > 1, "the racers did not race (the test proves nothing)"
        publics = {public for public, _ in results}
        assert len(publics) == 1, publics
        assert len({info for _, info in results}) == 1, results
        assert len(await secret_rows(url, key, identity.SSH_KEY_SECRET)) == 1
        assert len(fake.keys) == 1
        assert results[0][1].id == fake.keys[0].id
        assert fake.keys[0].fingerprint == ssh_fingerprint(publics.pop())
        posts = [q for q in fake.requests if q.method == "POST" and q.path.startswith(
            "/v2/account/keys")]
        assert len(posts) == RACERS and sorted(q.status or 0 for q in posts) == [201] + [422] * (
            RACERS - 1), [q.status for q in posts]


async def test_concurrent_ensure_ssh_key_on_one_account() -> None:
    """The adapter alone: the 422 of the racer that lost is answered by a fingerprint lookup."""
    from tests.test_digitalocean_adapter import openssh_key

    public = openssh_key()
    async with FakeDigitalOcean() as fake:
        fake.delay_next("GET", "/v2/account/keys", 0.5, count=2, after=True)
        clients = [DigitalOceanClient(fake.token, endpoint=fake.endpoint) for _ in range(2)]
        a, b = await asyncio.gather(*(c.ensure_ssh_key("camreach", public) for c in clients))
        assert a == b and len(fake.keys) == 1 and a.id == fake.keys[0].id
        assert sorted(q.status or 0 for q in fake.requests
                      if q.method == "POST" and q.path.startswith("/v2/account/keys")) == [201, 422]
        assert fake.count("GET", f"/v2/account/keys/{a.fingerprint}") == 1  # the loser's lookup

        # A 422 for anything else is still the caller's error.
        with pytest.raises(RequestRejected, match="Name can't be blank"):
            await clients[0].ensure_ssh_key("", openssh_key())


# ------------------------------------------------------------------ WireGuard keys of a site


def spec() -> SiteSpec:
    return parse_site({"name": "farm", "droplet": {"region": "fra1", "size": "s-1vcpu-1gb"},
                       "router": {"password_env": "ROUTER_PASSWORD"}})


async def test_concurrent_site_keys_one_identity(
    url: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def generate() -> str:
        made.append("key")
        return generate_private_key()

    monkeypatch.setattr("bot.services.vpn_keys.generate_private_key", slowly(generate))
    setup = Racer(url, key)
    try:
        await apply_site(setup.sessions, spec())
    finally:
        await setup.close()

    async def racer(i: int, barrier: threading.Barrier) -> tuple[str, str, str, str]:
        r = Racer(url, key)
        try:
            await r.warm_up()
            barrier.wait()
            async with r.sessions.begin() as s:
                site = (await s.execute(select(Site).where(Site.name == "farm"))).scalar_one()
                (server, server_key), (router, router_key) = await vpn_keys.ensure_site_keys(
                    s, r.store.box, site, spec())
                return server.public_key, server_key, router.public_key, router_key
        finally:
            await r.close()

    results = await asyncio.to_thread(race, 4, racer)
    assert len(made) > 2, "the racers did not race (the test proves nothing)"
    assert len(set(results)) == 1, results
    check = Racer(url, key)
    try:
        async with check.sessions() as s:
            peers = (await s.execute(select(VpnPeer))).scalars().all()
            secrets = (await s.execute(select(func.count()).select_from(Secret))).scalar_one()
    finally:
        await check.close()
    assert sorted((p.name, p.public_key) for p in peers) == sorted(
        [("server", results[0][0]), ("router", results[0][2])])
    assert secrets == 2


# ------------------------------------------------------------------ real OS processes

CHILD = r"""
import asyncio, json, os, sys, time
from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.adapters.digitalocean import DigitalOceanClient
from bot.crypto import SecretBox
from bot.db.engine import make_engine
from bot.services import identity
from bot.services.secrets import SecretStore

mode, url, key, name, start = sys.argv[1:6]
WINDOW = float(os.environ["RACE_WINDOW"])


def slowly(make):
    def slow():
        time.sleep(WINDOW)
        return make()
    return slow


async def main():
    engine = make_engine(url)
    try:
        store = SecretStore(async_sessionmaker(engine, expire_on_commit=False), SecretBox(key))
        await store.get("warm-up")
        Path(start + f".ready-{os.getpid()}").touch()
        while not Path(start).exists():
            await asyncio.sleep(0.005)
        if mode == "secret":
            value = await store.get_or_create(name, slowly(lambda: f"value-{os.getpid()}"))
            return {"value": value}
        identity.generate_client_key = slowly(identity.generate_client_key)
        private = await identity.client_key(store)
        public = identity.client_public_key(private)
        # The endpoint comes from DIGITALOCEAN_END_POINT, as in production.
        info = await DigitalOceanClient(os.environ["DO_TOKEN"]).ensure_ssh_key("camreach", public)
        return {"value": public, "id": info.id, "fingerprint": info.fingerprint}
    finally:
        await engine.dispose()


print(json.dumps(asyncio.run(main())))
"""


@pytest.fixture
def child_env() -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMREACH_", "DIGITALOCEAN"))}
    env["RACE_WINDOW"] = str(WINDOW)
    env["PYTHONPATH"] = str(ROOT)
    yield env


async def in_processes(count: int, args: list[str], env: dict[str, str],
                       tmp_path: Path) -> list[dict[str, Any]]:
    start = tmp_path / "start"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, *args, str(start), cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(count)
    ]
    outputs = [asyncio.ensure_future(p.communicate()) for p in procs]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("start.ready-*"))) < count:
        done = [o for o in outputs if o.done()]
        if done:  # a child died before the start line
            out, err = done[0].result()
            pytest.fail(f"child failed early:\n{err.decode()}")
        assert time.monotonic() < deadline, "children did not get ready"
        await asyncio.sleep(0.01)
    start.touch()
    results = []
    for p, o in zip(procs, outputs, strict=True):
        out, err = await asyncio.wait_for(o, 60)
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


async def test_two_processes_get_or_create(
    url: str, key: str, child_env: dict[str, str], tmp_path: Path
) -> None:
    results = await in_processes(2, ["secret", url, key, "shared"], child_env, tmp_path)
    values = {r["value"] for r in results}
    assert len(values) == 1, results
    assert await secret_rows(url, key, "shared") == [values.pop()]


async def test_two_processes_register_one_ssh_key(
    url: str, key: str, child_env: dict[str, str], tmp_path: Path
) -> None:
    async with FakeDigitalOcean() as fake:
        # Both children's key lists are answered empty: both POST, one gets the 422.
        fake.delay_next("GET", "/v2/account/keys", 2.0, count=2, after=True)
        env = {**child_env, "DIGITALOCEAN_END_POINT": fake.endpoint, "DO_TOKEN": fake.token}
        results = await in_processes(2, ["ssh-key", url, key, "-"], env, tmp_path)
        assert len({r["value"] for r in results}) == 1, results
        assert len({r["id"] for r in results}) == 1, results
        assert len(await secret_rows(url, key, identity.SSH_KEY_SECRET)) == 1
        assert len(fake.keys) == 1 and fake.keys[0].id == results[0]["id"]
        assert sorted(q.status or 0 for q in fake.requests
                      if q.method == "POST" and q.path.startswith("/v2/account/keys")) == [201, 422]
