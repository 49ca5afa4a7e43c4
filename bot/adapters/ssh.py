"""SSH to the droplet and the router: pinned host keys, timeouts, typed errors.

Every connection goes through :func:`ssh_session`. With a pinned key the server must present
exactly that key (no other key, no certificate); asyncssh checks it during the key exchange,
before camreach authenticates, so nothing is sent to a server that fails the check. Without
one (first contact) any key is accepted and reported back as ``conn.host_key`` so the caller
can pin it. Library errors become camreach errors here.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import asyncssh

from bot.errors import AuthRejected, CamreachError, HostKeyMismatch, RemoteFailed, Unreachable

__all__ = [
    "CommandResult",
    "MismatchMessage",
    "SshConnection",
    "SshTarget",
    "fingerprint",
    "generate_client_key",
    "host_key_mismatch",
    "public_key_line",
    "ssh_errors",
    "ssh_session",
]


# The message for a server presenting a key other than the pinned one, given the SHA256
# fingerprints of the pinned key and of the key presented ("an unknown key" if none was seen).
MismatchMessage = Callable[[str, str], str]


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in. ``label`` names the machine in messages ("the router").

    ``mismatch_message`` words a refused host key for machines whose key camreach knows from
    elsewhere (the droplet's, which camreach generated); the default speaks of a pinned key.
    """

    host: str
    port: int = 22
    user: str = "root"
    label: str = "the host"
    pinned_host_key: str | None = None
    client_key: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    mismatch_message: MismatchMessage | None = field(default=None, repr=False, compare=False)

    @property
    def where(self) -> str:
        return f"{self.label} ({self.host}:{self.port})"


@dataclass(frozen=True)
class CommandResult:
    stdout: str  # decoded as UTF-8, undecodable bytes replaced
    stderr: str
    exit_status: int
    stdout_bytes: bytes = b""  # exactly what the remote side printed (framed output)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def _as_bytes(data: object) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    return str(data).encode()


def public_key_line(key: asyncssh.SSHKey) -> str:
    """``ssh-ed25519 AAAA...`` without a comment: the form pinned in the database."""
    data: bytes = key.export_public_key("openssh")
    return " ".join(data.decode().split()[:2])


def generate_client_key() -> str:
    """A fresh ed25519 private key in OpenSSH format (camreach's own identity)."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment="camreach")
    data: bytes = key.export_private_key("openssh")
    return data.decode()


class SshConnection:
    """A live connection with the server's host key and a ``run`` that maps errors."""

    def __init__(self, conn: asyncssh.SSHClientConnection, target: SshTarget) -> None:
        self.raw = conn
        self.target = target
        key = conn.get_server_host_key()
        self.host_key = public_key_line(key) if key is not None else ""

    async def run(
        self,
        command: str,
        *,
        input: str | bytes | None = None,
        check: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - passed on to asyncssh's own timeout
    ) -> CommandResult:
        """Run ``command`` (already quoted by the caller) with a timeout."""
        limit = timeout if timeout is not None else self.target.command_timeout
        with ssh_errors(self.target, command):
            # asyncssh's own timeout starts after the channel is open; a stalled link can
            # hold the open itself for minutes, so the limit covers the whole exchange.
            # Bytes in and out: a router's output need not be UTF-8 (a USB product string,
            # a hostile SSID); decoding is done here, never strictly.
            proc = await asyncio.wait_for(
                self.raw.run(
                    command, input=input.encode() if isinstance(input, str) else input,
                    check=False, timeout=limit, encoding=None,
                ),
                limit,
            )
        raw_out = _as_bytes(proc.stdout)
        status = proc.exit_status if proc.exit_status is not None else -1
        result = CommandResult(raw_out.decode(errors="replace"),
                               _as_bytes(proc.stderr).decode(errors="replace"), status, raw_out)
        if check and not result.ok:
            raise RemoteFailed(
                f"A command failed on {self.target.where} (exit status {status}).",
                detail=f"{_first_word(command)}: {result.stderr.strip()[:500]}",
            )
        return result

    async def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write a file atomically (temp file + mv) through the shell; no SFTP needed."""
        tmp = f"{path}.camreach-tmp"
        q, qt = shlex.quote(path), shlex.quote(tmp)
        await self.run(
            f"umask 077 && cat > {qt} && chmod {mode:o} {qt} && mv -f {qt} {q}", input=data
        )

    async def read_file(self, path: str) -> str | None:
        res = await self.run(f"cat {shlex.quote(path)}", check=False)
        return res.stdout if res.ok else None


def fingerprint(public_key: str) -> str:
    """``SHA256:...`` of a public key line, as ``ssh-keygen -l`` shows it."""
    fp: str = asyncssh.import_public_key(public_key).get_fingerprint("sha256")
    return fp


def host_key_mismatch(target: SshTarget, presented: asyncssh.SSHKey | None) -> HostKeyMismatch:
    """The error for a server whose host key is not ``target.pinned_host_key``."""
    pinned = fingerprint(target.pinned_host_key) if target.pinned_host_key else "none"
    seen = presented.get_fingerprint("sha256") if presented is not None else "an unknown key"
    if target.mismatch_message is not None:
        return HostKeyMismatch(target.mismatch_message(pinned, seen))
    return HostKeyMismatch(
        f"The SSH host key of {target.where} is not the one camreach pinned (it presented "
        f"{seen}, camreach pinned {pinned}). If you reinstalled or replaced it, clear the pinned "
        "key on purpose; otherwise someone may be intercepting the connection. Nothing was sent."
    )


class _HostKeyWitness(asyncssh.SSHClient):
    """Remembers the host key a server presented when it was not a trusted one.

    asyncssh asks its client about a key outside ``known_hosts`` during the key exchange;
    the answer stays no, this only keeps the key for the error message.
    """

    def __init__(self) -> None:
        self.refused: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.refused = key
        return False


def _first_word(command: str) -> str:
    return command.strip().split(" ", 1)[0][:40]


@contextmanager
def ssh_errors(target: SshTarget, command: str | None = None) -> Iterator[None]:
    """Map asyncssh/OS errors to camreach errors, most specific first, cause chained."""
    try:
        yield
    except CamreachError:
        raise
    except asyncssh.HostKeyNotVerifiable as exc:
        raise host_key_mismatch(target, None) from exc
    except asyncssh.PermissionDenied as exc:
        raise AuthRejected(
            f"{target.where} refused the login for {target.user!r}. Check the password or key "
            "(the password comes from the environment variable named in the site file)."
        ) from exc
    except asyncssh.ProcessError as exc:  # pragma: no cover - run() uses check=False
        raise RemoteFailed(f"A command failed on {target.where}.") from exc
    except (TimeoutError, asyncssh.TimeoutError) as exc:
        what = f"`{_first_word(command)}`" if command else "connecting"
        raise Unreachable(
            f"{target.where} did not answer in time ({what}). Is it powered and online?"
        ) from exc
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError) as exc:
        raise Unreachable(
            f"The SSH connection to {target.where} was lost ({exc.reason}). Try again when it "
            "is back online."
        ) from exc
    except OSError as exc:
        raise Unreachable(
            f"Cannot connect to {target.where}: {exc.strerror or exc}. Check the address, that "
            "SSH is running, and the network in between."
        ) from exc


@asynccontextmanager
async def ssh_session(
    target: SshTarget, *, tunnel: SshConnection | None = None
) -> AsyncIterator[SshConnection]:
    """Open a connection (optionally through another one, e.g. the droplet as jump host)."""
    known_hosts: object = None
    if target.pinned_host_key:
        # Exactly this key: no CA keys (so no OpenSSH host certificate passes), nothing revoked;
        # asyncssh then asks the server for this key's algorithm only.
        pinned = asyncssh.import_public_key(target.pinned_host_key)
        known_hosts = ([pinned], [], [])
    keys = [asyncssh.import_private_key(target.client_key)] if target.client_key else []
    witness = _HostKeyWitness()
    with ssh_errors(target):
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(
                    target.host,
                    target.port,
                    username=target.user,
                    password=target.password,
                    client_keys=keys,
                    known_hosts=known_hosts,
                    # No X.509 host certificates either (a CA bundle in ~/.ssh would vouch
                    # for servers camreach never pinned).
                    x509_trusted_certs=None,
                    client_factory=lambda: witness,
                    tunnel=tunnel.raw if tunnel is not None else (),
                    agent_path=None,
                    config=[],
                    keepalive_interval=15,
                    connect_timeout=target.connect_timeout,
                    login_timeout=target.connect_timeout,
                    preferred_auth="publickey,password,keyboard-interactive"
                    if target.password
                    else "publickey",
                ),
                timeout=target.connect_timeout + 5,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            # Refused in the key exchange: no login was attempted, nothing was sent.
            raise host_key_mismatch(target, witness.refused) from exc
    try:
        yield SshConnection(conn, target)
    finally:
        conn.close()
        with ssh_errors(target):
            await conn.wait_closed()
