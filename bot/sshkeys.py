"""SSH host key pairs that camreach makes for its droplets (ed25519, OpenSSH formats).

camreach does not learn a droplet's host key on first contact: it generates the pair itself,
hands it to the droplet in the cloud-init user data (``ssh_keys``), and pins the public half
before the droplet exists, so the very first connection is already verified.

Pure: no I/O and no SSH library (the renderers use this module), only ``cryptography``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.errors import ValidationFailed

__all__ = ["HostKeyPair"]


def _public_line(key: Ed25519PrivateKey) -> str:
    """``ssh-ed25519 AAAA...`` without a comment: the form pinned in the database."""
    data = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return " ".join(data.decode("ascii").split()[:2])


def _private_text(key: Ed25519PrivateKey) -> str:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return data.decode("ascii")


@dataclass(frozen=True)
class HostKeyPair:
    """A host key pair: the private half as an unencrypted OpenSSH private key file (what
    sshd reads from ``/etc/ssh/ssh_host_ed25519_key``), the public half as a pin line.

    Build it with :meth:`generate` or :meth:`from_private`; both halves always match.
    """

    private_openssh: str = field(repr=False)
    public: str

    def __post_init__(self) -> None:
        if _public_line(_load(self.private_openssh)) != self.public:
            raise ValidationFailed("The SSH host key pair does not match itself.")

    @classmethod
    def generate(cls) -> HostKeyPair:
        """A fresh random pair."""
        key = Ed25519PrivateKey.generate()
        return cls(_private_text(key), _public_line(key))

    @classmethod
    def from_private(cls, private_openssh: str) -> HostKeyPair:
        """The pair for a stored private key (the public half is derived, never stored)."""
        return cls(private_openssh, _public_line(_load(private_openssh)))

    @classmethod
    def from_key(cls, key: Ed25519PrivateKey) -> HostKeyPair:
        return cls(_private_text(key), _public_line(key))


def _load(private_openssh: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_ssh_private_key(private_openssh.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        # Never echo the value: it is a private key.
        raise ValidationFailed("That is not an unencrypted OpenSSH private key.") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValidationFailed("A droplet host key must be an ed25519 key.")
    return key
