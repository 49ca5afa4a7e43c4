"""handlers/ is Telegram only: no database, SSH, cloud or HTTP libraries (the core does that)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("sqlalchemy", "asyncssh", "digitalocean", "httpx", "requests", "aiohttp",
             "tftpy", "bot.db", "bot.adapters")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "handlers").glob("*.py")), ids=lambda p: p.name)
def test_handlers_import_no_io_libraries(path: Path) -> None:
    bad = {m for m in imported_modules(path)
           if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_renderers_do_no_io() -> None:
    io = ("asyncssh", "httpx", "sqlalchemy", "digitalocean", "subprocess", "socket",
          "bot.settings", "bot.db", "bot.adapters")
    for path in sorted((ROOT / "bot" / "render").glob("*.py")):
        bad = {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".")
                                                        for f in io)}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def core_uses(path: Path) -> set[str]:
    """Names reached as ``core.X`` / ``context.core.X`` in one module."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        if (isinstance(value, ast.Name) and value.id == "core") or (
                isinstance(value, ast.Attribute) and value.attr == "core"):
            used.add(node.attr)
    return used


@pytest.mark.parametrize("path", sorted((ROOT / "handlers").glob("*.py")), ids=lambda p: p.name)
def test_handlers_call_only_core_methods(path: Path) -> None:
    import inspect

    from bot.core import Core

    for name in sorted(core_uses(path)):
        member = inspect.getattr_static(Core, name, None)
        assert not name.startswith("_"), f"{path.name}: core.{name} is private"
        assert inspect.isfunction(member), (
            f"{path.name}: core.{name} is not a public method of Core (services, settings "
            "and the runner stay behind the core's methods)")


def test_core_methods_return_plain_views() -> None:
    """No ORM rows and no adapter objects cross the core's public surface."""
    import inspect
    import typing

    from bot import core as core_module
    from bot.adapters.digitalocean import DigitalOceanClient
    from bot.adapters.ssh import SshConnection
    from bot.db import models

    orm = {cls for cls in vars(models).values()
           if isinstance(cls, type) and issubclass(cls, models.Base) and cls is not models.Base}
    forbidden = orm | {DigitalOceanClient, SshConnection}
    for name, fn in inspect.getmembers(core_module.Core, inspect.isfunction):
        if name.startswith("_"):
            continue
        from jobs import operations as runner_module

        hints = typing.get_type_hints(fn, vars(core_module) | vars(typing)
                                      | vars(runner_module))
        returned = hints.get("return")
        flat = {returned, *typing.get_args(returned)}
        for arg in list(flat):
            flat |= set(typing.get_args(arg))
        assert not flat & forbidden, f"Core.{name} returns {returned}"
