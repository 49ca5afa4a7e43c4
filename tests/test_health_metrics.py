"""The health checks' Prometheus metrics, and their HTTP endpoint over a real socket."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from bot.health.metrics import HealthMetrics
from bot.health.model import Probe, camera_component


def samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} from exposition text."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples}


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=5)  # no proxy from the environment


def value(m: HealthMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


TUNNEL_OK = Probe("tunnel", True, "handshake 35 s ago", {"handshake_age": 35, "rx_bytes": 10},
                  duration=0.3)
MODEM_OK = Probe("modem", True, "RSRP -95 dBm",
                 {"rsrp": -95, "rssi": -67.5, "rsrq": "-11", "sinr": 7.0, "operator": "Tele2"},
                 duration=1.2)


def test_record_probe_sets_duration_handshake_and_signal() -> None:
    m = HealthMetrics()
    m.record_probe("farm", TUNNEL_OK)
    m.record_probe("farm", MODEM_OK)
    assert value(m, "camreach_handshake_age_seconds", site="farm") == 35
    assert {measure: value(m, "camreach_modem_signal_dbm", site="farm", measure=measure)
            for measure in ("rssi", "rsrp", "rsrq", "sinr", "operator")} == {
        "rssi": -67.5, "rsrp": -95, "rsrq": -11, "sinr": 7.0, "operator": None}
    assert value(m, "camreach_check_duration_seconds_count", component="tunnel") == 1
    assert value(m, "camreach_check_duration_seconds_sum", component="modem") == 1.2
    # 1.2 s falls in the 2.5 s bucket, not the 1 s one.
    assert value(m, "camreach_check_duration_seconds_bucket", component="modem", le="1.0") == 0
    assert value(m, "camreach_check_duration_seconds_bucket", component="modem", le="2.5") == 1


def test_cameras_share_one_duration_label() -> None:
    m = HealthMetrics()
    for name in ("gate", "barn", "porch"):
        m.record_probe("farm", Probe(camera_component(name), True, "online", duration=0.1))
    assert value(m, "camreach_check_duration_seconds_count", component="camera") == 3
    assert b"gate" not in m.render() and b"camera:" not in m.render()


def test_figures_a_check_did_not_report_are_dropped_not_kept_stale() -> None:
    m = HealthMetrics()
    m.record_probe("farm", TUNNEL_OK)
    m.record_probe("farm", MODEM_OK)
    m.record_probe("farm", Probe("tunnel", False, "no handshake", {}))
    m.record_probe("farm", Probe("modem", True, "RSSI -70 dBm", {"rssi": -70, "rsrp": None}))
    assert value(m, "camreach_handshake_age_seconds", site="farm") is None
    assert value(m, "camreach_modem_signal_dbm", site="farm", measure="rssi") == -70
    assert value(m, "camreach_modem_signal_dbm", site="farm", measure="rsrp") is None
    assert value(m, "camreach_modem_signal_dbm", site="farm", measure="sinr") is None


def test_a_probe_without_information_changes_nothing() -> None:
    m = HealthMetrics()
    m.record_probe("farm", TUNNEL_OK)
    m.record_probe("farm", Probe("tunnel", None, "not checked", {}, duration=5.0))
    assert value(m, "camreach_handshake_age_seconds", site="farm") == 35
    assert value(m, "camreach_check_duration_seconds_count", component="tunnel") == 1


def test_up_alerts_and_forget_site() -> None:
    m = HealthMetrics()
    m.set_up("farm", "tunnel", True)
    m.set_up("farm", "router", False)
    m.set_up("farm", "modem", None)  # never set: removing is a no-op
    m.set_up("shop", "tunnel", True)
    m.alert_sent("farm", "down")
    m.alert_sent("farm", "down")
    m.alert_sent("shop", "recovered")
    m.record_probe("farm", TUNNEL_OK)
    m.record_probe("farm", MODEM_OK)
    assert value(m, "camreach_component_up", site="farm", component="tunnel") == 1
    assert value(m, "camreach_component_up", site="farm", component="router") == 0
    assert value(m, "camreach_alerts_sent_total", site="farm", kind="down") == 2

    m.set_up("farm", "router", None)
    assert value(m, "camreach_component_up", site="farm", component="router") is None

    m.forget_site("farm")
    text = m.render()
    assert b'site="farm"' not in text
    assert value(m, "camreach_component_up", site="shop", component="tunnel") == 1
    assert value(m, "camreach_alerts_sent_total", site="shop", kind="recovered") == 1
    # Durations have no site label and stay.
    assert value(m, "camreach_check_duration_seconds_count", component="tunnel") == 1


def test_instances_do_not_share_series() -> None:
    a, b = HealthMetrics(), HealthMetrics()
    a.set_up("farm", "tunnel", True)
    assert b'site="farm"' in a.render() and b'site="farm"' not in b.render()


@pytest.fixture
async def metrics() -> AsyncIterator[HealthMetrics]:
    yield HealthMetrics()


async def test_serves_metrics_over_http(metrics: HealthMetrics) -> None:
    server = await metrics.serve(0, host="127.0.0.1")
    try:
        assert server.port > 0
        url = f"http://127.0.0.1:{server.port}"
        async with http_client() as client:
            before = await client.get(f"{url}/metrics")
            metrics.record_probe("farm", TUNNEL_OK)
            metrics.set_up("farm", "tunnel", True)
            metrics.alert_sent("farm", "down")
            after = await client.get(f"{url}/metrics")
            missing = await client.get(f"{url}/")
            other = await client.get(f"{url}/metrics/extra")
        assert before.status_code == 200 and b'site="farm"' not in before.content
        assert after.status_code == 200
        assert after.headers["content-type"].startswith("text/plain")
        got = samples(after.content)
        assert got[("camreach_handshake_age_seconds", frozenset({("site", "farm")}))] == 35
        assert got[("camreach_component_up",
                    frozenset({("site", "farm"), ("component", "tunnel")}))] == 1
        assert got[("camreach_alerts_sent_total",
                    frozenset({("site", "farm"), ("kind", "down")}))] == 1
        assert (missing.status_code, other.status_code) == (404, 404)
    finally:
        await server.close()


class SlowCollector:
    """A collector that takes its time (a registry with thousands of series, a slow disk)."""

    def collect(self) -> Iterator[Metric]:
        time.sleep(0.5)  # in the server's thread: blocking is what is being tested
        yield GaugeMetricFamily("camreach_test_slow", "a slow collector", value=1.0)


async def test_scrapes_do_not_block_the_event_loop(metrics: HealthMetrics) -> None:
    """A scrape is answered in the server's own thread: while a slow one takes half a second,
    the event loop goes on (the longest gap between its ticks stays short)."""
    metrics.registry.register(SlowCollector())
    server = await metrics.serve(0, host="127.0.0.1")
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        async with http_client() as client:
            started = time.monotonic()
            replies = await asyncio.gather(*(client.get(f"http://127.0.0.1:{server.port}/metrics")
                                             for _ in range(3)))
            took = time.monotonic() - started
        assert all(r.status_code == 200 and b"camreach_test_slow 1.0" in r.content
                   for r in replies)
        assert took >= 0.5  # the scrapes really were slow
        assert len(gaps) >= 10 and max(gaps) < 0.25  # and the loop ticked all along
    finally:
        ticker.cancel()
        await server.close()


async def test_close_frees_the_port_and_restarts_cleanly(metrics: HealthMetrics) -> None:
    server = await metrics.serve(0, host="127.0.0.1")
    port = server.port
    await server.close()
    await server.close()  # twice is harmless
    async with http_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/metrics")
    # The same port again, several times over: each close really released it.
    for _ in range(5):
        again = await metrics.serve(port, host="127.0.0.1")
        try:
            assert again.port == port
            async with http_client() as client:
                assert (await client.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200
        finally:
            await again.close()
    # SO_REUSEADDR lets the bind past closed connections in TIME_WAIT, never past a listener.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


async def test_a_port_in_use_is_an_error(metrics: HealthMetrics) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(OSError):
            await metrics.serve(s.getsockname()[1], host="127.0.0.1")
