"""Typed errors that carry a message fit to show the user.

    CamreachError                 user_message: what failed and what to do
    ├── ConfigError               bad settings, bad YAML, bad secret key
    ├── ValidationFailed          user input rejected (IP, APN, name, ...)
    ├── NotFound                  a site, peer, camera that does not exist
    ├── Busy                      another operation holds the site
    ├── OperatorError             needs a human: bad token, host key changed, out of flash
    │   ├── AuthRejected
    │   └── HostKeyMismatch
    └── TransientError            may succeed later: retry, keep polling
        ├── Unreachable           host down, connection refused, timeout
        └── RemoteFailed          the remote side answered with an error

Adapters map library exceptions onto this tree at their boundary (``raise X(...) from exc``),
so handlers and the CLI only ever see ``CamreachError``.
"""

from __future__ import annotations


class CamreachError(Exception):
    """Base error; ``user_message`` is safe to show in chat and on the terminal."""

    def __init__(self, user_message: str, *, detail: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        # ``detail`` is for logs only; it must never contain secrets either.
        self.detail = detail


class ConfigError(CamreachError):
    """Settings, files or keys camreach was given are wrong."""


class ValidationFailed(CamreachError):
    """User input was rejected before anything was changed."""


class NotFound(CamreachError):
    """The named thing does not exist."""


class Busy(CamreachError):
    """Another operation is running on the same site."""


class OperatorError(CamreachError):
    """Stop retrying: a human has to act (new token, check the host key, free flash)."""


class AuthRejected(OperatorError):
    """A token, password or key was refused."""


class HostKeyMismatch(OperatorError):
    """An SSH host key differs from the pinned one."""


class TransientError(CamreachError):
    """Might work on a later try."""


class Unreachable(TransientError):
    """The host did not answer (refused, timed out, no route)."""


class RemoteFailed(TransientError):
    """The remote side answered with an error."""
