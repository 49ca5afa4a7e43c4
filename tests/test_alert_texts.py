"""Alert texts: the outage line with its likely cause, reminders, recoveries, reboots."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import pytest

from bot.health.model import Figure
from bot.render.alerts import (
    component_label,
    human_duration,
    likely_cause,
    outage_text,
    reboot_text,
    recovery_text,
    reminder_text,
    signal_quality,
)

Figures = Mapping[str, Mapping[str, Figure]]
DAY = 86400


def test_tunnel_outage_target_wording() -> None:
    figures = {"modem": {"rsrp": -112}, "router": {"uptime": 3 * DAY}}
    assert outage_text("farmhouse", "tunnel", "14:02", figures, "") == (
        "farmhouse: tunnel down since 14:02. Router unreachable; last modem signal RSRP "
        "-112 dBm (poor), router up 3 d: likely power or LTE loss at the site.")


@pytest.mark.parametrize(("root", "figures", "problem", "parts"), [
    ("tunnel", {}, "no handshake for 12 min",
     ["farmhouse: tunnel down since 14:02 (no handshake for 12 min). ",
      "Router unreachable: likely power or LTE loss at the site."]),
    ("tunnel", {"modem": {"rssi": -70.0, "cgnat": 1}}, "",
     ["last modem signal RSSI -70 dBm (good)", "carrier-grade NAT"]),
    ("droplet", {"droplet": {"do_status": "off"}}, "SSH timed out",
     ["droplet down since 14:02 (SSH timed out). DigitalOcean reports the droplet off."]),
    ("droplet", {"droplet": {"do_status": "active"}}, "",
     ["The droplet does not answer SSH although DigitalOcean reports it active."]),
    ("router", {}, "SSH refused",
     ["router down since 14:02 (SSH refused). The tunnel is up but the router does not "
      "answer SSH."]),
    ("modem", {"modem": {"registration": "searching", "rsrp": -95}}, "not registered",
     ["Registration searching, RSRP -95 dBm (fair): check the SIM, the APN or the stick."]),
    ("camera:gate", {"camera:gate": {"model": "DS-2CD2043G2"}}, "no answer on port 80",
     ["farmhouse: camera gate down since 14:02 (no answer on port 80). ",
      "The router answers; the camera does not: camera power or its cable."]),
])
def test_outage_text_parts(root: str, figures: Figures, problem: str, parts: list[str]) -> None:
    text = outage_text("farmhouse", root, "14:02", figures, problem)
    for part in parts:
        assert part in text
    assert "*" not in text and "_" not in text  # plain text, nothing Markdown would eat


@pytest.mark.parametrize(("root", "figures", "cause"), [
    ("droplet", {}, "the droplet does not answer SSH"),
    ("droplet", {"droplet": {"do_status": "archive"}}, "DigitalOcean reports the droplet archive"),
    ("tunnel", {"router": {"uptime": 3 * 3600 + 300}},
     "router unreachable; router up 3 h 5 min: likely power or LTE loss at the site"),
    ("tunnel", {"modem": {"rsrp": "-101.5", "rssi": -60}},  # RSRP wins, text is read too
     "router unreachable; last modem signal RSRP -101.5 dBm (poor): likely power or LTE loss "
     "at the site"),
    ("tunnel", {"modem": {"rsrp": "n/a"}},
     "router unreachable: likely power or LTE loss at the site"),
    ("modem", {}, "check the SIM, the APN or the stick"),
    ("modem", {"modem": {"registration": "denied", "operator": "Airtel", "rssi": -90}},
     "registration denied, operator Airtel, RSSI -90 dBm (poor): check the SIM, the APN or the "
     "stick"),
    ("camera:yard", {}, "the router answers; the camera does not: camera power or its cable"),
])
def test_likely_cause(root: str, figures: Figures, cause: str) -> None:
    assert likely_cause(root, figures) == cause


def test_cgnat_only_where_useful() -> None:
    figures: Figures = {"modem": {"cgnat": 1, "registration": "home"}}
    assert "carrier-grade NAT" in likely_cause("tunnel", figures)
    for root in ("droplet", "router", "modem", "camera:gate"):
        assert "NAT" not in likely_cause(root, figures)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"),
    (45, "45 s"),
    (59.9, "59 s"),
    (60, "1 min"),
    (12 * 60 + 30, "12 min"),
    (3600, "1 h"),
    (3 * 3600 + 5 * 60, "3 h 5 min"),
    (3 * DAY, "3 d"),
    (3 * DAY + 4 * 3600 + 120, "3 d 4 h"),
    (-5, "0 s"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(("rsrp", "quality"), [
    (-70, "excellent"), (-80, "excellent"), (-80.5, "good"), (-90, "good"),
    (-95, "fair"), (-100, "fair"), (-100.1, "poor"), (-125, "poor"),
])
def test_signal_quality_bands(rsrp: float, quality: str) -> None:
    assert signal_quality(rsrp) == quality


@pytest.mark.parametrize(("component", "label"), [
    ("camera:gate", "camera gate"), ("tunnel", "tunnel"), ("camera:back door", "camera back door"),
])
def test_component_label(component: str, label: str) -> None:
    assert component_label(component) == label


@pytest.mark.parametrize(("component", "duration", "text"), [
    ("tunnel", timedelta(minutes=42), "farmhouse: tunnel back up after 42 min down."),
    ("camera:gate", timedelta(hours=3, minutes=5),
     "farmhouse: camera gate back up after 3 h 5 min down."),
])
def test_recovery_text(component: str, duration: timedelta, text: str) -> None:
    assert recovery_text("farmhouse", component, duration) == text


@pytest.mark.parametrize(("component", "duration", "text"), [
    ("tunnel", timedelta(hours=1), "farmhouse: tunnel still down since 14:02 (1 h)."),
    ("camera:gate", timedelta(days=2, hours=1),
     "farmhouse: camera gate still down since 14:02 (2 d 1 h)."),
])
def test_reminder_text(component: str, duration: timedelta, text: str) -> None:
    assert reminder_text("farmhouse", component, "14:02", duration) == text


@pytest.mark.parametrize(("uptime", "previous", "text"), [
    (300, 12 * DAY, "farmhouse: router restarted 5 min ago (it had been up 12 d)."),
    (45, None, "farmhouse: router restarted 45 s ago."),
    (None, None, "farmhouse: router restarted."),
])
def test_reboot_text(uptime: float | None, previous: float | None, text: str) -> None:
    assert reboot_text("farmhouse", uptime, previous) == text
