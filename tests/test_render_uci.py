"""The UCI renderer without a router: quoting, batch and config text, parsing, diffs.

``test_render_uci_real.py`` runs the same text through OpenWrt's real ``uci``.
"""

from __future__ import annotations

import pytest

from bot.errors import ValidationFailed
from bot.render.uci import (
    UciSection,
    diff_sections,
    parse_uci_show,
    render_batch,
    render_uci_config,
    uci_quote,
)
from tests.golden import golden

HOSTILE = 'it\'s; $(touch /tmp/pwned) `id` \\ "dq" # x\nline2\ttab'


def sample() -> list[UciSection]:
    return [
        UciSection(
            "network",
            "interface",
            "wg0",
            {
                "proto": "wireguard",
                "addresses": ["10.8.0.2/24"],
                "mtu": 1280,
                "disabled": False,
            },
        ),
        UciSection(
            "network",
            "wireguard_wg0",
            "peer",
            {"description": HOSTILE, "route_allowed_ips": True, "allowed_ips": ("a", "b'c")},
        ),
        UciSection("firewall", "zone", "camreach_vpn", {"name": "camvpn", "network": ["wg0"]}),
    ]


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "'plain'"),
        ("it's", "'it'\\''s'"),
        ("'", "''\\'''"),
        ("$(reboot)", "'$(reboot)'"),
        ("a\\b", "'a\\b'"),
        ("two\nlines", "'two\nlines'"),
        (True, "'1'"),
        (False, "'0'"),
        (25, "'25'"),
        ("  blanks  ", "'  blanks  '"),
    ],
)
def test_uci_quote(value: str | int | bool, quoted: str) -> None:
    assert uci_quote(value) == quoted


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f"])
def test_control_characters_uci_cannot_store_are_refused_naming_the_option(char: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        UciSection("network", "interface", "wwan", {"password": f"se{char}cret"})
    msg = exc.value.user_message
    assert "network.wwan.password" in msg
    assert "cret" not in msg  # the value (maybe a secret) is not echoed


def test_empty_values_are_refused() -> None:
    with pytest.raises(ValidationFailed, match=r"network\.wwan\.apn"):
        UciSection("network", "interface", "wwan", {"apn": ""})
    with pytest.raises(ValidationFailed, match=r"network\.wwan\.dns"):
        UciSection("network", "interface", "wwan", {"dns": []})
    with pytest.raises(ValidationFailed, match=r"network\.wwan\.dns\[1\]"):
        UciSection("network", "interface", "wwan", {"dns": ["1.1.1.1", ""]})


@pytest.mark.parametrize(
    ("package", "type_", "name", "option"),
    [
        ("network", "interface", "wg-0", "proto"),
        ("network", "interface", "wg0;reboot", "proto"),
        ("network", "interface", "", "proto"),
        ("network", "inter face", "wg0", "proto"),
        ("net.work", "interface", "wg0", "proto"),
        ("network", "interface", "wg0", "pro.to"),
        ("network", "interface", "@zone[1]", "proto"),
    ],
)
def test_names_must_be_identifiers(package: str, type_: str, name: str, option: str) -> None:
    with pytest.raises(ValidationFailed):
        UciSection(package, type_, name, {option: "x"})


def test_sections_are_frozen() -> None:
    s = sample()[0]
    with pytest.raises(AttributeError):
        s.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.options["proto"] = "static"  # type: ignore[index]


def test_batch_golden() -> None:
    text = render_batch(sample())
    assert text == golden("sample.batch", text)


def test_batch_merge_mode_clears_lists_without_deleting_the_section() -> None:
    text = render_batch(sample()[:1], replace_sections=False)
    assert text == (
        "set network.wg0='interface'\n"
        "set network.wg0.proto='wireguard'\n"
        "set network.wg0.addresses=''\n"
        "add_list network.wg0.addresses='10.8.0.2/24'\n"
        "set network.wg0.mtu='1280'\n"
        "set network.wg0.disabled='0'\n"
    )


def test_config_golden() -> None:
    text = render_uci_config(sample())
    assert text == golden("sample.uci", text)


def test_rendering_is_deterministic() -> None:
    assert render_batch(sample()) == render_batch(sample())
    assert render_uci_config(sample()) == render_uci_config(sample())


def test_a_section_twice_is_refused() -> None:
    s = sample()[0]
    with pytest.raises(ValidationFailed, match=r"network\.wg0"):
        render_batch([s, s])


def test_every_value_goes_through_the_quoting() -> None:
    # The hostile value appears only in its quoted form; no line has an unquoted tail.
    text = render_batch(sample())
    assert uci_quote(HOSTILE) in text
    assert "$(touch" not in text.replace(uci_quote(HOSTILE), "")


# Captured from OpenWrt 23.05 `uci show network` after applying sample.batch and a
# multi-value list (see test_render_uci_real.py, which checks it is still what uci prints).
SHOW = (
    "network.loopback=interface\n"
    "network.loopback.device='lo'\n"
    "network.wg0=interface\n"
    "network.wg0.proto='wireguard'\n"
    "network.wg0.addresses='10.8.0.2/24'\n"
    "network.wg0.mtu='1280'\n"
    "network.wg0.disabled='0'\n"
    "network.peer=wireguard_wg0\n"
    "network.peer.description='it'\\''s; $(touch /tmp/pwned) `id` \\ \"dq\" # x\n"
    "line2\ttab'\n"
    "network.peer.route_allowed_ips='1'\n"
    "network.peer.allowed_ips='a' 'b'\\''c'\n"
    "network.@device[0]=device\n"
    "network.@device[0].ports='eth0' 'eth1'\n"
)


def test_parse_uci_show() -> None:
    parsed = parse_uci_show(SHOW)
    assert parsed["network.loopback"] == {".type": "interface", "device": "lo"}
    assert parsed["network.peer"]["description"] == HOSTILE
    assert parsed["network.peer"]["allowed_ips"] == ["a", "b'c"]
    assert parsed["network.@device[0]"] == {".type": "device", "ports": ["eth0", "eth1"]}


def test_parse_uci_show_rejects_garbage() -> None:
    with pytest.raises(ValidationFailed):
        parse_uci_show("uci: Entry not found\n")
    with pytest.raises(ValidationFailed):
        parse_uci_show("network.wg0.proto='unterminated\n")


def test_diff_is_empty_when_the_router_already_matches() -> None:
    parsed = parse_uci_show(SHOW)
    # addresses is a one-item list, which `uci show` prints like an option: still equal.
    assert diff_sections(parsed, sample()[:2]) == []


def test_diff_lists_changes_additions_and_removals() -> None:
    parsed = parse_uci_show(SHOW)
    wanted = [
        UciSection(
            "network",
            "interface",
            "wg0",
            {
                "proto": "wireguard",
                "addresses": ["10.8.0.3/24"],
                "mtu": 1280,
                "private_key": "new-secret",
            },
        ),
        UciSection("firewall", "zone", "camreach_vpn", {"name": "camvpn"}),
    ]
    assert diff_sections(parsed, wanted) == [
        "network.wg0.addresses: '10.8.0.2/24' → '10.8.0.3/24'",
        "+ network.wg0.private_key: (secret)",
        "- network.wg0.disabled: '0'",
        "+ firewall.camreach_vpn (zone)",
        "+ firewall.camreach_vpn.name: 'camvpn'",
    ]
    assert diff_sections(parsed, wanted[:1], replace_sections=False) == [
        "network.wg0.addresses: '10.8.0.2/24' → '10.8.0.3/24'",
        "+ network.wg0.private_key: (secret)",
    ]


def test_diff_never_shows_secret_values() -> None:
    current = parse_uci_show("network.wwan=interface\nnetwork.wwan.password='old-pass'\n")
    wanted = [UciSection("network", "interface", "wwan", {"password": "new-pass"})]
    lines = diff_sections(current, wanted)
    assert lines == ["network.wwan.password: (secret) → (secret)"]
    assert "pass'" not in "".join(lines)


def test_diff_reports_a_type_change() -> None:
    current = parse_uci_show("network.wg0=device\n")
    wanted = [UciSection("network", "interface", "wg0", {})]
    assert diff_sections(current, wanted) == ["network.wg0: type 'device' → 'interface'"]
