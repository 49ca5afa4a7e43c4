"""Health-check settings: the environment's (``CAMREACH_CHECK_INTERVAL``, ...) with a site's
own overrides from ``health:`` in its site file (the same names, lower case, no prefix)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from bot.health.machine import Thresholds

# name without prefix -> (lowest allowed, what it means), for one message per surface.
BOUNDS: dict[str, tuple[float, str]] = {
    "check_interval": (10, "seconds between checks"),
    "alert_after": (1, "failures in a row before an alert"),
    "recover_after": (1, "successes in a row before a recovery"),
    "retry_interval": (1, "seconds between checks of a failing part"),
    "remind_every": (0, "seconds between reminders, 0 for none"),
    "sweep_concurrency": (1, "sites checked at once"),
    "metrics_port": (0, "the port of /metrics"),
}
SITE_KEYS = ("check_interval", "alert_after", "recover_after", "retry_interval",
             "remind_every", "alert_chat")


def check_bound(field: str, value: float) -> None:
    """Raise ValueError naming the variable when ``value`` is below its bound."""
    name = field.removeprefix("camreach_")
    low, meaning = BOUNDS[name]
    if value < low or (name == "metrics_port" and value > 65535):
        env = f"CAMREACH_{name.upper()}" if field.startswith("camreach_") else f"health.{name}"
        raise ValueError(f"{env} must be at least {low:g} ({meaning}), got {value:g}")


@dataclass(frozen=True)
class HealthConfig:
    check_interval: float = 60.0
    alert_after: int = 3
    recover_after: int = 2
    retry_interval: float = 15.0
    remind_every: float = 3600.0
    alert_chat: int | None = None
    sweep_concurrency: int = 50

    @classmethod
    def from_settings(cls, settings: Any) -> HealthConfig:
        return cls(
            check_interval=settings.camreach_check_interval,
            alert_after=settings.camreach_alert_after,
            recover_after=settings.camreach_recover_after,
            retry_interval=settings.camreach_retry_interval,
            remind_every=settings.camreach_remind_every,
            alert_chat=settings.camreach_alert_chat,
            sweep_concurrency=settings.camreach_sweep_concurrency,
        )

    def for_site(self, overrides: Mapping[str, Any] | None) -> HealthConfig:
        """This config with a site's ``health:`` values (already validated by the site spec)."""
        given = {k: v for k, v in (overrides or {}).items() if k in SITE_KEYS and v is not None}
        return replace(self, **given) if given else self

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(alert_after=self.alert_after, recover_after=self.recover_after,
                          remind_every=self.remind_every)
