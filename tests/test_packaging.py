"""docker-compose.yml, the Dockerfile, .env.example and the settings agree."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import yaml

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile() -> list[str]:
    return [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip()]


def test_services_and_database_url_agree() -> None:
    c = compose()
    assert set(c["services"]) == {"bot", "worker", "postgres"}
    bot, pg, worker = (c["services"][n] for n in ("bot", "postgres", "worker"))
    assert worker["command"] == ["worker"]
    assert worker["environment"]["DATABASE_URL"] == bot["environment"]["DATABASE_URL"]
    assert worker["volumes"] == bot["volumes"]  # the same secret key
    url = urlparse(bot["environment"]["DATABASE_URL"])
    assert url.scheme == "postgresql" and url.hostname == "postgres"
    env = pg["environment"]
    assert (url.username, url.password, url.path.lstrip("/")) == (
        env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"])
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])


def test_bot_env_vars_are_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    bot_env = set(compose()["services"]["bot"]["environment"])
    assert bot_env <= fields, bot_env - fields
    assert {"TELEGRAM_BOT_TOKEN", "CAMREACH_ADMINS", "DATABASE_URL"} <= bot_env


def test_data_volume_matches_data_dir() -> None:
    c = compose()
    bot = c["services"]["bot"]
    data_dir = bot["environment"]["CAMREACH_DATA_DIR"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in bot["volumes"]}
    assert data_dir in mounts and mounts[data_dir] in c["volumes"]
    lines = dockerfile()
    assert f"ENV CAMREACH_DATA_DIR={data_dir}" in lines
    assert any(ln.startswith("VOLUME") and data_dir in ln for ln in lines)


def test_dockerfile_slim_and_non_root() -> None:
    lines = dockerfile()
    assert re.match(r"FROM python:3\.1[1-9]-slim", lines[0])
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert lines[-1] == 'CMD ["run"]' and 'ENTRYPOINT ["camreach"]' in lines
    copied = {ln.split()[1] for ln in lines if ln.startswith("COPY ")}
    for needed in ("bot", "handlers", "jobs", "alembic"):
        assert needed in copied


def test_dockerfile_installs_non_editable_with_the_migrations() -> None:
    lines = dockerfile()
    installs = [shlex.split(ln) for ln in lines if ln.startswith("RUN ") and "pip install" in ln]
    assert len(installs) == 1, installs
    words = installs[0]
    assert not {"-e", "--editable"} & set(words), words
    assert "." in words[words.index("install"):words.index("&&") if "&&" in words else None]
    # The wheel maps the top-level alembic/ folder (next to pyproject.toml) into bot/migrations.
    assert "COPY alembic ./alembic" in lines
    assert "COPY pyproject.toml README.md ./" in lines


def test_pyproject_lists_every_package_and_ships_the_migrations() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # A directory with Python files in it is a package that the wheel must contain.
    found = {p.parent.relative_to(ROOT).as_posix().replace("/", ".")
             for top in ("bot", "handlers", "jobs") for p in (ROOT / top).rglob("*.py")
             if "__pycache__" not in p.parts}
    migrations = {"bot.migrations", "bot.migrations.versions"}
    assert set(tool["packages"]) == found | migrations, (
        "add new packages to [tool.setuptools] packages in pyproject.toml")
    assert tool["package-dir"] == {"bot.migrations": "alembic"}
    assert "script.py.mako" in tool["package-data"]["bot.migrations"]
    for needed in ("env.py", "script.py.mako"):
        assert (ROOT / "alembic" / needed).is_file()
    # Never a top-level `alembic` package: it would shadow the alembic library.
    assert not any(p == "alembic" or p.startswith("alembic.") for p in tool["packages"])


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", text, flags=re.M))
    assert {name.upper() for name in Settings.model_fields} <= documented
