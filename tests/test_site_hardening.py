"""Site hardening: address and key-file rules with their field paths, ``*_env`` variables read
from ``.env``, and an apply whose droplet DigitalOcean will not sell stores nothing.

The CLI cases run the real ``camreach`` as a subprocess against the fake DigitalOcean API;
what a refusal left behind is read back from the test database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml
from sqlalchemy import select

from bot.core import Core
from bot.db.models import Droplet, Secret, Site, VpnPeer
from bot.envvars import env_value
from bot.errors import ConfigError, ValidationFailed
from bot.router.access import router_credentials
from bot.router.site_config import modem_secrets
from bot.services.audit import Actor
from bot.services.droplets import droplet_choice_problems
from bot.settings import Settings
from bot.site import DropletSpec, SiteSpec, load_site_file, parse_site
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.infra.openwrt_router import OpenWrtRouter

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "site.yaml"
EXE = shutil.which("camreach", path=str(Path(sys.executable).parent)) or "camreach"
TIMEOUT = 90
SMALL = "s-1vcpu-512mb-10gb"  # the fake sells it in ams3, fra1, nyc1, sgp1; not in blr1


def example() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return doc


def problems(doc: dict[str, Any]) -> str:
    with pytest.raises(ValidationFailed) as err:
        parse_site(doc)
    return err.value.user_message


# -- addresses ------------------------------------------------------------------------------


def _hilink(d: dict[str, Any]) -> None:
    d["modem"].update(protocol="dhcp")


def _lan(d: dict[str, Any], subnet: str, host: str, camera: str) -> None:
    d["router"].update(lan_subnet=subnet, host=host)
    d["cameras"][0]["host"] = camera


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (lambda d: _lan(d, "8.8.8.0/24", "8.8.8.1", "8.8.8.64"),
         "router.lan_subnet", "not a private range"),
        (lambda d: _lan(d, "127.0.0.0/8", "127.0.0.1", "127.0.0.64"),
         "router.lan_subnet", "not a private range"),
        (lambda d: _lan(d, "100.64.5.0/24", "100.64.5.1", "100.64.5.64"),
         "router.lan_subnet", "100.64.0.0/10"),
        (lambda d: _lan(d, "172.32.0.0/24", "172.32.0.1", "172.32.0.64"),  # just past /12
         "router.lan_subnet", "RFC 1918"),
        (lambda d: d["vpn"].update(subnet="100.100.0.0/24"), "vpn.subnet", "carrier-grade NAT"),
        (lambda d: d["vpn"].update(subnet="100.0.0.0/8"), "vpn.subnet", "100.64.0.0/10"),
        (lambda d: d["vpn"].update(subnet="8.8.8.0/24"), "vpn.subnet", "private range"),
        (lambda d: d["vpn"].update(subnet="192.168.0.0/16"), "vpn.subnet",
         "overlaps router.lan_subnet 192.168.1.0/24"),
        (lambda d: (_hilink(d), _lan(d, "192.168.8.0/24", "192.168.8.10", "192.168.8.64")),
         "router.lan_subnet", "HiLink"),
        (lambda d: (_hilink(d), _lan(d, "192.168.0.0/16", "192.168.1.1", "192.168.1.64")),
         "router.lan_subnet", "192.168.8.0/24"),
        (lambda d: (_hilink(d), d["vpn"].update(subnet="192.168.8.128/25")),
         "vpn.subnet", "HiLink"),
        (lambda d: d["vpn"].update(port=22), "vpn.port", "SSH"),
        (lambda d: d["router"].update(host="10.0.0.1"), "router.host",
         "not in router.lan_subnet 192.168.1.0/24"),
        (lambda d: d["router"].update(host="192.168.2.1"), "router.host", "not in"),
        (lambda d: d["router"].update(host="192.168.1.300"), "router.host", "not a valid IPv4"),
        (lambda d: d["cameras"][0].update(host="10.1.1.1"), "cameras.0.host",
         "not in router.lan_subnet"),
    ],
)
def test_address_rules_name_their_field(mutate: Callable[[dict[str, Any]], object], path: str,
                                        words: str) -> None:
    doc = example()
    mutate(doc)
    msg = problems(doc)
    line = next((ln for ln in msg.splitlines() if ln.startswith(f"- {path}: ")), None)
    assert line is not None, msg
    assert words in line, msg


@pytest.mark.parametrize(
    "mutate",
    [
        # A loopback router.host is an SSH port forward to the router: allowed anywhere.
        lambda d: d["router"].update(host="127.0.0.1", port=2222),
        lambda d: d["router"].update(host="127.0.0.2"),
        lambda d: d["router"].update(host="openwrt.lan"),  # a name: taken as given
        # 192.168.8.0/24 is only the HiLink stick's LAN; other modems leave it free.
        lambda d: (d["modem"].update(protocol="ncm"),
                   _lan(d, "192.168.8.0/24", "192.168.8.1", "192.168.8.64")),
        lambda d: (_hilink(d), d["vpn"].update(subnet="172.16.0.0/24")),
        lambda d: _lan(d, "10.20.0.0/16", "10.20.0.1", "10.20.3.4"),
        lambda d: d["vpn"].update(port=51821),
    ],
)
def test_allowed(mutate: Callable[[dict[str, Any]], object]) -> None:
    doc = example()
    mutate(doc)
    parse_site(doc)


def test_several_problems_each_on_its_own_line() -> None:
    doc = example()
    doc["vpn"].update(subnet="100.64.0.0/24", port=22)
    doc["router"].update(host="10.0.0.1")
    doc["cameras"].append(dict(doc["cameras"][0]))
    msg = problems(doc)
    for path in ("- vpn.subnet:", "- vpn.port:", "- router.host:"):
        assert path in msg, msg
    # The checks across sections run once every section is valid on its own; then they all
    # report.
    doc = example()
    doc["vpn"]["subnet"] = "192.168.1.128/25"
    doc["cameras"].append(dict(doc["cameras"][0], host="10.9.9.9"))
    msg = problems(doc)
    for path in ("- vpn.subnet: 192.168.1.128/25 overlaps router.lan_subnet",
                 "- cameras.1.name: two cameras", "- cameras.1.host:"):
        assert path in msg, msg


# -- router.key_file ------------------------------------------------------------------------


def key_site(key_file: Path | str) -> dict[str, Any]:
    doc = example()
    del doc["router"]["password_env"]
    doc["router"]["key_file"] = str(key_file)
    return doc


def write_key(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


def ssh_keygen(path: Path, passphrase: str) -> Path:
    """An OpenSSH key with a passphrase, as ssh-keygen writes it (asyncssh would need bcrypt)."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is missing (apt-get install openssh-client)")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)],
                   check=True, timeout=30)
    return path


@pytest.fixture(scope="module")
def private_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


def test_good_key_files(tmp_path: Path, private_key: asyncssh.SSHKey,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    openssh = write_key(tmp_path / "id_ed25519", private_key.export_private_key())
    assert parse_site(key_site(openssh)).router.key_file == openssh
    pem = write_key(tmp_path / "key.pem", private_key.export_private_key("pkcs8-pem"), 0o400)
    parse_site(key_site(pem))
    rsa = write_key(tmp_path / "id_rsa",
                    asyncssh.generate_private_key("ssh-rsa", key_size=2048)
                    .export_private_key("pkcs1-pem"))
    parse_site(key_site(rsa))
    # "~" is the user's home, as when the key is used; the stored path is the one written.
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_site(key_site("~/id_ed25519")).router.key_file == Path("~/id_ed25519")
    # From a real file, through load_site_file.
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(key_site(openssh)))
    assert load_site_file(site).router.key_file == openssh


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d, k: d / "missing", "does not exist"),
        (lambda d, k: d, "is not a file"),
        (lambda d, k: write_key(d / "k", k.export_private_key(), 0o644), "chmod 600"),
        (lambda d, k: write_key(d / "k", k.export_private_key(), 0o640), "mode 0640"),
        (lambda d, k: write_key(d / "k", k.export_private_key(), 0o601), "open to other users"),
        (lambda d, k: write_key(d / "k.pub", k.export_public_key()), "is a public key"),
        (lambda d, k: write_key(d / "k", "just some text\n"), "does not look like a private key"),
        (lambda d, k: write_key(d / "k", b"\x00\xff" * 100), "does not look like a private key"),
        (lambda d, k: write_key(d / "k", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"
                                         "-----END OPENSSH PRIVATE KEY-----\n"),
         "not a private key camreach can read"),
        (lambda d, k: ssh_keygen(d / "k", "hunter2"), "protected by a passphrase"),
        (lambda d, k: write_key(d / "k", k.export_private_key("pkcs8-pem", passphrase="x")),
         "protected by a passphrase"),
    ],
    ids=["missing", "directory", "mode-644", "mode-640", "other-bits", "public", "text",
         "binary", "bad-openssh", "passphrase-openssh", "passphrase-pkcs8"],
)
def test_bad_key_files(tmp_path: Path, private_key: asyncssh.SSHKey,
                       make: Callable[[Path, asyncssh.SSHKey], Path], words: str) -> None:
    path = make(tmp_path, private_key)
    msg = problems(key_site(path))
    line = next((ln for ln in msg.splitlines() if ln.startswith("- router.key_file: ")), None)
    assert line is not None and words in line, msg
    # The key's contents are never shown.
    text = path.read_text(errors="replace") if path.is_file() else ""
    body = [ln for ln in text.splitlines() if ln and not ln.startswith("-----")]
    assert not any(ln in msg for ln in body if len(ln) > 8), msg


def test_key_file_is_checked_in_site_files_not_in_stored_specs(tmp_path: Path) -> None:
    # A stored spec is loaded again wherever camreach runs (the bot, another machine): the key
    # file is the business of the machine that does the first contact.
    doc = key_site(tmp_path / "gone")
    assert SiteSpec.model_validate(doc).router.key_file == tmp_path / "gone"
    assert parse_site(doc, check_files=False).router.key_file == tmp_path / "gone"
    assert "- router.key_file:" in problems(doc)
    # Both credentials given: that is the problem reported, not the file.
    doc["router"]["password_env"] = "ROUTER_PASSWORD"
    msg = problems(doc)
    assert "- router: give exactly one of password_env or key_file" in msg, msg
    assert "key_file:" not in msg


# -- *_env variables from .env --------------------------------------------------------------

VAR = "CAMREACH_HARDENING_TEST_SECRET"  # CAMREACH_*: cli_env does not pass it on


def test_env_value_reads_the_environment_then_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(VAR, raising=False)
    assert env_value(VAR) is None  # no .env at all
    (tmp_path / ".env").write_text(f"OTHER=1\n{VAR}='from $dotenv'\n")
    assert env_value(VAR) == "from $dotenv"  # taken as written, no interpolation
    monkeypatch.setenv(VAR, "")
    assert env_value(VAR) == "from $dotenv"  # empty counts as unset
    monkeypatch.setenv(VAR, "from-environ")
    assert env_value(VAR) == "from-environ"  # the environment wins
    # A mapping given by the caller is all there is (tests, services built with env=...).
    assert env_value(VAR, {}) is None
    assert env_value(VAR, {VAR: "given"}) == "given"
    monkeypatch.delenv(VAR)
    (tmp_path / ".env").write_text(f"{VAR}=\n")
    assert env_value(VAR) is None
    (tmp_path / ".env").write_bytes(b"\xff\xfe not text")
    assert env_value(VAR) is None  # an unreadable .env is no .env


def test_router_and_modem_secrets_come_from_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("HARDEN_ROUTER_PW", "HARDEN_SIM_PIN", "HARDEN_APN_PW"):
        monkeypatch.delenv(name, raising=False)
    doc = example()
    doc["router"]["password_env"] = "HARDEN_ROUTER_PW"
    doc["modem"].update(pin_env="HARDEN_SIM_PIN", password_env="HARDEN_APN_PW", username="u")
    spec = parse_site(doc)
    with pytest.raises(ConfigError, match="HARDEN_ROUTER_PW, which is not set"):
        router_credentials(spec)
    with pytest.raises(ConfigError, match=r"HARDEN_SIM_PIN, which is not set.*\.env"):
        modem_secrets(spec)
    (tmp_path / ".env").write_text(
        "HARDEN_ROUTER_PW=r00t-pw\nHARDEN_SIM_PIN=2468\nHARDEN_APN_PW=apn-pw\n")
    assert router_credentials(spec).password == "r00t-pw"
    got = modem_secrets(spec)
    assert (got.pin, got.password) == ("2468", "apn-pw")


def run(env: dict[str, str], *args: str, cwd: Path | None = None,
        answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """``camreach ARGS`` with ``answer`` on stdin (``< /dev/null`` when None)."""
    if answer is None:
        with open(os.devnull) as null:
            return subprocess.run([EXE, *args], env=env, cwd=cwd, stdin=null,
                                  capture_output=True, text=True, timeout=TIMEOUT)
    return subprocess.run([EXE, *args], env=env, cwd=cwd, input=answer, capture_output=True,
                          text=True, timeout=TIMEOUT)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_reads_the_router_password_from_dotenv_in_its_directory(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """No router needed: without the variable first contact stops at once ("not set"); with
    it in ./.env, camreach goes on and tries the router (here a closed port)."""
    doc = example()
    doc["router"].update(host="127.0.0.1", port=closed_port(), password_env=VAR)
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in cli_env.items() if k != VAR}
    assert run(env, "site", "apply", str(site), "--store-only").returncode == 0

    work = tmp_path / "work"
    work.mkdir()
    res = run(env, "router", "connect", "farmhouse", cwd=work)
    assert res.returncode == 1 and f"{VAR}, which is not set" in res.stderr, res.stderr
    (work / ".env").write_text(f"{VAR}=only-in-dotenv\n")
    res = run(env, "router", "connect", "farmhouse", cwd=work)
    assert res.returncode == 1, res.stderr
    assert "which is not set" not in res.stderr and "127.0.0.1" in res.stderr, res.stderr
    assert "only-in-dotenv" not in res.stdout + res.stderr


def test_cli_first_contact_with_the_password_only_in_dotenv(
    cli_env: dict[str, str], settings: Settings, tmp_path: Path, openwrt_router: OpenWrtRouter
) -> None:
    """The real thing: `camreach router connect` logs in to an OpenWrt router with a root
    password that is nowhere but in the .env file of the directory it runs in."""
    from tests.test_router_tunnel import ROUTER_PW_ENV, site_spec

    spec = site_spec(openwrt_router)
    assert spec.router.password_env == ROUTER_PW_ENV
    db(settings, lambda core: core.apply_site(spec, Actor.cli()))
    env = {k: v for k, v in cli_env.items() if k != ROUTER_PW_ENV}
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text(f"{ROUTER_PW_ENV}={openwrt_router.root_password}\n")
    res = run(env, "router", "connect", "farm", cwd=work)
    assert res.returncode == 0, res.stderr
    assert openwrt_router.root_password not in res.stdout + res.stderr
    authorized = (openwrt_router.root / "etc/dropbear/authorized_keys").read_text()
    assert "camreach" in authorized


# -- the droplet choice, checked before anything is stored ----------------------------------


def db(settings: Settings, fn: Callable[[Core], Any]) -> Any:
    """``fn(core)`` (a coroutine function) against the test database, outside the CLI."""

    async def go() -> Any:
        core = await Core.open(settings)
        try:
            return await fn(core)
        finally:
            await core.close()

    return asyncio.run(go())


def leftovers(settings: Settings) -> tuple[list[str], int, int]:
    """Site names, WireGuard peer rows and per-site secrets in the database."""

    async def read(core: Core) -> tuple[list[str], int, int]:
        async with core.sessions() as s:
            names = list((await s.execute(select(Site.name))).scalars())
            peers = len((await s.execute(select(VpnPeer))).scalars().all())
            secrets = len((await s.execute(
                select(Secret).where(Secret.name.startswith("site:")))).scalars().all())
        return names, peers, secrets

    result: tuple[list[str], int, int] = db(settings, read)
    return result


def site_file(tmp_path: Path, **droplet: str) -> Path:
    doc = example()
    doc["droplet"].update(droplet)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_apply_of_a_size_the_region_lacks_stores_nothing(
    cli_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    site = site_file(tmp_path, region="blr1", size=SMALL)
    with FakeDigitalOcean() as fake:
        env = dict(cli_env, DIGITALOCEAN_TOKEN=fake.token, DIGITALOCEAN_END_POINT=fake.endpoint)
        for extra in (["--yes"], []):  # with --yes, and before the question without it
            res = run(env, "site", "apply", str(site), *extra)
            assert res.returncode == 2, (res.stdout, res.stderr)
            assert (f"- droplet.size: {SMALL} is not offered in blr1. Regions that offer "
                    f"{SMALL}: ams3, fra1, nyc1, sgp1." in res.stderr), res.stderr
            assert "s-1vcpu-1gb ($6/month)" in res.stderr  # what blr1 does sell
            assert "[y/N]" not in res.stderr and "Traceback" not in res.stderr
            listed = run(env, "site", "list")
            assert listed.returncode == 0 and listed.stdout == "", listed.stdout
            assert "No sites yet" in listed.stderr
        assert fake.count("POST", "/v2/droplets") == 0 and not fake.droplets
        assert fake.token not in res.stdout + res.stderr
    assert leftovers(settings) == ([], 0, 0)


def test_apply_names_every_wrong_droplet_field(
    cli_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    with FakeDigitalOcean() as fake:
        env = dict(cli_env, DIGITALOCEAN_TOKEN=fake.token, DIGITALOCEAN_END_POINT=fake.endpoint)
        res = run(env, "site", "apply", str(site_file(tmp_path, region="xyz9", size="s-99vcpu",
                                                      image="windows-11")), "--yes")
        assert res.returncode == 2, res.stderr
        for line in ("- droplet.region: DigitalOcean has no region 'xyz9'; open regions: ams3, "
                     "blr1, fra1, lon1, nyc1, nyc3, sgp1",
                     "- droplet.size: DigitalOcean has no droplet size 's-99vcpu'; sizes: "
                     f"{SMALL}, s-1vcpu-1gb, s-1vcpu-2gb, s-2vcpu-2gb",
                     "- droplet.image: DigitalOcean has no distribution image 'windows-11'; "
                     "images: debian-12-x64, ubuntu-22-04-x64"):
            assert line in res.stderr, res.stderr
        res = run(env, "site", "apply", str(site_file(tmp_path, region="sfo1")), "--yes")
        assert res.returncode == 2
        assert ("- droplet.region: DigitalOcean takes no new droplets in 'sfo1'; regions that "
                f"offer {SMALL}: ams3, fra1, nyc1, sgp1") in res.stderr, res.stderr
        # --store-only and --dry-run touch nothing remote: no check, as before.
        res = run(env, "site", "apply", str(site_file(tmp_path, region="blr1")), "--dry-run")
        assert res.returncode == 0 and "would create" in res.stdout
        assert fake.count("POST", "/v2/droplets") == 0
    assert leftovers(settings)[0] == []


def test_choice_problems_pure() -> None:
    from bot.adapters.digitalocean import ImageInfo, RegionInfo, SizeInfo

    regions = [RegionInfo("fra1", "Frankfurt", True, ("a", "b"), ()),
               RegionInfo("ams3", "Amsterdam", True, ("a",), ()),
               RegionInfo("old1", "Old", False, (), ())]
    sizes = [SizeInfo("a", 512, 1, 10, 0.5, 4.0, 0.01, ("fra1", "ams3"), True, ""),
             SizeInfo("b", 1024, 1, 25, 1.0, 6.0, 0.01, ("fra1",), True, ""),
             SizeInfo("gone", 1024, 1, 25, 1.0, 6.0, 0.01, ("fra1",), False, "")]
    images = [ImageInfo(1, "ubuntu-24-04-x64", "24.04", "Ubuntu", ("fra1",))]
    ok = DropletSpec(region="fra1", size="b", image="ubuntu-24-04-x64")
    assert droplet_choice_problems(ok, regions, sizes, images) == []
    got = dict(droplet_choice_problems(DropletSpec(region="ams3", size="b",
                                                   image="ubuntu-24-04-x64"),
                                       regions, sizes, images))
    assert got["droplet.size"].startswith("b is not offered in ams3. Regions that offer b: "
                                          "fra1. Sizes sold in ams3: a ($4/month)")
    assert got["droplet.image"] == "ubuntu-24-04-x64 is not available in ams3; it is in fra1"
    got = dict(droplet_choice_problems(DropletSpec(region="fra1", size="gone",
                                                   image="ubuntu-24-04-x64"),
                                       regions, sizes, images))
    assert got == {"droplet.size": "DigitalOcean no longer sells 'gone'; sizes sold in fra1: "
                                   "a ($4/month), b ($6/month)"}


async def test_core_check_droplet_choice(settings: Settings) -> None:
    from pydantic import SecretStr

    async with FakeDigitalOcean() as fake:
        with fake.set_env():
            c = await Core.open(settings.model_copy(
                update={"digitalocean_token": SecretStr(fake.token)}))
            try:
                await c.check_droplet_choice(parse_site(dict(example(), droplet={
                    "region": "fra1", "size": SMALL})))
                with pytest.raises(ValidationFailed, match=r"- droplet\.size: .* ams3, fra1"):
                    await c.check_droplet_choice(parse_site(example()))  # blr1
                # A site with its droplet: provisioning adopts it and creates nothing, so a size
                # DigitalOcean no longer sells there does not block the apply.
                spec = parse_site(example())
                await c.apply_site(spec, Actor.cli())
                async with c.sessions.begin() as s:
                    site = (await s.execute(select(Site))).scalar_one()
                    s.add(Droplet(site_id=site.id, do_id=123, name="camreach-farmhouse",
                                  region="blr1", size=SMALL, image="ubuntu-24-04-x64",
                                  status="active"))
                await c.check_droplet_choice(spec)
            finally:
                await c.close()


# -- refused at create time: the apply is undone --------------------------------------------


def test_refused_create_of_a_new_site_stores_nothing(
    cli_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    site = site_file(tmp_path, region="fra1")
    with FakeDigitalOcean(droplet_limit=0) as fake:  # the account may create no droplet
        env = dict(cli_env, DIGITALOCEAN_TOKEN=fake.token, DIGITALOCEAN_END_POINT=fake.endpoint)
        res = run(env, "site", "apply", str(site), "--yes")
        assert res.returncode == 1, (res.stdout, res.stderr)
        assert "farmhouse: created" in res.stdout  # stored for the run, then taken back:
        assert "exceed your droplet limit" in res.stderr, res.stderr
        assert "Nothing was stored: site farmhouse was removed again." in res.stderr
        assert fake.count("POST", "/v2/droplets") == 1 and not fake.droplets
        listed = run(env, "site", "list")
        assert listed.stdout == "" and "No sites yet" in listed.stderr
        assert leftovers(settings) == ([], 0, 0)  # no keys or peers left either

        # The operation's history stays; the same file is a new site again.
        ops = run(env, "op", "list")
        assert ops.returncode == 0 and "provision" in ops.stdout + ops.stderr
        res = run(env, "site", "apply", str(site), "--store-only")
        assert res.returncode == 0 and "farmhouse: created" in res.stdout


def test_refused_create_keeps_an_existing_sites_previous_spec(
    cli_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    site = site_file(tmp_path, region="fra1")
    with FakeDigitalOcean() as fake:
        env = dict(cli_env, DIGITALOCEAN_TOKEN=fake.token, DIGITALOCEAN_END_POINT=fake.endpoint)
        assert run(env, "site", "apply", str(site), "--store-only").returncode == 0
        before = run(env, "site", "show", "farmhouse").stdout
        doc = yaml.safe_load(site.read_text())
        doc["vpn"]["port"] = 51999
        doc["cameras"].append({"name": "back", "host": "192.168.1.70"})
        site.write_text(yaml.safe_dump(doc))
        fake.fail_next("POST", "/v2/droplets", 422,
                       body={"id": "unprocessable_entity",
                             "message": "Size is not available in this region."})
        res = run(env, "site", "apply", str(site), "--yes")
        assert res.returncode == 1, res.stderr
        assert "farmhouse: updated" in res.stdout and "vpn.port: 51820 → 51999" in res.stdout
        assert "Regions that offer s-1vcpu-512mb-10gb: ams3, fra1, nyc1, sgp1." in res.stderr
        assert "Site farmhouse keeps its previous settings." in res.stderr, res.stderr
        assert run(env, "site", "show", "farmhouse").stdout == before
        assert not fake.droplets

    async def cameras(core: Core) -> list[str]:
        return (await core.statuses("farmhouse"))[0].cameras

    assert db(settings, cameras) == ["porch"]  # the device rows follow the restored spec
    assert leftovers(settings)[0] == ["farmhouse"]


async def test_refused_create_without_an_apply_keeps_the_site(
    settings: Settings
) -> None:
    """A run not started by an apply (Telegram's /setup, a retry) has nothing to undo."""
    from pydantic import SecretStr

    async with FakeDigitalOcean() as fake:
        with fake.set_env():
            c = await Core.open(settings.model_copy(
                update={"digitalocean_token": SecretStr(fake.token)}))
            try:
                await c.apply_site(parse_site(example()), Actor.cli())  # blr1: refused
                final = await c.operations.wait((await c.provision("farmhouse",
                                                                   Actor.cli())).id)
                assert final.error is not None and "not available in this region" in final.error
                assert "removed again" not in final.error
                assert await c.site_names() == ["farmhouse"]
            finally:
                await c.close()
