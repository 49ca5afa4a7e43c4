"""Readable apply diffs, and confirmations read from stdin (typed, piped, or ended), end to end.

Every command runs as a real subprocess with a timeout, so a prompt that hangs fails the test;
what a refusal left behind is checked in the database, the fake DigitalOcean or the router.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot.core import Core
from bot.db.models import Droplet, PeerKind, Site, VpnPeer
from bot.render.spec_diff import spec_diff
from bot.services.audit import Actor
from bot.services.vpn_keys import ensure_site_keys
from bot.settings import Settings
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.infra.openwrt_router import OpenWrtRouter

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "site.yaml"
EXE = shutil.which("camreach", path=str(Path(sys.executable).parent)) or "camreach"
TIMEOUT = 60  # seconds; a command waiting for an answer that never comes fails the test
NO_ANSWER_EXIT, REFUSED_EXIT = 2, 1
LONG_APN = "internet." + "very-long-operator-name." * 3 + "example.com"  # 91 characters


def camreach(env: dict[str, str], *args: str,
             answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command with ``answer`` piped on stdin, or with ``< /dev/null`` when None."""
    if answer is None:
        with open(os.devnull) as null:
            return subprocess.run([EXE, *args], env=env, stdin=null, capture_output=True,
                                  text=True, timeout=TIMEOUT)
    return subprocess.run([EXE, *args], env=env, input=answer, capture_output=True, text=True,
                          timeout=TIMEOUT)


def no_answer(res: subprocess.CompletedProcess[str], flag: str = "--yes") -> None:
    assert res.returncode == NO_ANSWER_EXIT, (res.stdout, res.stderr)
    assert "No answer on standard input" in res.stderr
    assert f"Add {flag} to run without asking." in res.stderr
    assert "Aborted!" not in res.stderr and "Traceback" not in res.stderr


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    shutil.copy(EXAMPLE, path)
    return path


def edit(path: Path, fn: Callable[[dict[str, Any]], object]) -> None:
    doc = yaml.safe_load(path.read_text())
    fn(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def db(settings: Settings, fn: Callable[[Core], Any]) -> Any:
    """Run ``fn(core)`` (a coroutine function) against the test database, outside the CLI."""

    async def go() -> Any:
        core = await Core.open(settings)
        try:
            return await fn(core)
        finally:
            await core.close()

    return asyncio.run(go())


def stored_spec(settings: Settings) -> dict[str, Any]:
    async def get(core: Core) -> dict[str, Any]:
        return (await core.site_spec("farmhouse")).to_json()

    result: dict[str, Any] = db(settings, get)
    return result


def site_count(settings: Settings) -> int:
    async def count(core: Core) -> int:
        return len(await core.site_names())

    result: int = db(settings, count)
    return result


# -- the diff ---------------------------------------------------------------------------------


def test_dry_run_diff_is_field_by_field(cli_env: dict[str, str], settings: Settings,
                                        site_file: Path) -> None:
    created = camreach(cli_env, "site", "apply", str(site_file), "--dry-run")
    assert created.returncode == 0, created.stderr
    assert "farmhouse: would create" in created.stdout
    assert ("  + cameras.porch: host=192.168.1.64, port=80, user=admin, "
            "password_env=CAM_PASSWORD, kind=hikvision, via=droplet"
            ) in created.stdout.splitlines()
    assert "  vpn.port: (none) → 51820" in created.stdout.splitlines()
    assert camreach(cli_env, "site", "apply", str(site_file)).returncode == 0  # no token: stored

    def change(doc: dict[str, Any]) -> None:
        doc["vpn"]["port"] = 51821
        doc["cameras"][0]["host"] = "192.168.1.65"
        doc["cameras"].append({"name": "back", "host": "192.168.1.70", "port": 8080,
                               "user": "viewer", "kind": "onvif"})
        doc["modem"]["apn"] = LONG_APN

    edit(site_file, change)
    dry = camreach(cli_env, "site", "apply", str(site_file), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "farmhouse: would update",
        "  vpn.port: 51820 → 51821",
        f"  modem.apn: airtelgprs.com → {LONG_APN}",
        "  cameras.porch.host: 192.168.1.64 → 192.168.1.65",
        "  + cameras.back: host=192.168.1.70, port=8080, user=viewer, kind=onvif, via=droplet",
    ]
    assert len(LONG_APN) > 60 and "..." not in dry.stdout
    assert stored_spec(settings)["vpn"]["port"] == 51820  # the dry run changed nothing

    assert camreach(cli_env, "site", "apply", str(site_file)).returncode == 0
    edit(site_file, lambda d: d["cameras"].pop(0))
    dry = camreach(cli_env, "site", "apply", str(site_file), "--dry-run")
    assert dry.stdout.splitlines() == [
        "farmhouse: would update",
        "  - cameras.porch: host=192.168.1.65, port=80, user=admin, password_env=CAM_PASSWORD,"
        " kind=hikvision, via=droplet",
    ]
    assert [c["name"] for c in stored_spec(settings)["cameras"]] == ["porch", "back"]


def test_diff_values_read_like_yaml_and_secrets_stay_hidden() -> None:
    old = {"a": {"on": True, "note": None, "s": "true", "tags": ["x"]},
           "items": [{"k": 1}], "router": {"password_env": "OLD", "api_token": "s3cret-1"}}
    new = {"a": {"on": False, "note": "two words, here", "s": "", "tags": ["x", "y"]},
           "items": [{"k": 2}, {"k": 3, "key": "s3cret-2"}],
           "router": {"password_env": "NEW", "api_token": "s3cret-3"}}
    assert spec_diff(old, new) == [
        "a.on: true → false",
        'a.note: (none) → "two words, here"',
        'a.s: "true" → ""',
        "a.tags: [x] → [x, y]",
        "items.0.k: 1 → 2",
        "+ items.1: k=3, key=(hidden)",
        "router.password_env: OLD → NEW",
        "router.api_token: changed (hidden)",
    ]
    assert spec_diff(new, new) == []
    named = [{"name": "a", "host": "1"}, {"name": "b", "host": "2"}]
    assert spec_diff({"c": named}, {"c": named[::-1]}) == ["c: order a, b → b, a"]


# -- site apply with a DigitalOcean token -------------------------------------------------------


def test_apply_with_a_token_asks_before_the_droplet(cli_env: dict[str, str],
                                                    settings: Settings,
                                                    site_file: Path) -> None:
    edit(site_file, lambda d: d["droplet"].update(region="fra1"))
    with FakeDigitalOcean() as fake:
        env = dict(cli_env, DIGITALOCEAN_TOKEN=fake.token, DIGITALOCEAN_END_POINT=fake.endpoint)
        started = time.monotonic()
        res = camreach(env, "site", "apply", str(site_file))  # < /dev/null
        no_answer(res)
        assert time.monotonic() - started < TIMEOUT / 2
        assert "farmhouse: would create" in res.stdout and "$4/month" in res.stdout
        assert "create the droplet ($4/month)? [y/N]:" in res.stderr
        assert site_count(settings) == 0  # not even stored
        assert fake.count("POST", "/v2/droplets") == 0 and not fake.droplets

        res = camreach(env, "site", "apply", str(site_file), answer="n\n")
        assert res.returncode == REFUSED_EXIT, res.stderr
        assert "Nothing was changed." in res.stderr
        assert site_count(settings) == 0
        assert fake.count("POST", "/v2/droplets") == 0 and not fake.droplets

        dry = camreach(env, "site", "apply", str(site_file), "--dry-run")  # never asks
        assert dry.returncode == 0 and "[y/N]" not in dry.stderr
        store = camreach(env, "site", "apply", str(site_file), "--store-only")  # nothing remote
        assert store.returncode == 0 and "[y/N]" not in store.stderr
        assert site_count(settings) == 1 and not fake.droplets

        edit(site_file, lambda d: d["vpn"].update(port=51821))
        res = camreach(env, "site", "apply", str(site_file))
        no_answer(res)
        assert "  vpn.port: 51820 → 51821" in res.stdout.splitlines()
        assert stored_spec(settings)["vpn"]["port"] == 51820
        assert fake.count("POST", "/v2/droplets") == 0


# -- peer remove: typed on a terminal, piped, or nothing ---------------------------------------


def add_phone(settings: Settings) -> None:
    async def add(core: Core) -> None:
        async with core.sessions.begin() as s:
            site = (await s.execute(select(Site).where(Site.name == "farmhouse"))).scalar_one()
            s.add(VpnPeer(site_id=site.id, name="anna", kind=PeerKind.PHONE,
                          tunnel_address="10.8.0.3", public_key="A" * 43 + "=",
                          private_key_secret=None))

    db(settings, add)


def peer_names(settings: Settings) -> list[str]:
    async def names(core: Core) -> list[str]:
        async with core.sessions() as s:
            return list((await s.execute(select(VpnPeer.name))).scalars())

    result: list[str] = db(settings, names)
    return result


def test_peer_remove_refusals_change_nothing(cli_env: dict[str, str], settings: Settings,
                                             site_file: Path) -> None:
    assert camreach(cli_env, "site", "apply", str(site_file)).returncode == 0
    add_phone(settings)

    res = camreach(cli_env, "peer", "remove", "farmhouse", "anna")  # < /dev/null
    no_answer(res)
    assert "nothing was removed" in res.stderr
    res = camreach(cli_env, "peer", "remove", "farmhouse", "anna", answer="n\n")
    assert res.returncode == REFUSED_EXIT and "Nothing was removed." in res.stderr
    res = camreach(cli_env, "peer", "remove", "farmhouse", "anna", answer="")  # empty pipe
    no_answer(res)
    res = camreach(cli_env, "peer", "remove", "farmhouse", "anna", answer="maybe\n")
    assert "Please answer y or n." in res.stderr
    no_answer(res)
    assert peer_names(settings) == ["anna"]

    # A yes goes on to the removal, which needs the droplet this site does not have.
    res = camreach(cli_env, "peer", "remove", "farmhouse", "anna", answer="y\n")
    assert res.returncode == 1 and "no droplet" in res.stderr, res.stderr
    assert "[y/N]: y" in res.stderr  # the piped answer is shown after the question
    assert peer_names(settings) == ["anna"]


def answer_when_asked(cmd: list[str], env: dict[str, str], answer: bytes, *,
                      tty: bool) -> tuple[int, str]:
    """Start ``cmd``, wait for its question, then type ``answer`` (on a terminal, or a pipe
    left open until then): the command must wait for it, however long it takes."""
    if tty:
        master, slave = os.openpty()
        proc = subprocess.Popen(cmd, env=env, stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        os.close(slave)
    else:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    err = bytearray()
    assert proc.stderr is not None

    def collect() -> None:
        assert proc.stderr is not None
        while chunk := os.read(proc.stderr.fileno(), 4096):
            err.extend(chunk)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while b"[y/N]: " not in err:
            assert proc.poll() is None, bytes(err)
            assert time.monotonic() < deadline, bytes(err)
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting for the answer
        if tty:
            os.write(master, answer)
        else:
            assert proc.stdin is not None
            proc.stdin.write(answer)
            proc.stdin.flush()
        code = proc.wait(timeout=TIMEOUT)
        reader.join(timeout=TIMEOUT)
        return code, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if tty:
            os.close(master)
        elif proc.stdin is not None:
            proc.stdin.close()
        assert proc.stdout is not None
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "open-pipe"])
def test_peer_remove_waits_for_a_typed_answer(cli_env: dict[str, str], settings: Settings,
                                              site_file: Path, tty: bool) -> None:
    assert camreach(cli_env, "site", "apply", str(site_file)).returncode == 0
    add_phone(settings)
    cmd = [EXE, "peer", "remove", "farmhouse", "anna"]
    code, err = answer_when_asked(cmd, cli_env, b"n\n", tty=tty)
    assert code == REFUSED_EXIT and "Nothing was removed." in err, err
    if tty:  # Ctrl-D on the terminal ends its input: the same refusal as a script's
        code, err = answer_when_asked(cmd, cli_env, b"\x04", tty=True)
        assert code == NO_ANSWER_EXIT and "Add --yes to run without asking." in err, err
    assert peer_names(settings) == ["anna"]


# -- site destroy: the typed name ---------------------------------------------------------------


def test_site_destroy_reads_the_name_from_stdin(cli_env: dict[str, str], settings: Settings,
                                                site_file: Path) -> None:
    assert camreach(cli_env, "site", "apply", str(site_file)).returncode == 0
    with FakeDigitalOcean() as fake:
        seeded = fake.add_droplet("camreach-farmhouse", region="blr1", size="s-1vcpu-1gb",
                                  tags=["camreach"])

        async def record(core: Core) -> None:
            async with core.sessions.begin() as s:
                site = (await s.execute(select(Site))).scalar_one()
                s.add(Droplet(site_id=site.id, do_id=seeded.id, name="camreach-farmhouse",
                              region="blr1", size="s-1vcpu-1gb", image="ubuntu-24-04-x64",
                              status="active", public_ipv4="203.0.113.7", price_monthly=6.0))

        async def droplet_rows(core: Core) -> int:
            async with core.sessions() as s:
                return len((await s.execute(select(Droplet))).scalars().all())

        db(settings, record)
        env = dict(cli_env, DIGITALOCEAN_TOKEN=fake.token, DIGITALOCEAN_END_POINT=fake.endpoint)

        res = camreach(env, "site", "destroy", "farmhouse")  # < /dev/null
        no_answer(res, "--confirm farmhouse")
        assert "nothing was deleted" in res.stderr and "$6/month" in res.stdout
        res = camreach(env, "site", "destroy", "farmhouse", answer="farm\n")
        assert res.returncode == REFUSED_EXIT and "Not confirmed: nothing was deleted" in res.stderr
        assert list(fake.droplets) == [seeded.id] and fake.count("DELETE") == 0
        assert db(settings, droplet_rows) == 1

        res = camreach(env, "site", "destroy", "farmhouse", answer="farmhouse\n")
        assert res.returncode == 0, res.stderr
        assert not fake.droplets and db(settings, droplet_rows) == 0


# -- router push --------------------------------------------------------------------------------


def test_router_push_asks_on_stdin(cli_env: dict[str, str], settings: Settings,
                                   openwrt_router: OpenWrtRouter) -> None:
    from tests.test_router_detect import plant_e3372h_stick
    from tests.test_router_tunnel import ROUTER_PW_ENV, site_spec

    router = openwrt_router
    plant_e3372h_stick(router)
    spec = site_spec(router)

    async def prepare(core: Core) -> None:
        await core.apply_site(spec, Actor.cli())
        async with core.sessions.begin() as s:
            site = (await s.execute(select(Site))).scalar_one()
            s.add(Droplet(site_id=site.id, name="camreach-farm", region="fra1", size="s",
                          image="ubuntu-24-04-x64", status="active",
                          public_ipv4=router.host_addr))
            await ensure_site_keys(s, core.secrets.box, site, spec)

    db(settings, prepare)
    env = dict(cli_env, **{ROUTER_PW_ENV: router.root_password})
    for step in ("connect", "detect"):
        res = camreach(env, "router", step, "farm")
        assert res.returncode == 0, res.stderr
    before = (router.root / "etc/config/network").read_bytes()

    res = camreach(env, "router", "push", "farm", "--confirm-via", "lan")  # < /dev/null
    no_answer(res)
    assert "+ network.wg0" in res.stdout
    res = camreach(env, "router", "push", "farm", "--confirm-via", "lan", answer="no\n")
    assert res.returncode == REFUSED_EXIT and "Nothing was changed." in res.stderr
    assert (router.root / "etc/config/network").read_bytes() == before
    assert not (router.root / "etc/camreach/push").exists()

    res = camreach(env, "router", "push", "farm", "--confirm-via", "lan", answer="y\n")
    assert res.returncode == 0, res.stderr
    assert "Applied and confirmed" in res.stderr
    assert router.run("uci get network.wg0.proto").stdout.strip() == "wireguard"
