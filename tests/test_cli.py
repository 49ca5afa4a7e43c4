"""The `camreach` command, run as a real subprocess against a real database."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "site.yaml"


def camreach(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("camreach", path=str(Path(sys.executable).parent)) or "camreach"
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=60,
                          cwd=cwd)


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    shutil.copy(EXAMPLE, path)
    return path


def edit(path: Path, fn) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(path.read_text())
    fn(doc)
    path.write_text(yaml.safe_dump(doc))


def test_version_and_help(cli_env: dict[str, str]) -> None:
    out = camreach(cli_env, "--version")
    assert out.returncode == 0 and "camreach, version 0.1.0" in out.stdout
    for cmd in (["run"], ["db", "upgrade"], ["db", "current"], ["site", "apply"],
                ["site", "list"], ["site", "show"], ["site", "destroy"], ["status"], ["flash"],
                ["peer", "add"], ["peer", "list"], ["peer", "remove"], ["router", "connect"],
                ["router", "detect"], ["router", "install"], ["router", "push"],
                ["router", "modem"]):
        res = camreach(cli_env, *cmd, "--help")
        assert res.returncode == 0, (cmd, res.stderr)
        assert "Usage: camreach" in res.stdout


def test_python_dash_m(cli_env: dict[str, str]) -> None:
    res = subprocess.run([sys.executable, "-m", "bot", "--version"], env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "0.1.0" in res.stdout


def test_db_upgrade_and_current(cli_env: dict[str, str]) -> None:
    before = camreach(cli_env, "db", "current")
    assert before.returncode == 0
    assert "empty database" in before.stdout
    up = camreach(cli_env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    after = camreach(cli_env, "db", "current")
    assert after.stdout.strip() == "0005"


def test_apply_list_show_status(cli_env: dict[str, str], site_file: Path) -> None:
    dry = camreach(cli_env, "site", "apply", str(site_file), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "farmhouse: would create" in dry.stdout
    # --dry-run changed nothing
    assert camreach(cli_env, "site", "list").stdout.strip() == ""

    res = camreach(cli_env, "site", "apply", str(site_file))
    assert res.returncode == 0, res.stderr
    assert "farmhouse: created" in res.stdout
    assert camreach(cli_env, "site", "list").stdout.split() == ["farmhouse"]

    again = camreach(cli_env, "site", "apply", str(site_file))
    assert "farmhouse: unchanged" in again.stdout

    edit(site_file, lambda d: d["droplet"].update(size="s-1vcpu-1gb"))
    dry = camreach(cli_env, "site", "apply", str(site_file), "--dry-run")
    assert "would update" in dry.stdout
    assert "droplet.size: s-1vcpu-512mb-10gb → s-1vcpu-1gb" in dry.stdout
    shown = yaml.safe_load(camreach(cli_env, "site", "show", "farmhouse").stdout)
    assert shown["droplet"]["size"] == "s-1vcpu-512mb-10gb"  # the dry run kept the old size

    upd = camreach(cli_env, "site", "apply", str(site_file))
    assert "farmhouse: updated" in upd.stdout
    shown = yaml.safe_load(camreach(cli_env, "site", "show", "farmhouse").stdout)
    assert shown["droplet"]["size"] == "s-1vcpu-1gb"
    assert shown["cameras"][0]["password_env"] == "CAM_PASSWORD"

    status = camreach(cli_env, "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert [s["name"] for s in data] == ["farmhouse"]
    assert next(iter(data[0])) == "name"
    assert list(data[0]) == ["name", "droplet", "router", "modem", "cameras", "peers",
                             "open_incidents", "last_operation", "updated_at", "health"]
    health = data[0]["health"]
    assert list(health) == ["droplet", "tunnel", "router", "modem", "camera:porch"]
    assert all(set(h) == {"state", "since", "checked_at", "summary"} for h in health.values())
    assert {h["state"] for h in health.values()} == {"unknown"}  # never checked
    assert data[0]["cameras"] == ["porch"]
    assert data[0]["router"]["host"] == "192.168.1.1"
    assert data[0]["modem"] == {"protocol": "auto", "apn": "airtelgprs.com", "model": None}
    text = camreach(cli_env, "status")
    assert "farmhouse" in text.stdout and "porch" in text.stdout


def test_invalid_file_changes_nothing(cli_env: dict[str, str], site_file: Path) -> None:
    assert camreach(cli_env, "site", "apply", str(site_file)).returncode == 0
    edit(site_file, lambda d: (d["router"].update(host="x;reboot", extra=1),
                               d["cameras"][0].update(host="nope")))
    res = camreach(cli_env, "site", "apply", str(site_file))
    assert res.returncode == 2
    assert "router.host" in res.stderr
    assert "router.extra: unknown field" in res.stderr
    assert "cameras.0.host" in res.stderr
    assert "Traceback" not in res.stderr
    shown = yaml.safe_load(camreach(cli_env, "site", "show", "farmhouse").stdout)
    assert shown["router"]["host"] == "192.168.1.1"


def test_show_unknown_site(cli_env: dict[str, str]) -> None:
    res = camreach(cli_env, "site", "show", "nowhere")
    assert res.returncode == 1
    assert "There is no site named 'nowhere'" in res.stderr


def test_missing_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    res = camreach(cli_env, "site", "apply", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2
    assert "Cannot read" in res.stderr and "Traceback" not in res.stderr


def test_run_without_token_or_admins(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in cli_env.items() if k != "TELEGRAM_BOT_TOKEN"}
    res = camreach(env, "run", cwd=tmp_path)
    assert res.returncode != 0
    assert "TELEGRAM_BOT_TOKEN" in res.stderr and "@BotFather" in res.stderr
    assert "Traceback" not in res.stderr
    env = dict(cli_env, CAMREACH_ADMINS="")
    res = camreach(env, "run", cwd=tmp_path)
    assert res.returncode != 0
    assert "CAMREACH_ADMINS" in res.stderr and "user id" in res.stderr
    assert "Traceback" not in res.stderr
    env = dict(cli_env, CAMREACH_ADMINS="me")
    res = camreach(env, "run", cwd=tmp_path)
    assert res.returncode != 0 and "numeric Telegram user ids" in res.stderr


def test_wrong_secret_key_is_clear(cli_env: dict[str, str], site_file: Path) -> None:
    import asyncio

    from cryptography.fernet import Fernet

    from bot.core import Core
    from bot.settings import Settings

    async def store() -> None:
        core = await Core.open(Settings(_env_file=None, database_url=cli_env["DATABASE_URL"],  # type: ignore[call-arg]
                                        camreach_secret_key=cli_env["CAMREACH_SECRET_KEY"],
                                        camreach_data_dir=Path(cli_env["CAMREACH_DATA_DIR"])))
        await core.secrets.put("do-token", "dop_v1_" + "a" * 64)
        await core.close()

    asyncio.run(store())
    env = dict(cli_env, CAMREACH_SECRET_KEY=Fernet.generate_key().decode())
    res = camreach(env, "site", "list")
    assert res.returncode == 1
    assert "cannot be decrypted with this CAMREACH_SECRET_KEY" in res.stderr
    env = dict(cli_env, CAMREACH_SECRET_KEY="not-a-key")
    res = camreach(env, "site", "list")
    assert "CAMREACH_SECRET_KEY is not a valid key" in res.stderr


def test_check_says_which_part_failed_and_exits_1(cli_env: dict[str, str], site_file: Path,
                                                  tmp_path: Path) -> None:
    """A site without its droplet yet: the real probes run and say what is missing."""
    assert camreach(cli_env, "site", "apply", str(site_file)).returncode == 0
    res = camreach(cli_env, "check", "farmhouse", "--json")
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    assert list(doc)[:4] == ["droplet", "tunnel", "router", "modem"]
    assert doc["droplet"]["state"] in ("unknown", "failing")
    assert "droplet" in doc["droplet"]["summary"].lower()
    missing = camreach(cli_env, "check", "nowhere")
    assert missing.returncode != 0 and "nowhere" in missing.stderr
