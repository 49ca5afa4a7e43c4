"""From a site (its YAML spec, what detection found, the keys, the droplet) to RouterConfig.

Pure: the caller reads the database and the environment and passes plain values in. The
renderers (``bot.render``) turn the result into the one ``uci batch`` that is pushed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network

from bot.actions import action
from bot.envvars import env_value
from bot.errors import ConfigError, ValidationFailed
from bot.logs import REDACTOR
from bot.render.model import ModemConfig, ModemProtocol, RouterConfig, RouterWireguard
from bot.router.modems import MODES
from bot.site import ModemSpec, SiteSpec

__all__ = ["ModemChoice", "ModemSecrets", "choose_modem", "modem_secrets", "router_config"]


@dataclass(frozen=True)
class ModemChoice:
    protocol: ModemProtocol
    device: str


@dataclass(frozen=True)
class ModemSecrets:
    pin: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return "ModemSecrets(...)"


_DEFAULT_DEVICE: dict[ModemProtocol, str] = {
    "ncm": "/dev/cdc-wdm0", "qmi": "/dev/cdc-wdm0", "mbim": "/dev/cdc-wdm0",
    "3g": "/dev/ttyUSB0", "dhcp": "eth1",
}


def choose_modem(spec: ModemSpec, mode: str | None, device: str | None) -> ModemChoice:
    """The protocol the site asks for, or (``auto``) the one detection proposed."""
    detected: ModemProtocol | None = None
    if mode is not None and mode in MODES:
        detected = MODES[mode].protocol
    if spec.protocol != "auto":
        protocol: ModemProtocol = spec.protocol
        same = detected == protocol and device is not None
        return ModemChoice(protocol, device if same and device else _DEFAULT_DEVICE[protocol])
    if mode is None:
        raise ValidationFailed(
            "The modem protocol is 'auto' and camreach has not detected the modem yet. Run "
            f"{action('router detect')} first, or set modem.protocol."
        )
    if mode == "mass-storage":
        raise ValidationFailed(
            "The modem is still in mass-storage (CD-ROM) mode. Install usb-modeswitch "
            f"({action('router install')}), replug the stick, and detect again."
        )
    if detected is None:
        raise ValidationFailed(f"camreach cannot tell which protocol the modem ({mode}) needs; "
                               "set modem.protocol in the site file.")
    return ModemChoice(detected, device or _DEFAULT_DEVICE[detected])


def modem_secrets(spec: SiteSpec, env: Mapping[str, str] | None = None, *,
                  pin: str | None = None) -> ModemSecrets:
    """The SIM PIN and APN password from the variables the site names (the environment, then
    ``.env``; ``env`` replaces both). ``pin``: one typed in /setup and stored encrypted, used
    when the variable the site names is not set."""
    values: dict[str, str | None] = {}
    for what, name in (("pin", spec.modem.pin_env), ("password", spec.modem.password_env)):
        if name is None:
            values[what] = None
            continue
        if what == "pin" and pin and not env_value(name, env):
            REDACTOR.add(pin)
            values[what] = pin
            continue
        value = env_value(name, env)
        if not value:
            raise ConfigError(
                f"The modem {'SIM PIN' if what == 'pin' else 'APN password'} is read from the "
                f"environment variable {name}, which is not set. Set it where camreach runs "
                "(or in .env) and try again."
            )
        REDACTOR.add(value)
        values[what] = value
    return ModemSecrets(pin=values["pin"], password=values["password"])


def router_config(
    spec: SiteSpec,
    modem: ModemChoice,
    secrets: ModemSecrets,
    *,
    router_private_key: str,
    server_public_key: str,
    endpoint_host: str,
) -> RouterConfig:
    """Everything camreach sets on the router for this site."""
    m = spec.modem
    if modem.protocol == "dhcp":
        # A HiLink stick dials by itself: APN, PIN and login are set in its own web page.
        modem_cfg = ModemConfig(protocol="dhcp", device=modem.device)
    else:
        username = m.username if m.username else None
        modem_cfg = ModemConfig(
            protocol=modem.protocol,
            device=modem.device,
            apn=m.apn,
            pin=secrets.pin,
            username=username,
            password=secrets.password if username else None,
            auth=m.auth,
            pdptype=m.pdptype,
            mode=m.mode,
        )
    prefix = spec.vpn.subnet.prefixlen
    wg = RouterWireguard(
        private_key=router_private_key,
        address=IPv4Interface(f"{spec.vpn.router_address}/{prefix}"),
        server_public_key=server_public_key,
        endpoint_host=endpoint_host,
        endpoint_port=spec.vpn.port,
    )
    # SSH over the tunnel only from the droplet (camreach's jump host), never from a phone:
    # phones reach the cameras, not the router (see bot/render/firewall.py).
    return RouterConfig(
        modem=modem_cfg, wg=wg, lan_subnet=spec.router.lan_subnet, ssh_port=spec.router.port,
        ssh_from=IPv4Network(f"{spec.vpn.server_address}/32"),
    )
