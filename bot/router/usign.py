"""usign signatures (OpenWrt's signify) over package feed indexes, checked with Ed25519.

A usign public key file is two lines: ``untrusted comment: ...`` and the base64 of ``b"Ed"``
(the algorithm), an 8-byte key number and the 32-byte Ed25519 public key. A signature file
is the same with ``b"Ed"``, the key number of the key that signed, and the 64-byte Ed25519
signature of the signed file's exact bytes. opkg feeds sign ``Packages`` (the uncompressed
index, also when a client downloads ``Packages.gz``) into ``Packages.sig``; the index holds
every package's SHA256, so a good signature vouches for every file the feed serves.

The key number only picks the key: a signature is checked against the keys camreach was
given (a mirror's own, or those shipped in ``bot/data/openwrt-feed-keys``), never against
one that the feed offers.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "UsignError",
    "UsignKey",
    "UsignSignature",
    "parse_public_key",
    "parse_signature",
    "read_key",
    "release_series",
    "shipped_keys",
    "verify",
]

ALGORITHM = b"Ed"
_KEYNUM_LEN = 8
_PUBLIC_LEN = 2 + _KEYNUM_LEN + 32
_SIGNATURE_LEN = 2 + _KEYNUM_LEN + 64
_COMMENT = "untrusted comment:"
# One line of standard base64, as usign writes it (a key is 56 characters, a signature 100).
_B64_LINE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
KEYS_PACKAGE, KEYS_DIR, RELEASES_FILE = "bot", "data/openwrt-feed-keys", "releases.txt"


class UsignError(ValueError):
    """A key or signature that cannot be read, or a signature that does not verify."""


@dataclass(frozen=True, eq=False)
class UsignKey:
    keynum: bytes
    public: Ed25519PublicKey
    comment: str = ""

    @property
    def key_id(self) -> str:
        """The key number as usign and opkg print it (``/etc/opkg/keys/<key_id>``)."""
        return self.keynum.hex()

    @property
    def raw(self) -> bytes:
        """The 32 bytes of the Ed25519 public key."""
        return self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class UsignSignature:
    keynum: bytes
    signature: bytes
    comment: str = ""

    @property
    def key_id(self) -> str:
        return self.keynum.hex()


def _decode(text: str | bytes, what: str, size: int) -> tuple[str, bytes]:
    """``(comment, payload)`` of a usign file; the comment line may be left out."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise UsignError(f"the {what} is not text") from exc
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    comment = ""
    if lines and lines[0].startswith(_COMMENT):
        comment = lines.pop(0)[len(_COMMENT):].strip()
    if len(lines) != 1 or not _B64_LINE.fullmatch(lines[0]):
        raise UsignError(
            f"the {what} is not in usign format (an 'untrusted comment:' line, then one "
            "line of base64)"
        )
    try:
        raw = base64.b64decode(lines[0], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UsignError(f"the {what} is not valid base64") from exc
    if len(raw) != size:
        raise UsignError(f"the {what} holds {len(raw)} bytes, a usign {what} has {size}")
    if raw[:2] != ALGORITHM:
        raise UsignError(f"the {what} is for algorithm {raw[:2]!r}; usign uses {ALGORITHM!r}")
    return comment, raw


def parse_public_key(text: str | bytes) -> UsignKey:
    comment, raw = _decode(text, "public key", _PUBLIC_LEN)
    keynum = raw[2:2 + _KEYNUM_LEN]
    return UsignKey(keynum, Ed25519PublicKey.from_public_bytes(raw[2 + _KEYNUM_LEN:]), comment)


def parse_signature(text: str | bytes) -> UsignSignature:
    comment, raw = _decode(text, "signature", _SIGNATURE_LEN)
    return UsignSignature(raw[2:2 + _KEYNUM_LEN], raw[2 + _KEYNUM_LEN:], comment)


def verify(data: bytes, signature: UsignSignature, keys: Iterable[UsignKey]) -> UsignKey:
    """The key of ``keys`` whose signature ``signature`` is over exactly ``data``."""
    trusted = list(keys)
    for key in trusted:
        if key.keynum != signature.keynum:
            continue
        try:
            key.public.verify(signature.signature, data)
        except InvalidSignature:
            raise UsignError(
                f"the file does not match its signature by key {key.key_id} (it was changed "
                "after it was signed, or signed by another key with the same number)"
            ) from None
        return key
    names = ", ".join(k.key_id for k in trusted) or "none"
    raise UsignError(
        f"it is signed by key {signature.key_id}, which is not a key camreach trusts for "
        f"this feed (trusted: {names})"
    )


def read_key(value: str) -> UsignKey:
    """A public key from its text (both lines, or the base64 line alone) or a file's path."""
    text = value.strip()
    if not (text.startswith(_COMMENT) or _B64_LINE.fullmatch(text)):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise UsignError(f"cannot read the key file {path}: {exc.strerror or exc}") from exc
    return parse_public_key(text)


def release_series(release: str) -> str:
    """``23.05`` for ``23.05.3``, ``23.05-SNAPSHOT`` or ``23.05.0-rc1``; ``SNAPSHOT`` stays."""
    if release.upper() == "SNAPSHOT":
        return "SNAPSHOT"
    m = re.match(r"(\d+\.\d+)(?:$|[.-])", release)
    return m.group(1) if m else release


def shipped_keys(release: str) -> tuple[UsignKey, ...]:
    """The OpenWrt build keys camreach ships for ``release``'s feeds; () if it has none.

    ``releases.txt`` maps a release series to the key numbers that sign its feeds; each
    key is a usign public key file named by its key number (as in a router's
    ``/etc/opkg/keys``). A file whose key number is not its name is refused.
    """
    folder = resources.files(KEYS_PACKAGE).joinpath(KEYS_DIR)
    series = release_series(release)
    out: list[UsignKey] = []
    for line in folder.joinpath(RELEASES_FILE).read_text(encoding="ascii").splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != series:
            continue
        for key_id in words[1:]:
            if not re.fullmatch(r"[0-9a-f]{16}", key_id):
                raise UsignError(f"{RELEASES_FILE} names {key_id!r}, not a usign key number")
            key = parse_public_key(folder.joinpath(key_id).read_text(encoding="ascii"))
            if key.key_id != key_id:
                raise UsignError(f"the shipped key file {key_id} holds key {key.key_id}")
            out.append(key)
    return tuple(out)
