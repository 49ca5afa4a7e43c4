"""Health settings: the environment's, a site's own under `health:`, and their bounds."""

from __future__ import annotations

import pytest

from bot.errors import ValidationFailed
from bot.health.config import HealthConfig
from bot.settings import Settings
from bot.site import parse_site

ROUTER = {"host": "192.168.1.1", "lan_subnet": "192.168.1.0/24", "password_env": "PW"}


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = HealthConfig.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (cfg.check_interval, cfg.alert_after, cfg.recover_after, cfg.retry_interval,
            cfg.remind_every, cfg.alert_chat, cfg.sweep_concurrency) == (60, 3, 2, 15, 3600,
                                                                         None, 50)
    for name, value in {"CHECK_INTERVAL": "30", "ALERT_AFTER": "5", "RECOVER_AFTER": "4",
                        "RETRY_INTERVAL": "5", "REMIND_EVERY": "0", "ALERT_CHAT": "-100123",
                        "SWEEP_CONCURRENCY": "7"}.items():
        monkeypatch.setenv(f"CAMREACH_{name}", value)
    cfg = HealthConfig.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (cfg.check_interval, cfg.alert_after, cfg.recover_after, cfg.retry_interval,
            cfg.remind_every, cfg.alert_chat, cfg.sweep_concurrency) == (30, 5, 4, 5, 0,
                                                                         -100123, 7)
    assert cfg.thresholds.alert_after == 5 and cfg.thresholds.remind_every == 0


@pytest.mark.parametrize("name, value", [("CHECK_INTERVAL", "9"), ("ALERT_AFTER", "0"),
                                         ("RECOVER_AFTER", "0"), ("REMIND_EVERY", "-1"),
                                         ("SWEEP_CONCURRENCY", "0"), ("METRICS_PORT", "70000")])
def test_out_of_bounds_settings_are_named(monkeypatch: pytest.MonkeyPatch, name: str,
                                          value: str) -> None:
    monkeypatch.setenv(f"CAMREACH_{name}", value)
    with pytest.raises(ValueError, match=f"CAMREACH_{name}"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_a_site_overrides_some_settings_and_keeps_the_rest() -> None:
    spec = parse_site({"name": "farm", "router": ROUTER,
                       "health": {"alert_after": 5, "alert_chat": -42}}, check_files=False)
    cfg = HealthConfig(check_interval=45).for_site(spec.health.model_dump())
    assert (cfg.alert_after, cfg.alert_chat, cfg.check_interval, cfg.recover_after) == (
        5, -42, 45, 2)


@pytest.mark.parametrize("health, field", [({"check_interval": 5}, "health.check_interval"),
                                           ({"alert_after": 0}, "health.alert_after"),
                                           ({"sweep_concurrency": 3}, "health.sweep_concurrency")])
def test_bad_site_overrides_name_their_field(health: dict[str, int], field: str) -> None:
    with pytest.raises(ValidationFailed, match=field.replace(".", r"\.")):
        parse_site({"name": "farm", "router": ROUTER, "health": health}, check_files=False)
