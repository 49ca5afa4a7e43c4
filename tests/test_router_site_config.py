"""Site spec + detection + keys + droplet -> RouterConfig (pure), with golden files."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ConfigError, ValidationFailed
from bot.logs import REDACTOR
from bot.render.router import render_router_config
from bot.router.site_config import (
    ModemChoice,
    ModemSecrets,
    choose_modem,
    modem_secrets,
    router_config,
)
from bot.site import SiteSpec, parse_site
from tests.golden import ROUTER_PRIVATE, SERVER_PUBLIC, golden


def site(**modem: Any) -> SiteSpec:
    data: dict[str, Any] = {
        "name": "farmhouse",
        "vpn": {"subnet": "10.8.0.0/24", "port": 51820},
        "router": {"host": "192.168.1.1", "password_env": "ROUTER_PASSWORD",
                   "lan_subnet": "192.168.1.0/24"},
        "modem": {"protocol": "auto", "apn": "airtelgprs.com", "pin_env": "SIM_PIN",
                  "mode": "prefer-lte", **modem},
    }
    return parse_site(data)


def build(spec: SiteSpec, choice: ModemChoice, secrets: ModemSecrets | None = None) -> str:
    cfg = router_config(spec, choice, secrets or ModemSecrets(pin="1234"),
                        router_private_key=ROUTER_PRIVATE, server_public_key=SERVER_PUBLIC,
                        endpoint_host="203.0.113.10")
    return render_router_config(cfg)


def test_e3372h_stick_site_golden() -> None:
    spec = site()
    text = build(spec, choose_modem(spec.modem, "ncm", "/dev/cdc-wdm0"))
    assert text == golden("router_site_ncm.uci", text)


def test_e3372h_hilink_site_golden_leaves_dialling_to_the_stick() -> None:
    spec = site(auth="none")
    text = build(spec, choose_modem(spec.modem, "hilink-cdc-ether", "eth1"))
    assert text == golden("router_site_hilink.uci", text)
    assert "apn" not in text and "pincode" not in text


def test_qmi_site_with_apn_login_golden() -> None:
    spec = site(protocol="qmi", username="internet", password_env="APN_PASSWORD", auth="chap",
                mode="lte")
    text = build(spec, choose_modem(spec.modem, "qmi", "/dev/cdc-wdm1"),
                 ModemSecrets(pin=None, password="s3cret"))
    assert text == golden("router_site_qmi.uci", text)


def test_an_explicit_protocol_wins_and_keeps_the_detected_device_only_if_it_fits() -> None:
    spec = site(protocol="qmi")
    assert choose_modem(spec.modem, "qmi", "/dev/cdc-wdm1") == ModemChoice("qmi",
                                                                          "/dev/cdc-wdm1")
    assert choose_modem(spec.modem, "ncm", "/dev/ttyUSB0") == ModemChoice("qmi",
                                                                         "/dev/cdc-wdm0")
    assert choose_modem(spec.modem, None, None) == ModemChoice("qmi", "/dev/cdc-wdm0")


def test_auto_needs_a_usable_detection() -> None:
    spec = site()
    with pytest.raises(ValidationFailed, match="has not detected the modem"):
        choose_modem(spec.modem, None, None)
    with pytest.raises(ValidationFailed, match="mass-storage"):
        choose_modem(spec.modem, "mass-storage", None)
    with pytest.raises(ValidationFailed, match="cannot tell"):
        choose_modem(spec.modem, "something-new", None)


def test_the_tunnel_uses_the_sites_addresses_and_port() -> None:
    spec = parse_site({**site().to_json(), "vpn": {"subnet": "10.20.0.0/24", "port": 51999}})
    cfg = router_config(spec, ModemChoice("ncm", "/dev/cdc-wdm0"), ModemSecrets(),
                        router_private_key=ROUTER_PRIVATE, server_public_key=SERVER_PUBLIC,
                        endpoint_host="203.0.113.10")
    assert str(cfg.wg.address) == "10.20.0.2/24"
    assert cfg.wg.endpoint_port == 51999
    assert str(cfg.firewall.vpn_subnet) == "10.20.0.0/24"
    # SSH over the tunnel from the droplet's tunnel address only, never a phone's.
    assert str(cfg.firewall.ssh_from) == "10.20.0.1/32" == f"{spec.vpn.server_address}/32"


def test_modem_secrets_come_from_the_environment_and_are_redacted() -> None:
    spec = site(password_env="APN_PASSWORD", username="u")
    secrets = modem_secrets(spec, {"SIM_PIN": "2468", "APN_PASSWORD": "pa55-word!"})
    assert (secrets.pin, secrets.password) == ("2468", "pa55-word!")
    assert "2468" not in repr(secrets)
    assert REDACTOR.redact("pw pa55-word! here") == "pw *** here"
    with pytest.raises(ConfigError, match="SIM_PIN, which is not set"):
        modem_secrets(spec, {"APN_PASSWORD": "x"})
