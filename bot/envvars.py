"""The values of the variables that a site file's ``*_env`` fields name.

A site file never holds a secret: ``password_env: ROUTER_PASSWORD`` names the variable that
does. camreach looks it up in its own environment first, then in the ``.env`` file of the
working directory (the file :mod:`bot.settings` reads too), so a secret kept in ``.env`` works
without exporting it. Values are never logged; callers add them to the log redactor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

__all__ = ["DOTENV_FILE", "env_value"]

DOTENV_FILE = ".env"  # relative to the working directory, like Settings' env_file


def env_value(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The value of variable ``name``, or None when it is unset or empty.

    With ``env`` (tests, or a caller that has its own environment) only that mapping is
    consulted; otherwise ``os.environ``, then ``./.env``. The file is read on each call (it is
    small, and an edit must count without a restart); a missing or unreadable file is no file.
    """
    if env is not None:
        return env.get(name) or None
    value = os.environ.get(name)
    if value:
        return value
    return _dotenv().get(name) or None


def _dotenv() -> Mapping[str, str | None]:
    try:
        path = Path.cwd() / DOTENV_FILE
        if not path.is_file():
            return {}
        # interpolate=False: a secret containing "$" is taken as written.
        return dotenv_values(path, interpolate=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
