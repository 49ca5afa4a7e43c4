"""Settings from the environment and an optional ``.env`` file (see ``.env.example``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

BOTFATHER_HELP = (
    "Talk to @BotFather in Telegram, send /newbot, and put the token it gives you in "
    "TELEGRAM_BOT_TOKEN (in the environment or in the .env file next to where you run camreach)."
)
HOW_TO_FIND_YOUR_ID = (
    "Set CAMREACH_ADMINS to your Telegram user id (comma-separate several). To find it, start "
    "the bot once with any id (e.g. CAMREACH_ADMINS=1) and send it /start: the refusal it "
    "answers with shows your user id."
)


class Settings(BaseSettings):
    """Every knob camreach reads. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    telegram_bot_token: SecretStr | None = None
    camreach_admins: str = ""
    database_url: str | None = None
    camreach_data_dir: Path = Path("data")
    camreach_secret_key: SecretStr | None = None
    telegram_api_base_url: str | None = None
    digitalocean_token: SecretStr | None = None
    camreach_log_level: str = "INFO"
    camreach_openwrt_feeds: str | None = None
    camreach_openwrt_feed_key: str | None = None
    camreach_lease_seconds: float = 30.0
    camreach_history_days: int = 90
    # Health checks (bot.health.config); per-site overrides under `health:` in the site file.
    camreach_check_interval: float = 60.0
    camreach_alert_after: int = 3
    camreach_recover_after: int = 2
    camreach_retry_interval: float = 15.0
    camreach_remind_every: float = 3600.0
    camreach_alert_chat: int | None = None
    camreach_sweep_concurrency: int = 50
    camreach_metrics_port: int | None = None
    # The bot sweeps too (the only sweeper on SQLite); false leaves sweeps to `camreach worker`.
    camreach_sweep_in_bot: bool = True

    @field_validator("camreach_history_days")
    @classmethod
    def _history_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("CAMREACH_HISTORY_DAYS must be at least 1 (days of history kept)")
        return value

    @field_validator("camreach_check_interval", "camreach_alert_after", "camreach_recover_after",
                     "camreach_retry_interval", "camreach_remind_every",
                     "camreach_sweep_concurrency", "camreach_metrics_port")
    @classmethod
    def _health_bounds(cls, value: float | None, info: ValidationInfo) -> float | None:
        from bot.health.config import check_bound

        if value is not None:
            check_bound(info.field_name or "", value)
        return value

    @field_validator("camreach_lease_seconds")
    @classmethod
    def _lease_positive(cls, value: float) -> float:
        if not 1.0 <= value <= 3600.0:
            raise ValueError("CAMREACH_LEASE_SECONDS must be between 1 and 3600 seconds")
        return value

    @field_validator("camreach_admins")
    @classmethod
    def _admins_are_ids(cls, value: str) -> str:
        for part in _split_ids(value):
            if not part.lstrip("-").isdigit():
                raise ValueError(f"CAMREACH_ADMINS must be numeric Telegram user ids, got {part!r}")
        return value

    @property
    def admins(self) -> frozenset[int]:
        return frozenset(int(p) for p in _split_ids(self.camreach_admins))

    @property
    def data_dir(self) -> Path:
        return self.camreach_data_dir

    @property
    def async_database_url(self) -> str:
        """The SQLAlchemy URL with an async driver, defaulting to SQLite in the data dir."""
        if not self.database_url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'camreach.db').resolve()}"
        return to_async_url(self.database_url)

    def require_bot_token(self) -> str:
        if self.telegram_bot_token is None or not self.telegram_bot_token.get_secret_value():
            raise ConfigError("TELEGRAM_BOT_TOKEN is not set. " + BOTFATHER_HELP)
        return self.telegram_bot_token.get_secret_value()

    def require_admins(self) -> frozenset[int]:
        if not self.admins:
            raise ConfigError(
                "CAMREACH_ADMINS is empty, and a bot that obeys anyone must not run. "
                + HOW_TO_FIND_YOUR_ID
            )
        return self.admins


def _split_ids(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def to_async_url(url: str) -> str:
    """Pick the async driver for a plain database URL (``postgresql://`` -> asyncpg)."""
    for plain, async_ in (
        ("postgresql+psycopg2://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite:///", "sqlite+aiosqlite:///"),
    ):
        if url.startswith(plain):
            return async_ + url[len(plain) :]
    return url


def load_settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"Invalid settings: {exc}") from exc
