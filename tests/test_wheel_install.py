"""camreach installed from its wheel (not editable), in a fresh venv outside the checkout.

The wheel is built from a copy of the sources (no build/ left in the checkout, no stale files
from an earlier build); the new venv gets its third-party dependencies from this venv through
a ``.pth`` line, so nothing is downloaded, and camreach itself only from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet

import bot

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "bot", "handlers", "jobs", "alembic")
TIMEOUT = 120


@dataclass(frozen=True)
class Installed:
    src: Path  # the copy of the sources the wheel was built from
    wheel: Path
    venv: Path
    site_packages: Path
    elsewhere: Path  # a working directory that is not the checkout

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def camreach(self) -> Path:
        return self.venv / "bin" / "camreach"

    def head(self) -> str:
        head = ScriptDirectory(str(self.src / "alembic")).get_current_head()
        assert head
        return head


def run(cmd: list[str | Path], *, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                         timeout=TIMEOUT, cwd=cwd, env=env)
    assert res.returncode == 0, (cmd, res.stdout, res.stderr)
    return res


def can_build_offline() -> bool:
    """This venv's setuptools can build the wheel itself (pyproject asks for >=69 and wheel)."""
    try:
        setuptools = tuple(int(p) for p in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    try:
        metadata.version("wheel")
        has_wheel = True
    except metadata.PackageNotFoundError:
        has_wheel = setuptools >= (70, 1)  # bdist_wheel moved into setuptools
    return setuptools >= (69, 0) and has_wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(ROOT)
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, src / name)

    dist = base / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    offline = ["--no-build-isolation", "--no-index"] if can_build_offline() else []
    run([*pip, "wheel", "--no-deps", *offline, "-w", dist, src])
    (wheel,) = dist.glob("camreach-*.whl")

    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site_packages = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                            "['purelib'])"]).stdout.strip())
    # Third-party dependencies from this venv (only that directory: its .pth files, such as
    # the editable camreach's, are not run, so `bot` cannot come from the checkout).
    (site_packages / "_camreach_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([*pip, "--python", python, "install", "--no-deps", "--no-index", "--ignore-installed",
         wheel])

    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return Installed(src, wheel, venv, site_packages, elsewhere)


def command_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CAMREACH_", "TELEGRAM_", "DIGITALOCEAN_"))
           and k not in ("DATABASE_URL", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["CAMREACH_DATA_DIR"] = str(data_dir)
    # A key of its own, so that the first run's only stderr line is about the database.
    env["CAMREACH_SECRET_KEY"] = Fernet.generate_key().decode()
    return env


def camreach(inst: Installed, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(inst.camreach), *args], env=env, cwd=inst.elsewhere,
                          capture_output=True, text=True, timeout=TIMEOUT)


def assert_no_chatter(res: subprocess.CompletedProcess[str]) -> None:
    for stream in (res.stdout, res.stderr):
        assert "INFO" not in stream and "alembic" not in stream.lower(), stream
        assert "Traceback" not in stream, stream


def test_wheel_ships_the_migrations_and_no_alembic_package(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        (top_level,) = (n for n in names if n.endswith(".dist-info/top_level.txt"))
        tops = set(whl.read(top_level).decode().split())
    assert tops == {"bot", "handlers", "jobs"}
    assert not any(n.startswith("alembic/") for n in names)
    assert {"bot/migrations/env.py", "bot/migrations/script.py.mako"} <= names
    versions = {p.name for p in (installed.src / "alembic" / "versions").glob("*.py")}
    assert versions and {n.rsplit("/", 1)[1] for n in names
                         if n.startswith("bot/migrations/versions/")} == versions
    # Every module of the sources is in the wheel (pyproject lists the packages by hand).
    modules = {p.relative_to(installed.src).as_posix()
               for top in ("bot", "handlers", "jobs")
               for p in (installed.src / top).rglob("*.py")}
    assert modules <= names, sorted(modules - names)


def test_imports_come_from_the_new_venv(installed: Installed) -> None:
    code = ("import alembic.command, bot, bot.db.engine as e; "
            "print(bot.__file__); print(alembic.command.__file__); print(e.migrations_dir())")
    res = run([installed.python, "-c", code], cwd=installed.elsewhere,
              env=command_env(installed.elsewhere / "data"))
    bot_file, alembic_file, migrations = (Path(line) for line in res.stdout.split())
    assert bot_file.is_relative_to(installed.site_packages)
    assert not bot_file.resolve().is_relative_to(ROOT)
    assert migrations == installed.site_packages / "bot" / "migrations"
    # The alembic library, not camreach's migrations, and none installed into the new venv.
    assert not alembic_file.is_relative_to(installed.site_packages)
    assert not (installed.site_packages / "alembic").exists()


def test_commands_from_another_directory(installed: Installed, tmp_path: Path) -> None:
    env = command_env(tmp_path / "data")
    version = camreach(installed, env, "--version")
    assert version.returncode == 0, version.stderr
    assert f"camreach, version {bot.__version__}" in version.stdout

    up = camreach(installed, env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert_no_chatter(up)
    assert (tmp_path / "data" / "camreach.db").is_file()

    status = camreach(installed, env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == []
    assert_no_chatter(status)
    assert status.stderr == ""  # already upgraded: nothing to say

    current = camreach(installed, env, "db", "current")
    assert current.returncode == 0 and current.stdout.strip() == installed.head()
    assert_no_chatter(current)


def test_first_command_says_one_line_then_nothing(installed: Installed, tmp_path: Path) -> None:
    env = command_env(tmp_path / "data")
    first = camreach(installed, env, "status", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == []
    assert first.stderr.splitlines() == [f"Database upgraded to revision {installed.head()}."]
    assert_no_chatter(first)

    second = camreach(installed, env, "status", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == []
    assert second.stderr == ""
    assert_no_chatter(second)
