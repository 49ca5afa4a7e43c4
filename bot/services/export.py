"""A stored site as a site file again (``camreach site export NAME``).

The output is what ``camreach site apply FILE`` reads and, applied, gives the same site: every
field of the stored spec in the order of examples/site.yaml, ``null`` values left out (they
are the defaults). Secrets are never written: only ``*_env`` references. A secret typed in chat
lives encrypted in camreach's database instead: a camera password typed in chat gets a variable
name derived from the site and the camera, and a comment says that the value is in camreach, so
applying the file elsewhere needs that variable set (likewise for a SIM PIN stored beside the
variable modem.pin_env names). Nothing is decrypted here: only the secrets' names are read.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Collection
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bot.actions import action
from bot.db.models import Secret, Site
from bot.errors import NotFound
from bot.site import SiteSpec, parse_site


def modem_pin_secret(site: str) -> str:
    """Where a SIM PIN typed in chat is stored (as bot/services/setup_flow.py names it)."""
    return f"modem-pin:{site}"


def derived_env(*parts: str) -> str:
    """``farm-1``, ``cam``, ``gate`` -> ``FARM_1_CAM_GATE``: a valid ``*_env`` name."""
    name = "_".join(re.sub(r"[^A-Z0-9]+", "_", p.upper()).strip("_") for p in parts)
    return f"SITE_{name}" if name[:1].isdigit() else name  # a variable cannot start with 0-9


async def export_site(sessions: async_sessionmaker[AsyncSession], name: str) -> str:
    """Site ``name`` as the YAML of a site file; NotFound when there is no such site."""
    async with sessions() as s:
        site = (await s.execute(select(Site).where(Site.name == name)
                                .options(selectinload(Site.cameras)))).scalar_one_or_none()
        if site is None:
            raise NotFound(f"There is no site named {name!r}. {action('site list')} shows them.")
        spec = SiteSpec.model_validate(site.spec)
        stored_for = {c.name: c.password_secret for c in site.cameras if c.password_secret}
        wanted = [*stored_for.values(), modem_pin_secret(name)]
        present = set((await s.execute(
            select(Secret.name).where(Secret.name.in_(wanted)))).scalars())
    stored = {cam for cam, secret in stored_for.items() if secret in present}
    return render_site(spec, stored_cameras=stored,
                       stored_pin=modem_pin_secret(name) in present)


def render_site(spec: SiteSpec, *, stored_cameras: Collection[str] = (),
                stored_pin: bool = False) -> str:
    """The site file for ``spec``; ``stored_cameras`` have a password stored in camreach,
    ``stored_pin``: so has the SIM PIN."""
    used = {n for n in (spec.router.password_env, spec.modem.pin_env, spec.modem.password_env,
                        *(c.password_env for c in spec.cameras)) if n}

    def fresh(base: str) -> str:
        name, n = base, 1
        while name in used:  # two cameras "Gate" and "gate", or a name the file uses already
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        return name

    notes: dict[str, list[str]] = {"router": [], "modem": [], "cameras": []}
    # A PIN typed in /setup is used when the variable modem.pin_env names is not set; without
    # pin_env the site uses no PIN at all, so none is named here (a stale PIN sent to the SIM
    # would count towards its PUK lock).
    if stored_pin and spec.modem.pin_env is not None:
        notes["modem"].append(
            f"The SIM PIN is stored encrypted in camreach (typed in chat) and used while "
            f"{spec.modem.pin_env} is not set. Applying this file on another camreach needs "
            f"{spec.modem.pin_env} set to it there (in its environment or .env).")
    elif stored_pin:
        notes["modem"].append(
            "camreach also holds a SIM PIN typed in chat, unused while modem.pin_env is not set.")
    cameras = []
    derived, overridden = [], []
    for cam in spec.cameras:
        if cam.name in stored_cameras:
            if cam.password_env is None:
                cam = cam.model_copy(update={
                    "password_env": fresh(derived_env(spec.name, "cam", cam.name, "password"))})
                derived.append(cam)
            else:
                overridden.append(cam)
        cameras.append(cam)
    if derived:
        notes["cameras"].append(
            "These camera passwords are stored encrypted in camreach (typed in chat), not in "
            "a variable. Applying this file on another camreach needs each variable set there "
            "(in its environment or .env): "
            + ", ".join(f"{c.password_env} ({c.name})" for c in derived) + ".")
    if overridden:
        notes["cameras"].append(
            "A password typed in chat is stored encrypted in camreach and used instead of the "
            "variable for: " + ", ".join(f"{c.name} ({c.password_env})" for c in overridden)
            + ". On another camreach, set the variable to that password.")
    if spec.router.key_file is not None:
        notes["router"].append(
            f"router.key_file {spec.router.key_file} is read on the machine that applies this "
            "file: it must exist there, for its owner alone (chmod 600); a relative path is "
            "from the directory camreach runs in.")
    exported = spec.model_copy(update={"cameras": cameras})

    doc = _without_nulls(exported.to_json())
    if not doc.get("health"):
        doc.pop("health", None)  # no override: HealthSpec() is the default
    lines = [
        f"# Site {spec.name}, exported by `camreach site export {spec.name}`.",
        "# Apply it again (here or on another camreach) with `camreach site apply FILE`;",
        "# examples/site.yaml explains every field. No secret is written here: fields ending in",
        "# _env name environment variables that hold them (camreach's environment or .env).",
        "",
    ]
    for key, value in doc.items():
        section = yaml.dump({key: value}, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                            default_flow_style=False).rstrip("\n")
        if isinstance(value, dict | list):
            lines.append("")
        lines.extend(f"# {line}" for note in notes.get(key, []) for line in _wrap(note))
        lines.append(section)
    text = "\n".join(lines) + "\n"
    # The point of an export is that it applies again: a file that would not is a bug here.
    again = parse_site(yaml.safe_load(text), check_files=False)
    if again != exported:
        raise RuntimeError(f"the export of site {spec.name} does not read back as the same site")
    return text


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as in examples/site.yaml."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _wrap(text: str, width: int = 93) -> list[str]:
    return textwrap.wrap(text, width) or [""]

