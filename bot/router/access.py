"""Reaching the router: first contact on the LAN, camreach's key, then the tunnel.

First contact logs in with the root password (from the environment variable the site file
names) or a key file, pins the router's host key and installs camreach's own public key in
``/etc/dropbear/authorized_keys``. From then on camreach logs in with its key only: on the
LAN, or through the droplet to the router's tunnel address (the droplet is the jump host).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.adapters.ssh import SshConnection, SshTarget
from bot.errors import ConfigError, RemoteFailed
from bot.logs import REDACTOR
from bot.site import SiteSpec

__all__ = [
    "AUTHORIZED_KEYS",
    "RouterCredentials",
    "RouterTiming",
    "install_client_key",
    "lan_target",
    "router_credentials",
    "tunnel_target",
]

AUTHORIZED_KEYS = "/etc/dropbear/authorized_keys"

# The key arrives on stdin; the script never sees it as code.
INSTALL_KEY_SCRIPT = r"""
umask 077
f=/etc/dropbear/authorized_keys
IFS= read -r key || [ -n "$key" ] || exit 2
case "$key" in
	ssh-ed25519\ *|ssh-rsa\ *|ecdsa-sha2-*) ;;
	*) exit 2 ;;
esac
mkdir -p /etc/dropbear && touch "$f" && chmod 600 "$f" || exit 3
if grep -qxF "$key" "$f"; then
	echo present
else
	printf '%s\n' "$key" >> "$f" && echo added
fi
"""

_PUBKEY_RE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( [\w.@-]+)?")


@dataclass(frozen=True)
class RouterTiming:
    """Timeouts for the router; tests shorten them."""

    connect_timeout: float = 15.0
    command_timeout: float = 60.0
    rollback_deadline: int = 120  # seconds the router waits for a confirm before rolling back
    holdoff: int = 4  # seconds after an apply before a confirm counts (the reload must run)
    confirm_grace: float = 15.0  # after the deadline, how long to keep asking what happened


@dataclass(frozen=True)
class RouterCredentials:
    """How the first contact logs in. ``repr`` never shows the secret."""

    password: str | None = None
    key: str | None = None  # OpenSSH private key text from the site's key_file

    def __repr__(self) -> str:
        kind = "password" if self.password else "key file" if self.key else "none"
        return f"RouterCredentials({kind})"


def router_credentials(spec: SiteSpec, env: Mapping[str, str] | None = None) -> RouterCredentials:
    """The router login from the site file: a password from the environment, or a key file."""
    env = os.environ if env is None else env
    r = spec.router
    if r.password_env is not None:
        value = env.get(r.password_env)
        if not value:
            raise ConfigError(
                f"The router password is read from the environment variable {r.password_env}, "
                "which is not set. Set it where camreach runs (or in .env) and try again."
            )
        REDACTOR.add(value)
        return RouterCredentials(password=value)
    assert r.key_file is not None
    path = Path(r.key_file).expanduser()
    try:
        return RouterCredentials(key=path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"Cannot read the router key file {path}: {exc.strerror}.") from None


def lan_target(
    spec: SiteSpec, *, client_key: str, pinned: str | None,
    credentials: RouterCredentials | None = None, timing: RouterTiming = RouterTiming(),
) -> SshTarget:
    """The router at its LAN address. Without ``credentials`` only camreach's key is offered."""
    r = spec.router
    creds = credentials or RouterCredentials()
    return SshTarget(
        host=r.host, port=r.port, user=r.user, label=f"the router of {spec.name}",
        pinned_host_key=pinned, client_key=creds.key or client_key, password=creds.password,
        connect_timeout=timing.connect_timeout, command_timeout=timing.command_timeout,
    )


def tunnel_target(
    spec: SiteSpec, *, client_key: str, pinned: str | None, timing: RouterTiming = RouterTiming()
) -> SshTarget:
    """The router at its tunnel address, to be reached through the droplet."""
    address = ipaddress.IPv4Address(spec.vpn.router_address)
    return SshTarget(
        host=str(address), port=spec.router.port, user=spec.router.user,
        label=f"the router of {spec.name} (through the tunnel)", pinned_host_key=pinned,
        client_key=client_key, connect_timeout=timing.connect_timeout,
        command_timeout=timing.command_timeout,
    )


async def install_client_key(conn: SshConnection, public_key: str) -> bool:
    """Add camreach's public key to dropbear's authorized_keys; True if it was not there."""
    line = public_key.strip()
    if _PUBKEY_RE.fullmatch(line) is None:
        raise ValueError("not an OpenSSH public key line")
    res = await conn.run(
        "sh -c " + shlex.quote(INSTALL_KEY_SCRIPT), input=line + "\n", check=False
    )
    answer = res.stdout.strip()
    if not res.ok or answer not in ("added", "present"):
        raise RemoteFailed(
            f"Could not install camreach's key on {conn.target.where}.",
            detail=f"exit {res.exit_status}: {res.stderr.strip()[:200]}",
        )
    return answer == "added"
