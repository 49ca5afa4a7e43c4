"""Logging set-up that keeps secrets out of every log line."""

from __future__ import annotations

import logging
import re

# Telegram bot tokens (``123456:AA...``), DigitalOcean tokens (``dop_v1_...``) and HTTP bearer
# credentials by shape, so they are masked even before camreach knows the exact value.
_PATTERNS = [
    (re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}"), "***"),
    (re.compile(r"\bdo[opr]_v1_[0-9a-fA-F]{16,}"), "***"),
    (re.compile(r"\b[a-f0-9]{64}\b"), "***"),  # DigitalOcean's older bare-hex tokens
    (re.compile(r"(?i)\b(bearer)\s+[^\s'\",}]+"), r"\1 ***"),
]


class RedactingFilter(logging.Filter):
    """Replaces known secret values and secret-shaped strings in records with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 6:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(
                logging.Formatter().formatException(record.exc_info)
            )
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


REDACTOR = RedactingFilter()


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL, and Bot API URLs contain the bot token.
    for noisy in ("httpx", "httpcore", "telegram.ext.Updater", "apscheduler", "asyncssh", "tftpy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # PTB logs whole incoming updates at DEBUG, pasted tokens included: never below INFO.
    logging.getLogger("telegram").setLevel(max(logging.INFO, root.level))


def install_redactor(handler: logging.Handler) -> None:
    """For handlers added elsewhere (tests' caplog, extra log files)."""
    handler.addFilter(REDACTOR)
