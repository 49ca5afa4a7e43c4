"""The /status, /status SITE and /uptime texts, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.health.model import (
    MUTED,
    PARTS,
    ComponentView,
    Figure,
    HourRow,
    IncidentView,
    SiteHealth,
    State,
)
from bot.render.health_text import (
    DAY,
    WEEK,
    availability,
    key_figure,
    status_detail,
    status_overview,
    uptime_text,
    within,
)

NOW = datetime(2026, 6, 3, 14, 14, tzinfo=UTC)  # 16:14 in Berlin (CEST, UTC+2)
BERLIN = "Europe/Berlin"


def ago(**kw: float) -> datetime:
    return NOW - timedelta(**kw)


def view(component: str, state: str, *, since: datetime | None = None,
         checked: datetime | None = NOW - timedelta(minutes=1), summary: str = "",
         **figures: Figure) -> ComponentView:
    return ComponentView(component, state, since, checked, summary, figures)


HEALTHY = {
    "droplet": view("droplet", State.OK, since=ago(hours=5), summary="active",
                    do_status="active", ssh_ms=120),
    "tunnel": view("tunnel", State.OK, since=ago(hours=5), summary="handshake 35 s ago",
                   handshake_age=35, rx_bytes=1_234_567, tx_bytes=2345, ping_ms=85),
    "router": view("router", State.OK, since=ago(days=3), summary="up 3 d",
                   uptime=3 * 86400 + 3600, load1=0.42),
    "modem": view("modem", State.OK, since=ago(days=1), summary="RSRP -95 dBm", rsrp=-95.0,
                  rsrq=-11, sinr=7.5, rssi=-67, operator="Tele2", wan_ip="100.64.2.3",
                  cgnat=1),
    "camera:gate": view("camera:gate", State.OK, since=ago(hours=2), summary="online",
                        model="DS-2CD1043", firmware="V5.7", serial="ABC123"),
}
FARM = SiteHealth("farm", HEALTHY, has_camera=True, timezone=BERLIN)

DOWN_TUNNEL = SiteHealth(
    "shop",
    {
        "droplet": view("droplet", State.OK, since=ago(days=2), summary="active"),
        "tunnel": view("tunnel", State.DOWN, since=ago(minutes=12),
                       summary="no handshake for 12 min", handshake_age=720),
        "router": view("router", State.UNKNOWN, since=ago(minutes=12),
                       summary="not reachable: tunnel down"),
        "modem": view("modem", State.UNKNOWN, since=ago(minutes=12), checked=None),
    },
    incident=IncidentView("tunnel", ago(minutes=12), None, "droplet unreachable", 2),
    timezone=BERLIN,
)

MUTED_SITE = SiteHealth(
    "barn",
    {c: view(c, MUTED, since=ago(hours=1), summary="no answer", handshake_age=40)
     for c in PARTS},
    muted_until=datetime(2026, 6, 3, 14, 0, tzinfo=UTC) + timedelta(hours=1),  # 17:00 Berlin
    timezone=BERLIN,
)

NEVER_CHECKED = SiteHealth(
    "new", {c: view(c, State.UNKNOWN, checked=None) for c in PARTS}, timezone=BERLIN)

CAMERAS = SiteHealth(
    "yard",
    {
        **HEALTHY,
        "camera:porch": view("camera:porch", State.UNKNOWN, since=ago(days=1),
                             summary="password refused; not tried again"),
        "camera:barn": view("camera:barn", State.FAILING, since=ago(minutes=3),
                            summary="no answer on port 80 from 192.168.1.64 after 3 tries"),
    },
    has_camera=True,
    timezone=BERLIN,
)


# -- /status --------------------------------------------------------------------------------

@pytest.mark.parametrize(("site", "line"), [
    (FARM, "farm: ✅ droplet · ✅ tunnel 35 s · ✅ router up 3 d · ✅ modem RSRP -95 dBm"
           " · ✅ gate online"),
    (DOWN_TUNNEL, "shop: ✅ droplet · ❌ tunnel no handshake for 12 min"
                  " · ❔ router not reachable: tunnel down · ❔ modem"),
    (MUTED_SITE, "barn (muted until 17:00): 🔕 droplet no answer · 🔕 tunnel 40 s"
                 " · 🔕 router no answer · 🔕 modem no answer"),
    (NEVER_CHECKED, "new: ❔ not checked yet"),
    (SiteHealth("empty", {}), "empty: ❔ not checked yet"),
    (CAMERAS, "yard: ✅ droplet · ✅ tunnel 35 s · ✅ router up 3 d · ✅ modem RSRP -95 dBm"
              " · ⚠️ barn no answer on port 80 from… · ✅ gate online"
              " · ❔ porch password refused; not…"),
], ids=["healthy", "down-tunnel", "muted", "never-checked", "no-components", "cameras"])
def test_overview_line(site: SiteHealth, line: str) -> None:
    assert status_overview([site], NOW).splitlines()[0] == line


def test_overview_of_several_sites_and_of_none() -> None:
    text = status_overview([FARM, DOWN_TUNNEL, NEVER_CHECKED], NOW)
    assert [ln.split(":")[0] for ln in text.splitlines()[:3]] == ["farm", "shop", "new"]
    assert "/status SITE" in text.splitlines()[-1]
    assert "/setup" in status_overview([], NOW)


def test_an_expired_mute_is_not_shown() -> None:
    expired = SiteHealth("barn", HEALTHY, muted_until=ago(minutes=1), timezone=BERLIN)
    assert "muted" not in status_overview([expired], NOW)
    assert "muted" not in status_detail(expired, NOW)


@pytest.mark.parametrize(("component", "v", "figure"), [
    ("tunnel", view("tunnel", State.OK, handshake_age=35), "35 s"),
    ("tunnel", view("tunnel", State.OK, handshake_age=200.0), "3 min"),
    ("router", view("router", State.OK, uptime=3 * 86400 + 7200), "up 3 d"),
    ("modem", view("modem", State.OK, rsrp=-95, rssi=-67), "RSRP -95 dBm"),
    ("modem", view("modem", State.OK, rssi=-67.46), "RSSI -67.5 dBm"),
    ("modem", view("modem", State.OK, rsrp="n/a", rssi=-70), "RSSI -70 dBm"),
    ("camera:gate", view("camera:gate", State.OK, summary="ok"), "online"),
    ("droplet", view("droplet", State.OK, summary="active", do_status="active"), ""),
    ("tunnel", view("tunnel", State.DOWN, summary="no handshake for 12 min",
                    handshake_age=720), "no handshake for 12 min"),
    ("modem", view("modem", State.FAILING, summary="AT+CSQ timed out", rsrp=-95),
     "AT+CSQ timed out"),
    ("modem", view("modem", State.UNKNOWN, checked=None, summary="never"), ""),
    ("tunnel", view("tunnel", MUTED, summary="no handshake", handshake_age=40), "40 s"),
    ("droplet", view("droplet", MUTED, summary="SSH refused"), "SSH refused"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_key_figure(component: str, v: ComponentView, figure: str) -> None:
    assert key_figure(component, v) == figure


# -- /status SITE ---------------------------------------------------------------------------

@pytest.mark.parametrize(("site", "lines", "absent"), [
    (FARM, ["📍 farm",
            "✅ droplet: ok since 11:14, 5 h",
            "   active (checked 60 s ago)",
            "   DO active · SSH 120 ms",
            "✅ tunnel: ok since 11:14, 5 h",
            "   handshake 35 s ago (checked 60 s ago)",
            "   ping 85 ms · rx 1.2 MiB · tx 2.3 KiB",
            "✅ router: ok since 31 May 16:14, 3 d",
            "✅ modem: ok since 2 Jun 16:14, 24 h",
            "   RSSI -67 dBm · WAN 100.64.2.3 (CGNAT)",
            "✅ camera gate: ok since 14:14, 2 h",
            "   DS-2CD1043 · firmware V5.7 · S/N ABC123"],
     ["🚨", "🔕", "handshake 35 s ago ·"]),
    (DOWN_TUNNEL, ["🚨 Incident: tunnel down since 16:02, 12 min",
                   "   cause: droplet unreachable",
                   "   2 alerts sent",
                   "❌ tunnel: down since 16:02, 12 min",
                   "   no handshake for 12 min (checked 60 s ago)",
                   "   handshake 12 min ago",
                   "❔ router: unknown since 16:02, 12 min",
                   "❔ modem: not checked yet"],
     ["🔕"]),
    (MUTED_SITE, ["🔕 Alerts muted until 17:00 (46 min left)",
                  "🔕 tunnel: muted since 15:14, 60 min"],
     ["🚨"]),
    (NEVER_CHECKED, [f"❔ {c}: not checked yet" for c in PARTS], ["since"]),
    (CAMERAS, ["❔ camera porch: unknown since 2 Jun 16:14, 24 h",
               "   password refused; not tried again",
               "⚠️ camera barn: failing since 16:11, 3 min",
               "   no answer on port 80 from 192.168.1.64 after 3 tries",
               "   checked 60 s ago"],
     []),
], ids=["healthy", "down-tunnel-incident", "muted", "never-checked", "cameras"])
def test_status_detail(site: SiteHealth, lines: list[str], absent: list[str]) -> None:
    text = status_detail(site, NOW)
    got = text.splitlines()
    missing = [ln for ln in lines if ln not in got]
    assert not missing, f"{missing} not in:\n{text}"
    assert not [a for a in absent if a in text]
    # A phone's width, except a probe's own long summary (Telegram wraps that).
    assert max(len(ln) for ln in got if "after 3 tries" not in ln) <= 48


def test_detail_lists_components_in_dependency_order() -> None:
    shuffled = SiteHealth("yard", dict(reversed(list(CAMERAS.components.items()))))
    heads = [ln.split(":")[0][2:].strip() for ln in status_detail(shuffled, NOW).splitlines()
             if ln[:1] in "✅⚠❌❔"]
    assert heads == ["droplet", "tunnel", "router", "modem",
                     "camera barn", "camera gate", "camera porch"]


@pytest.mark.parametrize(("alerts", "line"), [(0, "   no alert sent"), (1, "   1 alert sent")])
def test_incident_alert_count(alerts: int, line: str) -> None:
    site = SiteHealth("shop", DOWN_TUNNEL.components,
                      incident=IncidentView("tunnel", ago(minutes=5), None, None, alerts))
    got = status_detail(site, NOW).splitlines()
    assert line in got and not any("cause" in ln for ln in got)


@pytest.mark.parametrize("tz", [None, "Not/AZone"])
def test_no_or_unknown_timezone_is_the_hosts_local_time(tz: str | None) -> None:
    since = ago(minutes=12)
    site = SiteHealth("shop", {"tunnel": view("tunnel", State.DOWN, since=since)}, timezone=tz)
    local = since.astimezone().strftime("%H:%M")
    assert f"❌ tunnel: down since {local}, 12 min" in status_detail(site, NOW).splitlines()


def test_naive_datetimes_are_utc() -> None:
    naive = SiteHealth("shop", {"tunnel": view(
        "tunnel", State.DOWN, since=ago(minutes=12).replace(tzinfo=None),
        checked=ago(minutes=1).replace(tzinfo=None))}, timezone=BERLIN)
    got = status_detail(naive, NOW).splitlines()
    assert "❌ tunnel: down since 16:02, 12 min" in got and "   checked 60 s ago" in got


# -- /uptime --------------------------------------------------------------------------------

U_NOW = datetime(2026, 6, 3, 14, 30, tzinfo=UTC)
TOP = U_NOW.replace(minute=0)  # the current hour's row


def row(component: str, hours_back: int, checks: int, up: int) -> HourRow:
    return HourRow(component, TOP - timedelta(hours=hours_back), checks, up, None, None)


UPTIME_ROWS = [
    row("tunnel", 0, 60, 30),  # the current hour counts
    *(row("tunnel", k, 60, 60) for k in range(1, 24)),
    row("tunnel", 24, 60, 0),  # 14:00 yesterday: before 14:30 yesterday, outside 24 h
    row("tunnel", 100, 60, 0),
    row("tunnel", 168, 60, 0),  # outside 7 d
    row("tunnel", 400, 60, 0),
    row("tunnel", -1, 60, 0),  # the future: never counted
    row("modem", 30, 12, 12),  # only in the 7 d window
    row("router", 2, 0, 0),  # an hour without checks
    row("camera:gate", 170, 12, 0),  # only older than 7 d: not listed
]


@pytest.mark.parametrize(("component", "window", "share"), [
    ("tunnel", DAY, (30 + 23 * 60) / (24 * 60)),
    ("tunnel", WEEK, (30 + 23 * 60) / (26 * 60)),
    ("modem", DAY, None),
    ("modem", WEEK, 1.0),
    ("router", WEEK, None),
    ("camera:gate", WEEK, None),
    ("droplet", WEEK, None),
])
def test_availability_windows(component: str, window: timedelta, share: float | None) -> None:
    assert availability(UPTIME_ROWS, component, U_NOW, window) == share


def test_uptime_text() -> None:
    assert uptime_text("farm", UPTIME_ROWS, U_NOW).splitlines() == [
        "📈 farm, checks that passed:",
        "tunnel: 24 h 97.9 % · 7 d 90.3 %",
        "router: 24 h no data · 7 d no data",
        "modem: 24 h no data · 7 d 100 %",
    ]


@pytest.mark.parametrize(("checks", "up", "shown"), [
    (10_000, 9_999, "99.9 %"),  # rounded down: not "100.0 %"
    (3, 3, "100 %"),
    (3, 0, "0 %"),
    (3, 2, "66.6 %"),
])
def test_uptime_percent(checks: int, up: int, shown: str) -> None:
    text = uptime_text("farm", [row("camera:gate", 1, checks, up)], U_NOW)
    assert text.splitlines()[1] == f"camera gate: 24 h {shown} · 7 d {shown}"


def test_uptime_without_recent_rows() -> None:
    old = [row("tunnel", 200, 60, 60)]
    for rows in ([], old):
        text = uptime_text("farm", rows, U_NOW)
        assert "no checks" in text and "%" not in text


@pytest.mark.parametrize("minute", [0, 1, 30, 59])
def test_a_day_window_holds_24_hours_at_any_minute(minute: int) -> None:
    now = U_NOW.replace(minute=minute)
    rows = [row("tunnel", k, 1, 1) for k in range(-2, 30)]
    kept = within(rows, now, DAY)
    assert len(kept) == 24 and max(r.hour for r in kept) == TOP
