"""Encryption of secrets at rest (Fernet), keyed by ``CAMREACH_SECRET_KEY``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from bot.errors import ConfigError

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"


class SecretBox:
    """Encrypts and decrypts small secrets; a wrong key is a ConfigError, never garbage."""

    def __init__(self, key: str | bytes) -> None:
        raw = key.encode() if isinstance(key, str) else key
        try:
            self._fernet = Fernet(raw.strip())
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "CAMREACH_SECRET_KEY is not a valid key. Generate one with: python -c "
                "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from exc

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise ConfigError(
                "Stored secrets cannot be decrypted with this CAMREACH_SECRET_KEY. Use the key "
                "they were saved with (check the environment and the data directory's "
                "secret.key), or re-enter the secrets."
            ) from exc


def load_or_create_key(explicit: str | None, data_dir: Path) -> str:
    """Return the configured key, or the data dir's key file, creating it (0600) on first run."""
    if explicit:
        return explicit
    path = data_dir / KEY_FILE_NAME
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    # O_EXCL + 0600 from the start: the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    log.warning("Generated a new secret key in %s (mode 0600). Back it up with the database.", path)
    return key
