"""What the guided /setup needs from the core: a site from a name alone, the steps done so
far (from the database, so /setup resumes after anything, a restart included), the router's
address and the modem's APN as answers, and what to undo after /cancel."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.actions import action
from bot.db.models import ACTIVE_STATES, Droplet, Operation, Router, Site
from bot.errors import NotFound, ValidationFailed
from bot.site import NAME_RE, SiteSpec, parse_site

# Operators whose APN people type most (the user's own write-up is from India); free text too.
APN_PRESETS: tuple[tuple[str, str], ...] = (
    ("Airtel India", "airtelgprs.com"),
    ("Jio", "jionet"),
    ("Vodafone Idea", "www"),
    ("BSNL", "bsnlnet"),
)
STEPS = ("droplet", "router", "modem", "push", "camera")


def env_name(*parts: str) -> str:
    """``farm-1``, ``router password`` -> ``FARM_1_ROUTER_PASSWORD`` (a valid *_env name;
    ``SITE_`` in front of one that would start with a digit)."""
    name = "_".join(re.sub(r"[^A-Z0-9]+", "_", p.upper()).strip("_") for p in parts)
    return f"SITE_{name}" if name[:1].isdigit() else name


def modem_pin_secret(site: str) -> str:
    return f"modem-pin:{site}"


def new_site_doc(name: str) -> dict[str, Any]:
    """A site from its name alone: the defaults of examples/site.yaml (those of SiteSpec),
    the router at 192.168.1.1 with its password typed in chat once (never stored: camreach's
    key replaces it), no APN yet."""
    if not re.fullmatch(NAME_RE, name):
        raise ValidationFailed(f"{name!r} cannot be a site name: use letters, digits and '-' "
                               "(not at the ends), at most 63 characters, e.g. farmhouse.")
    return {"name": name, "router": {"host": "192.168.1.1", "lan_subnet": "192.168.1.0/24",
                                     "password_env": env_name(name, "router_password")}}


def router_host_doc(doc: dict[str, Any], host: str) -> dict[str, Any]:
    """The spec with the router at ``host`` (its LAN, the /24 around it unless it fits the
    current one); a clear message for a malformed or public address."""
    try:
        address = ipaddress.IPv4Address(host.strip())
    except ValueError:
        raise ValidationFailed(f"{host!r} is not an IPv4 address: give the router's LAN "
                               "address, e.g. 192.168.1.1.") from None
    if not address.is_private or address.is_loopback:
        raise ValidationFailed(f"{address} is not a LAN address: the router's own address is "
                               "private, e.g. 192.168.1.1 (OpenWrt's default).")
    router = dict(doc["router"])
    lan = ipaddress.IPv4Network(router.get("lan_subnet", "192.168.1.0/24"))
    if address not in lan:
        lan = ipaddress.IPv4Network(f"{address}/24", strict=False)
    router.update(host=str(address), lan_subnet=str(lan))
    return {**doc, "router": router}


def modem_doc(doc: dict[str, Any], apn: str, *, pin: bool) -> dict[str, Any]:
    modem = {**doc.get("modem", {}), "apn": apn.strip()}
    if pin:
        modem["pin_env"] = env_name(doc["name"], "sim_pin")
    else:
        modem.pop("pin_env", None)
    return {**doc, "modem": modem}


def validate(doc: dict[str, Any]) -> SiteSpec:
    return parse_site(doc, check_files=False)


@dataclass(frozen=True)
class SetupProgress:
    """Which /setup steps are done for a site, from what the database holds."""

    site: str
    droplet: bool  # a droplet with its public address
    router: bool  # camreach's key installed and the router detected
    modem: bool  # an APN chosen (or a protocol that needs none)
    push: bool  # the configuration applied and confirmed
    camera: bool
    droplet_address: str | None = None
    router_host: str = ""
    apn: str | None = None
    cameras: tuple[str, ...] = ()
    price_monthly: float | None = None
    region: str | None = None
    size: str | None = None
    droplet_op: int | None = None  # a provisioning of this site running now
    droplet_record: bool = False  # DigitalOcean was asked for a droplet (it may not run yet)

    def done(self, step: str) -> bool:
        return bool(getattr(self, step))

    @property
    def next_step(self) -> str | None:
        return next((s for s in STEPS if not self.done(s)), None)


async def progress(sessions: async_sessionmaker[AsyncSession], name: str) -> SetupProgress:
    async with sessions() as s:
        site = (await s.execute(select(Site).where(Site.name == name))).scalar_one_or_none()
        if site is None:
            raise NotFound(f"There is no site named {name!r}.")
        spec = SiteSpec.model_validate(site.spec)
        d = (await s.execute(select(Droplet).where(Droplet.site_id == site.id))).scalar()
        r = (await s.execute(select(Router).where(Router.site_id == site.id))).scalar()
        running = (await s.execute(
            select(Operation.id).where(Operation.site_id == site.id,
                                       Operation.kind == "provision_droplet",
                                       Operation.state.in_(ACTIVE_STATES))
            .order_by(Operation.id.desc()).limit(1))).scalar()
        return SetupProgress(
            site=name,
            droplet=bool(d and d.do_id and d.public_ipv4),
            router=bool(r and r.key_installed and r.openwrt_release),
            modem=bool(spec.modem.apn) or spec.modem.protocol == "dhcp",
            push=bool(r and r.last_push_at),
            camera=bool(spec.cameras),
            droplet_address=d.public_ipv4 if d else None,
            router_host=spec.router.host,
            apn=spec.modem.apn,
            cameras=tuple(c.name for c in spec.cameras),
            price_monthly=d.price_monthly if d else None,
            region=d.region if d else spec.droplet.region,
            size=d.size if d else spec.droplet.size,
            droplet_op=running,
            droplet_record=bool(d and d.do_id),
        )


def undo_list(p: SetupProgress) -> list[str]:
    """What a /setup left on other machines, each with the command that removes it (a site
    with nothing outside the database is simply forgotten on /cancel)."""
    out: list[str] = []
    if p.droplet or p.droplet_address or p.droplet_record or p.droplet_op is not None:
        where = p.droplet_address or "being created"
        out.append(f"the droplet ({where}; DigitalOcean bills it monthly): "
                   f"{action('droplet destroy', p.site)}")
    if p.router or p.push:
        out.append("camreach's key and settings on the router: harmless, and a factory reset "
                   "of the router removes them")
    return out
