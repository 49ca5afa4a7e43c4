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
