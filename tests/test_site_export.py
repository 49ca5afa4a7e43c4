"""`camreach site export NAME`: the stored site as a site file that applies back to the same site,
with secrets only as *_env references (those stored encrypted get a derived variable name)."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml
from pydantic import SecretStr

from bot.core import Core
from bot.services.audit import Actor
from bot.services.export import derived_env, render_site
from bot.settings import Settings
from bot.site import ENV_RE, SiteSpec, load_site_file, parse_site
from tests.conftest import POSTGRES_URL
from tests.test_cli import camreach

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "site.yaml"
ORDER = ["name", "timezone", "droplet", "vpn", "router", "modem", "cameras", "health"]
GATE_PASSWORD = "gate-Pa55-w0rd!x"
PORCH_PASSWORD = "porch-typed-9f3k"
PIN = "97531"


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    shutil.copy(EXAMPLE, path)
    return path


def with_gate(spec: SiteSpec) -> SiteSpec:
    """The example plus a camera added in chat: no password_env (its password is typed)."""
    doc = spec.to_json()
    doc["cameras"].append({"name": "gate", "host": "192.168.1.65", "user": "admin"})
    return SiteSpec.model_validate(doc)


def read_back(text: str) -> SiteSpec:
    return parse_site(yaml.safe_load(text), check_files=False)


def camera(spec: SiteSpec, name: str) -> Any:
    return next(c for c in spec.cameras if c.name == name)


@asynccontextmanager
async def fresh_core(settings: Settings, tmp_path: Path) -> AsyncIterator[Core]:
    """A second camreach on a database of its own (another key too): "somewhere else"."""
    from cryptography.fernet import Fernet

    if not POSTGRES_URL:
        url, drop = f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}", None
    else:
        import asyncpg

        admin = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
        drop = f"camreach_t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{drop}"')
        finally:
            await conn.close()
        url = f"postgresql+asyncpg://{admin.rsplit('/', 1)[0].split('://', 1)[1]}/{drop}"
    other = settings.model_copy(update={
        "database_url": url, "camreach_data_dir": tmp_path / "elsewhere",
        "camreach_secret_key": SecretStr(Fernet.generate_key().decode()),
    })
    core = await Core.open(other)
    try:
        yield core
    finally:
        await core.close()
        if drop is not None:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)')
            finally:
                await conn.close()


async def test_example_round_trips(core: Core, site_file: Path) -> None:
    spec = load_site_file(site_file)
    await core.apply_site(spec, Actor.cli())
    text = await core.export_site("farmhouse")

    assert text.startswith("# ") and "camreach site export farmhouse" in text.splitlines()[0]
    assert read_back(text) == spec
    doc = yaml.safe_load(text)
    assert [k for k in ORDER if k in doc] == list(doc)  # examples/site.yaml's order
    assert list(doc) == ORDER[:-1]  # health: nothing set, nothing written
    assert "null" not in text
    # Only references: the variables' names, never anything that looks like a value.
    assert doc["router"]["password_env"] == "ROUTER_PASSWORD"
    assert doc["modem"]["pin_env"] == "SIM_PIN"
    assert doc["cameras"][0]["password_env"] == "CAM_PASSWORD"
    assert "stored encrypted" not in text  # nothing of this site is stored in camreach


async def test_every_field_round_trips_through_the_file(core: Core, tmp_path: Path) -> None:
    key = tmp_path / "router_key"
    key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    key.chmod(0o600)
    doc = {
        "name": "on", "timezone": "Europe/Berlin",
        "droplet": {"region": "fra1", "size": "s-1vcpu-1gb", "image": "ubuntu-22-04-x64"},
        "vpn": {"subnet": "10.9.0.0/24", "port": 51821},
        "router": {"host": "127.0.0.1", "port": 2222, "user": "root", "key_file": str(key),
                   "lan_subnet": "192.168.5.0/24"},
        "modem": {"protocol": "qmi", "apn": "www", "username": "yes", "password_env": "APN_PW",
                  "auth": "chap", "pdptype": "ipv4v6", "mode": "lte"},
        "cameras": [
            {"name": "No", "host": "192.168.5.20", "port": 8080, "user": "012", "kind": "generic",
             "via": "direct", "snapshot_url": "/cgi-bin/snapshot.cgi?chn=1",
             "daily_snapshot": "08:00"},
            {"name": "true", "host": "192.168.5.21", "kind": "onvif", "daily_snapshot": "23:59",
             "password_env": "TRUE_PW"},
        ],
        "health": {"check_interval": 60, "alert_after": 3, "recover_after": 2,
                   "retry_interval": 15.5, "remind_every": 0, "alert_chat": -1001234567890},
    }
    spec = parse_site(doc)
    await core.apply_site(spec, Actor.cli())
    out = tmp_path / "exported.yaml"
    out.write_text(await core.export_site("on"))

    assert load_site_file(out) == spec  # checks the key file too, like `site apply`
    assert list(yaml.safe_load(out.read_text())) == ORDER
    assert "router.key_file" in out.read_text()  # says the key must exist where it is applied


async def test_a_password_typed_in_chat_is_exported_as_a_reference(core: Core,
                                                                   site_file: Path) -> None:
    spec = with_gate(load_site_file(site_file))
    await core.apply_site(spec, Actor.cli())
    await core.set_camera_password("farmhouse", "gate", GATE_PASSWORD, Actor.cli())
    await core.set_camera_password("farmhouse", "porch", PORCH_PASSWORD, Actor.cli())
    text = await core.export_site("farmhouse")

    assert GATE_PASSWORD not in text and PORCH_PASSWORD not in text
    exported = read_back(text)
    gate = camera(exported, "gate")
    assert gate.password_env == "FARMHOUSE_CAM_GATE_PASSWORD"
    assert re.fullmatch(ENV_RE, gate.password_env)
    assert camera(exported, "porch").password_env == "CAM_PASSWORD"  # kept as it was
    # Everything else is the stored site as it is.
    assert exported.model_copy(update={"cameras": spec.cameras}) == spec
    assert camera(exported, "gate").model_copy(update={"password_env": None}) == camera(
        spec, "gate")

    # The comment above `cameras:` says where the passwords are and what re-applying needs.
    head = text.split("\ncameras:", 1)[0].rsplit("\n\n", 1)[1]
    assert "stored encrypted in camreach" in head
    assert "FARMHOUSE_CAM_GATE_PASSWORD (gate)" in head
    assert "porch (CAM_PASSWORD)" in head  # its typed password overrides the variable


async def test_a_sim_pin_stored_in_camreach(core: Core, site_file: Path) -> None:
    # As /setup leaves it: pin_env names FARMHOUSE_SIM_PIN, the PIN typed in chat is stored.
    spec = load_site_file(site_file)
    spec = spec.model_copy(update={"modem": spec.modem.model_copy(
        update={"pin_env": "FARMHOUSE_SIM_PIN"})})
    await core.apply_site(spec, Actor.cli())
    assert "stored encrypted" not in await core.export_site("farmhouse")

    await core.secrets.put("modem-pin:farmhouse", PIN)
    text = await core.export_site("farmhouse")
    assert PIN not in text
    assert read_back(text) == spec
    head = text.split("\nmodem:", 1)[0].rsplit("\n\n", 1)[1]
    assert "SIM PIN is stored encrypted in camreach" in head
    assert "needs FARMHOUSE_SIM_PIN set" in head


async def test_an_unused_stored_pin_is_not_given_a_variable(core: Core, site_file: Path) -> None:
    """Without pin_env the site sends no PIN (the stored one is used only as the fallback of
    that variable): naming one would make the re-applied site send a stale PIN to the SIM."""
    spec = load_site_file(site_file)
    spec = spec.model_copy(update={"modem": spec.modem.model_copy(update={"pin_env": None})})
    await core.apply_site(spec, Actor.cli())
    await core.secrets.put("modem-pin:farmhouse", PIN)
    text = await core.export_site("farmhouse")
    assert PIN not in text and read_back(text) == spec
    assert "pin_env:" not in text and "unused while modem.pin_env is not set" in text


async def test_the_export_applied_elsewhere_is_the_same_site(core: Core, settings: Settings,
                                                            site_file: Path,
                                                            tmp_path: Path) -> None:
    await core.apply_site(with_gate(load_site_file(site_file)), Actor.cli())
    await core.set_camera_password("farmhouse", "gate", GATE_PASSWORD, Actor.cli())
    text = await core.export_site("farmhouse")
    exported = read_back(text)
    out = tmp_path / "farmhouse.yaml"
    out.write_text(text)

    async with fresh_core(settings, tmp_path) as other:
        assert await other.site_names() == []
        assert (await other.apply_site(load_site_file(out), Actor.cli())).action == "created"
        assert await other.site_spec("farmhouse") == exported
        assert (await other.apply_site(load_site_file(out), Actor.cli())).action == "unchanged"
        # There the password is what the variable holds: nothing is stored, nothing to say.
        again = await other.export_site("farmhouse")
        assert read_back(again) == exported and "stored encrypted" not in again
        views = {v.name: v.password for v in await other.camera_views("farmhouse")}
        assert views["gate"] == "password_env FARMHOUSE_CAM_GATE_PASSWORD"


def test_derived_names_are_valid_and_distinct() -> None:
    assert derived_env("farm", "cam", "gate", "password") == "FARM_CAM_GATE_PASSWORD"
    assert derived_env("farm-1", "sim_pin") == "FARM_1_SIM_PIN"
    assert derived_env("1farm", "cam", "x", "password") == "SITE_1FARM_CAM_X_PASSWORD"
    spec = parse_site({
        "name": "9-lives", "router": {"password_env": "FARM_CAM_GATE_PASSWORD"},
        "cameras": [{"name": "Gate", "host": "192.168.1.10"},
                    {"name": "gate", "host": "192.168.1.11"},
                    {"name": "other", "host": "192.168.1.12",
                     "password_env": "SITE_9_LIVES_CAM_GATE_PASSWORD"}]})
    names = [c.password_env for c in read_back(render_site(
        spec, stored_cameras={"Gate", "gate"})).cameras]
    assert names == ["SITE_9_LIVES_CAM_GATE_PASSWORD_2", "SITE_9_LIVES_CAM_GATE_PASSWORD_3",
                     "SITE_9_LIVES_CAM_GATE_PASSWORD"]
    assert all(n is not None and re.fullmatch(ENV_RE, n) for n in names)


def test_cli_export_applies_back_unchanged(cli_env: dict[str, str], site_file: Path,
                                           tmp_path: Path) -> None:
    res = camreach(cli_env, "site", "apply", str(site_file), "--store-only")
    assert res.returncode == 0, res.stderr
    out = camreach(cli_env, "site", "export", "farmhouse")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# Site farmhouse, exported by `camreach site export")
    assert read_back(out.stdout) == load_site_file(site_file)
    exported = tmp_path / "exported.yaml"
    exported.write_text(out.stdout)
    again = camreach(cli_env, "site", "apply", str(exported), "--store-only")
    assert again.returncode == 0, again.stderr
    assert "farmhouse: unchanged" in again.stdout


def test_cli_export_of_an_unknown_site(cli_env: dict[str, str]) -> None:
    res = camreach(cli_env, "site", "export", "nowhere")
    assert res.returncode != 0
    assert res.stdout == ""
    assert "There is no site named 'nowhere'" in res.stderr and "site list" in res.stderr
    assert "Traceback" not in res.stderr
