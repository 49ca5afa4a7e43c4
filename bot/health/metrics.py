"""Prometheus metrics of the health checks, and the small HTTP server that exposes them.

Everything lives on one :class:`CollectorRegistry` per :class:`HealthMetrics`, not on
prometheus_client's global one: two instances (tests, or a CLI next to the bot) never clash
over metric names, and a test sees only its own series.

The server is prometheus_client's own WSGI app (content negotiation, gzip) behind a filter
that answers 404 outside ``/metrics``, run by a wsgiref threading server in a daemon thread:
a scrape never waits on the event loop and never blocks it. prometheus_client's metrics are
thread-safe, so the loop may update them while a scrape reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import threading
from collections.abc import Iterable
from socketserver import TCPServer, ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import make_wsgi_app

from bot.health.model import MODEM, TUNNEL, Figure, Probe, is_camera

__all__ = ["METRICS_PATH", "SIGNAL_MEASURES", "HealthMetrics", "MetricsServer"]

METRICS_PATH = "/metrics"
SIGNAL_MEASURES: tuple[str, ...] = ("rssi", "rsrp", "rsrq", "sinr")
# From a quick ping to a slow SSH login over LTE; a check times out well before a minute.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
# serve_forever's select timeout: the longest close() waits for the thread to notice.
POLL_INTERVAL = 0.1


def _number(value: Figure) -> float | None:
    """A figure as a finite float, or None (absent, text, bool, NaN)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    number = float(value)
    return number if math.isfinite(number) else None


def _discard(metric: Gauge | Counter, *labels: str) -> None:
    # Older prometheus_client releases raise KeyError for a series that is not there.
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


def _label_sets(metric: Gauge | Counter, names: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The label values of every series ``metric`` exports now, in ``names`` order."""
    return {tuple(sample.labels[n] for n in names)
            for family in metric.collect() for sample in family.samples}


class HealthMetrics:
    """The health checks' metrics: durations, handshake age, modem signal, up, alerts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.check_duration = Histogram(
            "camreach_check_duration_seconds", "How long one health check took.",
            ["component"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.handshake_age = Gauge(
            "camreach_handshake_age_seconds",
            "Seconds since the router's latest WireGuard handshake with the droplet.",
            ["site"], registry=self.registry)
        self.modem_signal = Gauge(
            "camreach_modem_signal_dbm",
            "LTE modem signal: rssi and rsrp in dBm, rsrq and sinr in dB.",
            ["site", "measure"], registry=self.registry)
        self.component_up = Gauge(
            "camreach_component_up", "1 when the component's last check passed, 0 when not.",
            ["site", "component"], registry=self.registry)
        self.alerts_sent = Counter(
            "camreach_alerts_sent", "Alerts sent to the admins.",
            ["site", "kind"], registry=self.registry)
        # Every metric with a site label, and its label names (forget_site walks these).
        self._per_site: tuple[tuple[Gauge | Counter, tuple[str, ...]], ...] = (
            (self.handshake_age, ("site",)),
            (self.modem_signal, ("site", "measure")),
            (self.component_up, ("site", "component")),
            (self.alerts_sent, ("site", "kind")),
        )

    def record_probe(self, site: str, probe: Probe) -> None:
        if probe.ok is None:  # nothing was checked: no duration, and the figures stand
            return
        # One label for every camera: a camera's name would make a series per camera.
        component = "camera" if is_camera(probe.component) else probe.component
        self.check_duration.labels(component=component).observe(max(probe.duration, 0.0))
        if probe.component == TUNNEL:
            self._set_or_drop(self.handshake_age, (site,), probe.figures.get("handshake_age"))
        elif probe.component == MODEM:
            for measure in SIGNAL_MEASURES:
                self._set_or_drop(self.modem_signal, (site, measure),
                                  probe.figures.get(measure))

    def set_up(self, site: str, component: str, up: bool | None) -> None:
        if up is None:
            _discard(self.component_up, site, component)
        else:
            self.component_up.labels(site, component).set(1 if up else 0)

    def alert_sent(self, site: str, kind: str) -> None:
        self.alerts_sent.labels(site, kind).inc()

    def forget_site(self, site: str) -> None:
        for metric, names in self._per_site:
            index = names.index("site")
            for values in _label_sets(metric, names):
                if values[index] == site:
                    _discard(metric, *values)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, port: int, host: str = "0.0.0.0") -> MetricsServer:  # noqa: S104
        """Answer GET /metrics on ``host:port`` (port 0: any free port, see ``.port``)."""
        # Name resolution and bind are blocking calls: keep them off the loop.
        return await asyncio.to_thread(MetricsServer.start, self.registry, host, port)

    @staticmethod
    def _set_or_drop(gauge: Gauge, labels: tuple[str, ...], figure: Figure) -> None:
        # A figure the latest check did not report is unknown now: a stale value would
        # be scraped as current, so the series goes instead.
        value = _number(figure)
        if value is None:
            _discard(gauge, *labels)
        else:
            gauge.labels(*labels).set(value)


def only_metrics(app: WSGIApplication) -> WSGIApplication:
    """``app`` at /metrics, 404 elsewhere (make_wsgi_app itself answers on every path)."""

    def filtered(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == METRICS_PATH:
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not found. The metrics are at /metrics.\n"]

    return filtered


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log on stderr: Prometheus scrapes every few seconds."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a stuck scrape never holds up close() or the process's exit

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks getfqdn() for the host's name, a reverse DNS lookup
        # that can stall for seconds where DNS is unreachable; the WSGI environ needs none.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """A running metrics endpoint; ``close()`` stops it and frees the port."""

    def __init__(self, httpd: _Server, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._closed = False

    @classmethod
    def start(cls, registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
        family, address = _bind_address(host, port)
        server_class = _Server6 if family == socket.AF_INET6 else _Server
        httpd = make_server(address, port, only_metrics(make_wsgi_app(registry)),
                            server_class=server_class, handler_class=_QuietHandler)
        thread = threading.Thread(target=httpd.serve_forever, args=(POLL_INTERVAL,),
                                  name=f"metrics:{httpd.server_address[1]}", daemon=True)
        thread.start()
        return cls(httpd, thread)

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # shutdown() waits for serve_forever to notice (up to POLL_INTERVAL): off the loop.
        await asyncio.to_thread(self._httpd.shutdown)
        self._httpd.server_close()
        await asyncio.to_thread(self._thread.join)


def _bind_address(host: str, port: int) -> tuple[int, str]:
    """The address family and literal address to bind ``host`` (a name or an address)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return int(family), str(sockaddr[0])

