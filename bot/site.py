"""The site model: one remote location (droplet, router, modem, cameras) as a YAML file.

Validated with pydantic; extra fields are errors. Secrets are never inline: the file names
environment variables (``password_env: CAM_PASSWORD``) that hold them.

Every problem is reported with its field path (``- router.host: ...``). A validator that judges
several fields together raises :class:`FieldProblems`, which names each field below the model
it belongs to. Checks of this machine's files (``router.key_file``) run only when a site file
is read (:func:`parse_site`), not when a stored spec is loaded again.
"""

from __future__ import annotations

import ipaddress
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.errors import ValidationFailed

NAME_RE = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
ENV_RE = r"^[A-Z_][A-Z0-9_]*$"
# Hostnames or IPv4 literals; no shell or UCI metacharacters get this far.
HOST_RE = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$"
# APNs are DNS-like labels (3GPP TS 23.003): letters, digits, '-' and '.'.
APN_RE = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,98}[A-Za-z0-9])?$"

PATTERN_HELP = {
    r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,500}$": "give the path on the camera, starting with /",
    r"^([01][0-9]|2[0-3]):[0-5][0-9]$": "give a time of day as HH:MM (e.g. 08:00)",
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

# The address ranges a site's networks must use, or keep clear of.
RFC1918 = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
)
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598: the LTE uplink's own addresses
HILINK_PROTOCOL = "dhcp"  # a HiLink (or RNDIS) stick: a small router with its own LAN
HILINK_LAN = ipaddress.IPv4Network("192.168.8.0/24")  # that LAN (the stick is 192.168.8.1)
SSH_PORT = 22
# What ssh-keygen and openssl write: OpenSSH, PKCS#1 (RSA/DSA/EC) and PKCS#8 private keys.
_PRIVATE_KEY_HEADER = re.compile(
    rb"-----BEGIN (?:OPENSSH |RSA |DSA |EC |ENCRYPTED )?PRIVATE KEY-----"
)
_PUBLIC_KEY = re.compile(rb"^\s*(?:ssh-|ecdsa-|sk-|-----BEGIN (?:SSH2 |RSA )?PUBLIC KEY)")
_KEY_FILE_LIMIT = 1 << 20  # a private key is a few KiB; anything this large is not one
# The validation context under which parse_site checks files on this machine.
CHECK_FILES = "check_files"


class FieldProblems(ValueError):
    """Problems found by a validator that looks at several fields at once.

    Each problem names its field relative to the model the validator belongs to
    (``"host"`` in RouterSpec, ``"vpn.subnet"`` in SiteSpec; ``""`` for the model itself), so
    :func:`format_errors` can report it under its full path.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path or '(model)'}: {msg}" for path, msg in problems))
        self.problems = problems


def _private_range(net: ipaddress.IPv4Network, example: str) -> ipaddress.IPv4Network:
    """``net`` if it lies inside an RFC 1918 range, else a ValueError saying which to use."""
    if net.overlaps(CGNAT):
        raise ValueError(
            f"{net} overlaps 100.64.0.0/10, the carrier-grade NAT range the LTE uplink gets its "
            f"address from; use a private range (RFC 1918) such as {example}"
        )
    if not any(net.subnet_of(r) for r in RFC1918):
        raise ValueError(
            f"{net} is not a private range (RFC 1918: inside 10.0.0.0/8, 172.16.0.0/12 or "
            f"192.168.0.0/16); use one such as {example}"
        )
    return net


def check_key_file(path: Path) -> None:
    """Raise ValueError unless ``path`` is a private key file only its owner can read.

    It must exist, be a regular file with no group or other permission bits, be readable by
    camreach, hold an OpenSSH or PEM private key, and have no passphrase (nobody is there to
    type it during the first contact). The key itself never appears in a message.
    """
    p = path.expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ValueError(f"{p} does not exist (give the path of the private key file)") from None
    except OSError as exc:
        raise ValueError(f"cannot read {p}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{p} is not a file (give the path of the private key file)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ValueError(
            f"{p} is open to other users (mode {mode:04o}); a private key must be for its owner "
            f"alone: run chmod 600 {p}"
        )
    try:
        with p.open("rb") as f:
            data = f.read(_KEY_FILE_LIMIT + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {p}: {exc.strerror}") from None
    if _PUBLIC_KEY.match(data):
        raise ValueError(f"{p} is a public key; give the private key file (without .pub)")
    if len(data) > _KEY_FILE_LIMIT or not _PRIVATE_KEY_HEADER.search(data):
        raise ValueError(
            f"{p} does not look like a private key (no '-----BEGIN ... PRIVATE KEY-----' line)"
        )
    import asyncssh  # here, so that reading a site file does not load SSH unless it must

    try:
        asyncssh.import_private_key(data)
    except (asyncssh.KeyImportError, ValueError) as exc:
        if "passphrase" in str(exc).lower():
            raise ValueError(
                f"{p} is protected by a passphrase, which camreach cannot type at the first "
                "contact; use a key without one (ssh-keygen -t ed25519 -N '' -f FILE makes "
                "one), or password_env instead"
            ) from None
        raise ValueError(f"{p} is not a private key camreach can read ({exc})") from None


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
        return _private_range(v, "10.8.0.0/24")

    @field_validator("port")
    @classmethod
    def _not_ssh(cls, v: int) -> int:
        if v == SSH_PORT:
            raise ValueError(
                "22 is SSH's port (the droplet's SSH, and what firewalls expect there); give "
                "WireGuard another UDP port, such as 51820"
            )
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

    @field_validator("lan_subnet")
    @classmethod
    def _private_lan(cls, v: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        return _private_range(v, "192.168.1.0/24")

    @field_validator("key_file")
    @classmethod
    def _usable_key(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        # With password_env too, "give exactly one" is the problem to report, not the file.
        if (v is not None and (info.context or {}).get(CHECK_FILES)
                and info.data.get("password_env") is None):
            check_key_file(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RouterSpec:
        problems: list[tuple[str, str]] = []
        if (self.password_env is None) == (self.key_file is None):
            problems.append(("", "give exactly one of password_env or key_file"))
        try:
            address: ipaddress.IPv4Address | None = ipaddress.IPv4Address(self.host)
        except ValueError:
            address = None
            if re.fullmatch(r"[0-9.]+", self.host):
                problems.append(("host", f"{self.host} is not a valid IPv4 address"))
        # A loopback address is an SSH port forward to the router (ssh -L 2222:192.168.1.1:22):
        # it is not on the LAN, and that is fine.
        if address is not None and not address.is_loopback and address not in self.lan_subnet:
            problems.append((
                "host",
                f"{address} is not in router.lan_subnet {self.lan_subnet}: camreach reaches the "
                "router at its LAN address (or 127.0.0.1 through an SSH port forward)",
            ))
        if problems:
            raise FieldProblems(problems)
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


# A URL path (and query) on the camera itself: host and port come from the camera entry.
SNAPSHOT_PATH_RE = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,500}$"
DAILY_RE = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class CameraSpec(Strict):
    name: Name
    host: ipaddress.IPv4Address
    port: Port = 80
    user: Annotated[str, Field(min_length=1, max_length=64)] = "admin"
    password_env: EnvName | None = None
    kind: Literal["hikvision", "onvif", "generic"] = "hikvision"
    # How camreach reaches it: through its SSH connection to the droplet (the camera's LAN
    # is routed through the tunnel), or straight, when this machine is inside the VPN.
    via: Literal["droplet", "direct"] = "droplet"
    snapshot_url: Annotated[str, Field(pattern=SNAPSHOT_PATH_RE)] | None = None
    daily_snapshot: Annotated[str, Field(pattern=DAILY_RE)] | None = None

    @model_validator(mode="after")
    def _snapshot_url_for_generic(self) -> CameraSpec:
        if self.kind == "generic" and self.snapshot_url is None:
            raise FieldProblems([("snapshot_url", "a generic camera needs the path of its "
                                                  "snapshot picture, e.g. /cgi-bin/snapshot.cgi")])
        return self


class HealthSpec(Strict):
    """Per-site overrides of the CAMREACH_* health settings (same names, lower case)."""

    check_interval: Annotated[float, Field(ge=10)] | None = None
    alert_after: Annotated[int, Field(ge=1, le=100)] | None = None
    recover_after: Annotated[int, Field(ge=1, le=100)] | None = None
    retry_interval: Annotated[float, Field(ge=1)] | None = None
    remind_every: Annotated[float, Field(ge=0)] | None = None
    alert_chat: int | None = None


class SiteSpec(Strict):
    name: Name
    # The site's local time zone (IANA name) for photo captions and daily snapshots;
    # default: the bot host's.
    timezone: Annotated[str, Field(max_length=64)] | None = None
    droplet: DropletSpec = DropletSpec()
    vpn: VpnSpec = VpnSpec()
    router: RouterSpec
    modem: ModemSpec = ModemSpec()
    cameras: list[CameraSpec] = []
    health: HealthSpec = HealthSpec()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{value!r} is not a time zone name (e.g. Asia/Kolkata, "
                                 "Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SiteSpec:
        lan, vpn = self.router.lan_subnet, self.vpn.subnet
        problems: list[tuple[str, str]] = []
        if vpn.overlaps(lan):
            problems.append(("vpn.subnet", f"{vpn} overlaps router.lan_subnet {lan}: the "
                             "tunnel and the LAN need separate ranges (e.g. 10.8.0.0/24)"))
        if self.modem.protocol == HILINK_PROTOCOL:
            for path, net, example in (("router.lan_subnet", lan, "192.168.1.0/24"),
                                       ("vpn.subnet", vpn, "10.8.0.0/24")):
                if net.overlaps(HILINK_LAN):
                    problems.append((path, (
                        f"{net} overlaps {HILINK_LAN}, the HiLink stick's own LAN (modem.protocol "
                        f"{HILINK_PROTOCOL}): the router could not tell the two apart; use "
                        f"another range, such as {example}")))
        seen: set[str] = set()
        for i, cam in enumerate(self.cameras):
            if cam.name in seen:
                problems.append((f"cameras.{i}.name", f"two cameras are named {cam.name!r}"))
            seen.add(cam.name)
            if cam.host not in lan:
                problems.append((f"cameras.{i}.host",
                                 f"camera {cam.name} ({cam.host}) is not in router.lan_subnet "
                                 f"{lan}"))
        if problems:
            raise FieldProblems(problems)
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_site(data: Any, *, check_files: bool = True) -> SiteSpec:
    """Validate a decoded document; every problem is reported with its field path.

    ``check_files`` also checks the files the site names on this machine (``router.key_file``);
    a site file is read where camreach runs, so that is the default.
    """
    if not isinstance(data, dict):
        raise ValidationFailed("A site file must be a YAML mapping (name:, router:, ...).")
    try:
        return SiteSpec.model_validate(data, context={CHECK_FILES: check_files})
    except ValidationError as exc:
        raise ValidationFailed(
            "The site file is invalid:\n" + "\n".join(format_errors(exc))
        ) from None


def format_errors(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, FieldProblems):
            for sub, msg in error.problems:
                path = ".".join(loc + (sub.split(".") if sub else [])) or "(top level)"
                lines.append(f"- {path}: {msg}")
            continue
        path = ".".join(loc) or "(top level)"
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
