"""The site model: one remote location (droplet, router, modem, cameras) as a YAML file.

Validated with pydantic; extra fields are errors. Secrets are never inline: the file names
environment variables (``password_env: CAM_PASSWORD``) that hold them.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.errors import ValidationFailed

NAME_RE = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
ENV_RE = r"^[A-Z_][A-Z0-9_]*$"
# Hostnames or IPv4 literals; no shell or UCI metacharacters get this far.
HOST_RE = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$"
# APNs are DNS-like labels (3GPP TS 23.003): letters, digits, '-' and '.'.
APN_RE = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,98}[A-Za-z0-9])?$"

PATTERN_HELP = {
    NAME_RE: "use letters, digits and '-' (not at the ends), at most 63 characters",
    ENV_RE: "give the NAME of an environment variable (A-Z, 0-9, _), not the secret itself",
    HOST_RE: "give an IP address or host name",
    APN_RE: "an APN has only letters, digits, '.' and '-' (e.g. airtelgprs.com)",
}

Name = Annotated[str, Field(pattern=NAME_RE, description="letters, digits, '-'")]
EnvName = Annotated[str, Field(pattern=ENV_RE, description="an environment variable name")]
Host = Annotated[str, Field(pattern=HOST_RE)]
Port = Annotated[int, Field(ge=1, le=65535)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
Protocol = Literal["auto", "ncm", "qmi", "3g", "mbim", "dhcp"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DropletSpec(Strict):
    region: Slug = "blr1"
    size: Slug = "s-1vcpu-512mb-10gb"
    image: Slug = "ubuntu-24-04-x64"


class VpnSpec(Strict):
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.8.0.0/24")
    port: Port = 51820

    @field_validator("subnet")
    @classmethod
    def _room_for_peers(cls, v: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if v.prefixlen > 29:
            raise ValueError(
                "the VPN subnet needs room for a server, the router and phones: /29 or larger"
            )
        if not v.is_private:
            raise ValueError("the VPN subnet must be a private range such as 10.8.0.0/24")
        return v

    @property
    def server_address(self) -> ipaddress.IPv4Address:
        return next(self.subnet.hosts())

    @property
    def router_address(self) -> ipaddress.IPv4Address:
        hosts = self.subnet.hosts()
        next(hosts)
        return next(hosts)


class RouterSpec(Strict):
    host: Host = "192.168.1.1"
    port: Port = 22
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    password_env: EnvName | None = None
    key_file: Path | None = None
    lan_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.1.0/24")

    @model_validator(mode="after")
    def _one_credential(self) -> RouterSpec:
        if (self.password_env is None) == (self.key_file is None):
            raise ValueError("give exactly one of password_env or key_file")
        return self


class ModemSpec(Strict):
    protocol: Protocol = "auto"
    apn: Annotated[str, Field(pattern=APN_RE)] | None = None
    pin_env: EnvName | None = None
    username: Annotated[str, Field(max_length=64)] | None = None
    password_env: EnvName | None = None
    auth: Literal["none", "pap", "chap", "both"] = "none"
    pdptype: Literal["ip", "ipv6", "ipv4v6"] = "ip"
    mode: Literal["auto", "lte", "prefer-lte", "umts", "prefer-umts"] = "auto"

    @model_validator(mode="after")
    def _apn_when_needed(self) -> ModemSpec:
        if self.protocol not in ("dhcp", "auto") and not self.apn:
            raise ValueError(f"protocol {self.protocol} needs an apn (ask your operator)")
        return self


class CameraSpec(Strict):
    name: Name
    host: ipaddress.IPv4Address
    port: Port = 80
    user: Annotated[str, Field(min_length=1, max_length=64)] = "admin"
    password_env: EnvName | None = None
    kind: Literal["hikvision", "onvif", "generic"] = "hikvision"


class SiteSpec(Strict):
    name: Name
    droplet: DropletSpec = DropletSpec()
    vpn: VpnSpec = VpnSpec()
    router: RouterSpec
    modem: ModemSpec = ModemSpec()
    cameras: list[CameraSpec] = []

    @model_validator(mode="after")
    def _consistent(self) -> SiteSpec:
        lan = self.router.lan_subnet
        if self.vpn.subnet.overlaps(lan):
            raise ValueError(f"vpn.subnet {self.vpn.subnet} overlaps router.lan_subnet {lan}")
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.name in seen:
                raise ValueError(f"two cameras are named {cam.name!r}")
            seen.add(cam.name)
            if cam.host not in lan:
                raise ValueError(
                    f"camera {cam.name} ({cam.host}) is not in router.lan_subnet {lan}"
                )
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_site(data: Any) -> SiteSpec:
    """Validate a decoded document; every problem is reported with its field path."""
    if not isinstance(data, dict):
        raise ValidationFailed("A site file must be a YAML mapping (name:, router:, ...).")
    try:
        return SiteSpec.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            "The site file is invalid:\n" + "\n".join(format_errors(exc))
        ) from None


def format_errors(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "string_pattern_mismatch":
            pattern = str((err.get("ctx") or {}).get("pattern", ""))
            msg = f"{err['input']!r} is not allowed here: " + PATTERN_HELP.get(pattern, msg)
        elif err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see examples/site.yaml)"
        lines.append(f"- {path}: {msg}")
    return lines


def load_site_file(path: Path) -> SiteSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(f"Cannot read {path}: {exc.strerror}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValidationFailed(f"{path} is not valid YAML{where}.") from None
    return parse_site(data)


def valid_name(name: str) -> bool:
    return re.fullmatch(NAME_RE, name) is not None
