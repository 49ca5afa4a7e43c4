"""The modem interface per protocol: golden text and what each protocol refuses."""

from __future__ import annotations

import pytest

from bot.errors import ValidationFailed
from bot.render.model import SUPPORTED_MODES, ModemConfig
from bot.render.modem import modem_sections
from bot.render.uci import render_uci_config
from tests.golden import golden

EXAMPLES = {
    # The write-up's setup: Huawei E3372h in NCM mode, Airtel, LTE.
    "ncm": ModemConfig(
        "ncm", "/dev/cdc-wdm0", apn="airtelgprs.com", pin="1234", mode="prefer-lte", delay=10
    ),
    "qmi": ModemConfig(
        "qmi",
        "/dev/cdc-wdm0",
        apn="internet",
        username="user",
        password="p@ss word",
        auth="both",
        pdptype="ipv4v6",
        mode="lte",
        metric=10,
    ),
    "mbim": ModemConfig(
        "mbim", "/dev/cdc-wdm0", apn="internet", username="u", password="p", auth="chap"
    ),
    "3g": ModemConfig("3g", "/dev/ttyUSB0", apn="airtelgprs.com", mode="umts"),
    # HiLink firmware (E3372h-320 and friends): the stick is a router, OpenWrt just DHCPs.
    "dhcp": ModemConfig("dhcp", "eth1", interface="lte", metric=20),
}


@pytest.mark.parametrize("protocol", sorted(EXAMPLES))
def test_golden(protocol: str) -> None:
    text = render_uci_config(modem_sections(EXAMPLES[protocol]))
    assert text == golden(f"modem_{protocol}.uci", text)


def test_section_is_the_named_interface() -> None:
    (section,) = modem_sections(EXAMPLES["dhcp"])
    assert (section.package, section.type, section.name) == ("network", "interface", "lte")


@pytest.mark.parametrize(
    ("mode", "ncm", "qmi", "three_g"),
    [
        ("auto", "auto", "all", None),
        ("lte", "lte", "lte", "refused"),
        ("prefer-lte", "preferlte", "all", "refused"),
        ("umts", "umts", "umts", "umts_only"),
        ("prefer-umts", "preferumts", "refused", "umts"),
    ],
)
def test_mode_mapping(mode: str, ncm: str, qmi: str, three_g: str | None) -> None:
    def option(protocol: str, name: str) -> str | None:
        try:
            cfg = ModemConfig(protocol, "/dev/ttyUSB0", apn="a", mode=mode)  # type: ignore[arg-type]
        except ValidationFailed as exc:
            assert "modem.mode" in exc.user_message
            return "refused"
        value = modem_sections(cfg)[0].options.get(name)
        assert value is None or isinstance(value, str)
        return value

    assert option("ncm", "mode") == ncm
    assert option("qmi", "modes") == qmi
    assert option("3g", "service") == three_g
    assert (option("mbim", "mode") is None) is (mode == "auto")


def test_supported_modes_table_matches_the_renderer() -> None:
    for protocol, modes in SUPPORTED_MODES.items():
        device = "eth1" if protocol == "dhcp" else "/dev/cdc-wdm0"
        for mode in modes:
            modem_sections(ModemConfig(protocol, device, mode=mode))


@pytest.mark.parametrize(("auth", "expected"), [("none", None), ("pap", "1"), ("chap", "2")])
def test_ncm_auth_is_the_at_command_number(auth: str, expected: str | None) -> None:
    creds = {} if auth == "none" else {"username": "u", "password": "p"}
    cfg = ModemConfig("ncm", "/dev/cdc-wdm0", apn="a", auth=auth, **creds)  # type: ignore[arg-type]
    assert modem_sections(cfg)[0].options.get("auth") == expected


def test_mbim_pdptype_ip_is_ipv4() -> None:
    cfg = ModemConfig("mbim", "/dev/cdc-wdm0", apn="a")
    assert modem_sections(cfg)[0].options["pdptype"] == "ipv4"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (
            {
                "protocol": "ncm",
                "device": "/dev/cdc-wdm0",
                "auth": "both",
                "username": "u",
                "password": "p",
            },
            "modem.auth",
        ),
        (
            {
                "protocol": "3g",
                "device": "/dev/ttyUSB0",
                "auth": "pap",
                "username": "u",
                "password": "p",
            },
            "modem.auth",
        ),
        ({"protocol": "3g", "device": "/dev/ttyUSB0", "pdptype": "ipv4v6"}, "modem.pdptype"),
        ({"protocol": "mbim", "device": "/dev/cdc-wdm0", "mode": "lte"}, "modem.mode"),
        ({"protocol": "dhcp", "device": "eth1", "apn": "internet"}, "modem.apn"),
        ({"protocol": "dhcp", "device": "eth1", "pin": "1234"}, "modem.pin"),
        ({"protocol": "dhcp", "device": "/dev/cdc-wdm0"}, "modem.device"),
        ({"protocol": "qmi", "device": "eth1"}, "modem.device"),
        ({"protocol": "qmi", "device": "/dev/../etc/passwd"}, "modem.device"),
        ({"protocol": "qmi", "device": "/dev/cdc-wdm0; reboot"}, "modem.device"),
        ({"protocol": "qmi", "device": "/dev/cdc-wdm0", "apn": "bad apn'"}, "modem.apn"),
        ({"protocol": "qmi", "device": "/dev/cdc-wdm0", "pin": "12a4"}, "modem.pin"),
        ({"protocol": "qmi", "device": "/dev/cdc-wdm0", "username": "u"}, "modem.password"),
        ({"protocol": "qmi", "device": "/dev/cdc-wdm0", "auth": "pap"}, "modem.auth"),
        (
            {"protocol": "qmi", "device": "/dev/cdc-wdm0", "username": "u", "password": 'sec"ret'},
            "modem.password",
        ),
        (
            {"protocol": "qmi", "device": "/dev/cdc-wdm0", "username": "u", "password": "sec\nret"},
            "modem.password",
        ),
        ({"protocol": "qmi", "device": "/dev/cdc-wdm0", "metric": -1}, "modem.metric"),
        ({"protocol": "qmi", "device": "/dev/cdc-wdm0", "interface": "wan-4"}, "modem.interface"),
        ({"protocol": "lte", "device": "/dev/cdc-wdm0"}, "modem.protocol"),
        ({"protocol": "qmi", "device": "/dev/cdc-wdm0", "mode": "5g"}, "modem.mode"),
    ],
)
def test_invalid_inputs_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        ModemConfig(**kwargs)  # type: ignore[arg-type]
    assert exc.value.user_message.startswith(field + ":")
    assert "ret" not in exc.value.user_message  # the password is not echoed


def test_secrets_are_in_the_config_only_as_options() -> None:
    text = render_uci_config(modem_sections(EXAMPLES["qmi"]))
    assert "option password 'p@ss word'" in text
    assert text.count("p@ss word") == 1
