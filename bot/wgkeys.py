"""WireGuard keys (Curve25519), produced and checked exactly as ``wg genkey``/``wg pubkey`` do.

Keys travel as standard base64 of 32 bytes: 43 characters plus one ``=``. Private keys are
clamped on generation like ``wg genkey`` so the stored form is byte-identical to what the
tools would print; ``wg pubkey`` clamps again anyway, so unclamped keys derive the same
public key here and there.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bot.errors import ValidationFailed

__all__ = ["generate_preshared_key", "generate_private_key", "is_valid_key", "public_key"]

KEY_LEN = 32
# 32 bytes -> 43 base64 digits + '='; the last digit carries 4 data bits and 2 zero bits,
# so only these 16 digits are canonical there (wg rejects the others).
_KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def _encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _decode(key: str) -> bytes:
    if not is_valid_key(key):
        # Never echo the value: it may be a private key with a typo.
        raise ValidationFailed(
            "That is not a WireGuard key (expected 44 characters of base64 ending in '=')."
        )
    return base64.b64decode(key, validate=True)


def is_valid_key(s: str) -> bool:
    """True for a canonical base64 WireGuard key (private, public or preshared)."""
    if not isinstance(s, str) or _KEY_RE.fullmatch(s) is None:
        return False
    try:
        return len(base64.b64decode(s, validate=True)) == KEY_LEN
    except (binascii.Error, ValueError):
        return False


def generate_private_key() -> str:
    """A fresh private key, as ``wg genkey`` prints it (clamped)."""
    raw = bytearray(secrets.token_bytes(KEY_LEN))
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return _encode(bytes(raw))


def public_key(private_b64: str) -> str:
    """The public key for ``private_b64``, as ``wg pubkey`` prints it."""
    private = X25519PrivateKey.from_private_bytes(_decode(private_b64))
    return _encode(private.public_key().public_bytes_raw())


def generate_preshared_key() -> str:
    """32 random bytes, as ``wg genpsk`` prints them."""
    return _encode(secrets.token_bytes(KEY_LEN))
