"""Reaching the router: first contact on the LAN, camreach's key, then the tunnel.

First contact logs in with the root password (from the environment variable the site file
names) or a key file, pins the router's host key and installs camreach's own public key in
``/etc/dropbear/authorized_keys``. From then on camreach logs in with its key only: on the
LAN, or through the droplet to the router's tunnel address (the droplet is the jump host).

Once the key is proven, :func:`set_password_login` turns dropbear's password login off (root
included), or on again when asked. The change is guarded like a config push: the router
restores its previous ``/etc/config/dropbear`` by itself unless camreach confirms, over a new
connection made with the key alone, that the restarted dropbear lets it in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import secrets
import shlex
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

from bot.adapters.ssh import SshConnection, SshTarget
from bot.envvars import env_value
from bot.errors import AuthRejected, CamreachError, ConfigError, RemoteFailed, Unreachable
from bot.logs import REDACTOR
from bot.site import SiteSpec

__all__ = [
    "AUTHORIZED_KEYS",
    "PASSWORD_LOGIN_SCRIPT",
    "RouterCredentials",
    "RouterTiming",
    "install_client_key",
    "lan_target",
    "router_credentials",
    "set_password_login",
    "tunnel_target",
]

log = logging.getLogger(__name__)

AUTHORIZED_KEYS = "/etc/dropbear/authorized_keys"

# The key arrives on stdin; the script never sees it as code.
INSTALL_KEY_SCRIPT = r"""
umask 077
f=/etc/dropbear/authorized_keys
IFS= read -r key || [ -n "$key" ] || exit 2
case "$key" in
	ssh-ed25519\ *|ssh-rsa\ *|ecdsa-sha2-*) ;;
	*) exit 2 ;;
esac
mkdir -p /etc/dropbear && touch "$f" && chmod 600 "$f" || exit 3
if grep -qxF "$key" "$f"; then
	echo present
else
	printf '%s\n' "$key" >> "$f" && echo added
fi
"""

_PUBKEY_RE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( [\w.@-]+)?")


@dataclass(frozen=True)
class RouterTiming:
    """Timeouts for the router; tests shorten them."""

    connect_timeout: float = 15.0
    command_timeout: float = 60.0
    rollback_deadline: int = 120  # seconds the router waits for a confirm before rolling back
    holdoff: int = 4  # seconds after an apply before a confirm counts (the reload must run)
    confirm_grace: float = 15.0  # after the deadline, how long to keep asking what happened


@dataclass(frozen=True)
class RouterCredentials:
    """How the first contact logs in. ``repr`` never shows the secret."""

    password: str | None = None
    key: str | None = None  # OpenSSH private key text from the site's key_file

    def __repr__(self) -> str:
        kind = "password" if self.password else "key file" if self.key else "none"
        return f"RouterCredentials({kind})"


def router_credentials(spec: SiteSpec, env: Mapping[str, str] | None = None) -> RouterCredentials:
    """The router login from the site file: a password from the environment (or ``.env``;
    ``env`` replaces both), or a key file."""
    r = spec.router
    if r.password_env is not None:
        value = env_value(r.password_env, env)
        if not value:
            raise ConfigError(
                f"The router password is read from the environment variable {r.password_env}, "
                "which is not set. Set it where camreach runs (or in .env) and try again."
            )
        REDACTOR.add(value)
        return RouterCredentials(password=value)
    assert r.key_file is not None
    path = Path(r.key_file).expanduser()
    try:
        return RouterCredentials(key=path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"Cannot read the router key file {path}: {exc.strerror}.") from None


def lan_target(
    spec: SiteSpec, *, client_key: str, pinned: str | None,
    credentials: RouterCredentials | None = None, timing: RouterTiming = RouterTiming(),
) -> SshTarget:
    """The router at its LAN address. Without ``credentials`` only camreach's key is offered."""
    r = spec.router
    creds = credentials or RouterCredentials()
    return SshTarget(
        host=r.host, port=r.port, user=r.user, label=f"the router of {spec.name}",
        pinned_host_key=pinned, client_key=creds.key or client_key, password=creds.password,
        connect_timeout=timing.connect_timeout, command_timeout=timing.command_timeout,
    )


def tunnel_target(
    spec: SiteSpec, *, client_key: str, pinned: str | None, timing: RouterTiming = RouterTiming()
) -> SshTarget:
    """The router at its tunnel address, to be reached through the droplet."""
    address = ipaddress.IPv4Address(spec.vpn.router_address)
    return SshTarget(
        host=str(address), port=spec.router.port, user=spec.router.user,
        label=f"the router of {spec.name} (through the tunnel)", pinned_host_key=pinned,
        client_key=client_key, connect_timeout=timing.connect_timeout,
        command_timeout=timing.command_timeout,
    )


async def install_client_key(conn: SshConnection, public_key: str) -> bool:
    """Add camreach's public key to dropbear's authorized_keys; True if it was not there."""
    line = public_key.strip()
    if _PUBKEY_RE.fullmatch(line) is None:
        raise ValueError("not an OpenSSH public key line")
    res = await conn.run(
        "sh -c " + shlex.quote(INSTALL_KEY_SCRIPT), input=line + "\n", check=False
    )
    answer = res.stdout.strip()
    if not res.ok or answer not in ("added", "present"):
        raise RemoteFailed(
            f"Could not install camreach's key on {conn.target.where}.",
            detail=f"exit {res.exit_status}: {res.stderr.strip()[:200]}",
        )
    return answer == "added"


# -- dropbear's password login ------------------------------------------------------------

# Turns dropbear's password login (PasswordAuth, and RootPasswordAuth for root) on or off in
# every ``dropbear`` section, with automatic rollback. A constant script run by busybox ash;
# its arguments are checked in Python and passed as separate quoted words:
#   apply ID WANT DEADLINE   WANT is on|off; arms the rollback, swaps the file, reloads dropbear
#   confirm ID               camreach got in again over a new connection: keep the change
#   rollback ID REASON       give up now: the previous file comes back, dropbear reloads
# ``apply`` edits a copy with ``uci -c/-t`` (never the shared /tmp/.uci, so changes staged by
# somebody else are neither committed nor lost), then starts a timer that puts the previous
# file back after DEADLINE seconds unless ``confirm`` came first. The state lives in
# /etc/camreach/ssh (root's, 0700), never in world-writable /tmp, whose paths another user of
# the router could plant. A change left unconfirmed by a reboot inside its window is rolled
# back by the next ``apply`` (it carries the boot id).
# ``/etc/init.d/dropbear reload`` has procd restart the server with the new flags (-s: no
# password logins, -g: none for root); open sessions, this one included, are the server's
# children and stay up. The change counts only once procd runs every dropbear instance with
# the wanted flags.
PASSWORD_LOGIN_SCRIPT = r"""
trap '' HUP PIPE
umask 077
verb=$1
id=$2
D=/etc/camreach/ssh
P=$D/pending
F=/etc/config/dropbear
T=/etc/config/.dropbear.camreach
mkdir -p "$D" /var/lock || exit 20
exec 9> /var/lock/camreach-ssh.lock || exit 20
flock 9 || exit 20
now() { cut -d. -f1 /proc/uptime; }
boot() { cat /proc/sys/kernel/random/boot_id 2>/dev/null; }
pids() {
	ubus call service list '{"name":"dropbear"}' 2>/dev/null |
		jsonfilter -e '@.dropbear.instances[*].pid' 2>/dev/null
}
# running WANT: procd runs dropbear, and every instance has WANT's flags (off: -s and -g).
running() {
	list=$(pids)
	[ -n "$list" ] || return 1
	for pid in $list; do
		args=$(tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null)
		[ -n "$args" ] || return 1
		for flag in -s -g; do
			if printf '%s\n' "$args" | grep -qx -e "$flag"; then
				[ "$1" = off ] || return 1
			else
				[ "$1" = on ] || return 1
			fi
		done
	done
	return 0
}
# means VALUE WANT: the uci boolean VALUE (unset: dropbear's default, on) means WANT.
means() {
	case "$1" in
	""|1|on|yes|true|enabled) [ "$2" = on ] ;;
	0|off|no|false|disabled) [ "$2" = off ] ;;
	*) return 1 ;;
	esac
}
# restore REASON (lock held): the previous file back, dropbear reloaded.
restore() {
	cp -p "$P/backup" "$T" && mv -f "$T" "$F" || return 1
	echo "$(cat "$P/id" 2>/dev/null) rolled-back $1" > "$D/last"
	rm -rf "$P"
	sync
	logger -t camreach "SSH password login change rolled back ($1)" 2>/dev/null
	/etc/init.d/dropbear reload >/dev/null 2>&1
	return 0
}
stop_timer() {
	[ -n "$1" ] && grep -q "$id" "/proc/$1/cmdline" 2>/dev/null && kill "$1" 2>/dev/null
	return 0
}
case "$verb" in
apply)
	want=$3
	deadline=$4
	if [ -d "$P" ]; then
		# Another change waits for its confirm. One whose timer is long overdue, or that a
		# reboot cut short, is undone now.
		if [ "$(cat "$P/boot" 2>/dev/null)" = "$(boot)" ] &&
			[ "$(now)" -le $(( $(cat "$P/ends" 2>/dev/null || echo 0) + 10 )) ]; then
			echo "busy"
			exit 10
		fi
		restore stale || { echo "failed restore"; exit 20; }
	fi
	[ -f "$F" ] && [ -n "$(pids)" ] || { echo "no-dropbear"; exit 11; }
	S=$D/stage
	rm -rf "$S" && mkdir -p "$S/new" "$S/delta" && cp -p "$F" "$S/new/dropbear" || exit 20
	u() { uci -q -c "$S/new" -t "$S/delta" "$@"; }
	n=0
	same=yes
	while u get "dropbear.@dropbear[$n]" >/dev/null; do
		for opt in PasswordAuth RootPasswordAuth; do
			means "$(u get "dropbear.@dropbear[$n].$opt")" "$want" && continue
			same=no
			u set "dropbear.@dropbear[$n].$opt=$want" ||
				{ rm -rf "$S"; echo "failed uci"; exit 20; }
		done
		n=$((n+1))
	done
	[ "$n" -gt 0 ] || { rm -rf "$S"; echo "no-dropbear"; exit 11; }
	if [ "$same" = yes ] && running "$want"; then
		rm -rf "$S"
		echo "unchanged"
		exit 0
	fi
	u commit dropbear || { rm -rf "$S"; echo "failed uci"; exit 20; }
	mkdir "$P" && cp -p "$F" "$P/backup" || { rm -rf "$P" "$S"; echo "failed backup"; exit 20; }
	echo "$id" > "$P/id"
	echo "$want" > "$P/want"
	echo "$(( $(now) + deadline ))" > "$P/ends"
	boot > "$P/boot"
	sync
	# The timer outlives this SSH session and does not keep the lock (fd 9) while it waits.
	(
		exec 9>&-
		sleep "$deadline" &
		nap=$!
		trap 'kill "$nap" 2>/dev/null; exit 0' TERM
		wait "$nap"
		exec 9> /var/lock/camreach-ssh.lock && flock 9 &&
			[ "$(cat "$P/id" 2>/dev/null)" = "$id" ] && restore deadline
	) </dev/null >/dev/null 2>&1 &
	echo $! > "$P/timer"
	if ! { cp -p "$S/new/dropbear" "$T" && mv -f "$T" "$F"; }; then
		rm -rf "$S"
		stop_timer "$(cat "$P/timer")"
		restore swap-failed
		echo "failed swap"
		exit 21
	fi
	rm -rf "$S"
	sync
	/etc/init.d/dropbear reload >/dev/null 2>&1
	i=0
	until running "$want"; do
		i=$((i+1))
		if [ "$i" -gt 15 ]; then
			stop_timer "$(cat "$P/timer")"
			restore not-running
			echo "failed not-running"
			exit 22
		fi
		sleep 1
	done
	echo "applied $id"
	;;
confirm)
	if [ -d "$P" ] && [ "$(cat "$P/id" 2>/dev/null)" = "$id" ]; then
		timer=$(cat "$P/timer" 2>/dev/null)
		want=$(cat "$P/want" 2>/dev/null)
		if ! running "$want"; then
			stop_timer "$timer"
			restore not-running
			echo "rolled-back not-running"
			exit 0
		fi
		rm -rf "$P"
		echo "$id confirmed" > "$D/last"
		sync
		stop_timer "$timer"
		logger -t camreach "SSH password login turned $want" 2>/dev/null
		echo "confirmed $id"
	else
		echo "not-pending $(cat "$D/last" 2>/dev/null)"
	fi
	;;
rollback)
	if [ -d "$P" ] && [ "$(cat "$P/id" 2>/dev/null)" = "$id" ]; then
		stop_timer "$(cat "$P/timer" 2>/dev/null)"
		restore "$3" || { echo "failed restore"; exit 20; }
		echo "rolled-back $3"
	else
		echo "not-pending $(cat "$D/last" 2>/dev/null)"
	fi
	;;
*)
	exit 2
	;;
esac
"""

_PASSWORD_ANSWERS = {
    "busy": "another change of its SSH settings is waiting to be confirmed; try again in a "
            "few minutes",
    "no-dropbear": "it does not run OpenWrt's dropbear SSH server under procd, whose settings "
                   "camreach changes",
    "failed not-running": "dropbear did not come back with the new setting, so the router put "
                          "the previous one back",
    "rolled-back not-running": "dropbear did not come back with the new setting, so the router "
                               "put the previous one back",
}

Reopen = Callable[[], AbstractAsyncContextManager[SshConnection]]


def _password_command(*args: str) -> str:
    return "sh -c " + shlex.quote(PASSWORD_LOGIN_SCRIPT) + " camreach-ssh " + " ".join(
        shlex.quote(a) for a in args)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


async def set_password_login(
    conn: SshConnection, enabled: bool, reopen: Reopen, *, deadline: int,
    attempts: int = 5, retry_delay: float = 1.0,
) -> bool:
    """Turn dropbear's password login on or off (root included); True if it changed.

    ``conn`` must be logged in with camreach's key. The router keeps the change only when
    ``reopen()`` (a new connection with the key alone) gets in after dropbear restarted;
    otherwise it is rolled back at once over ``conn``, or by the router itself after
    ``deadline`` seconds should ``conn`` be gone too. Raises RemoteFailed when the router
    ends up with its previous setting.
    """
    if not 5 <= deadline <= 3600:
        raise ValueError("deadline must be from 5 to 3600 seconds")
    want = "on" if enabled else "off"
    what = f"turn SSH password login {want} on {conn.target.where}"
    op = secrets.token_hex(8)
    lost: CamreachError | None = None
    try:
        res = await conn.run(_password_command("apply", op, want, str(deadline)), check=False,
                             timeout=conn.target.command_timeout + 20)
    except Unreachable as exc:
        # The answer was lost, not necessarily the change: the confirm below tells.
        lost = exc
    else:
        answer = _first_line(res.stdout)
        if answer == "unchanged":
            return False
        if answer != f"applied {op}":
            reason = _PASSWORD_ANSWERS.get(answer, "it answered unexpectedly")
            raise RemoteFailed(f"camreach could not {what}: {reason}.",
                               detail=f"exit {res.exit_status}: {answer[:100]} "
                                      f"{res.stderr.strip()[:200]}")
    try:
        answer = await _confirm_password_login(reopen, op, attempts, retry_delay)
    except CamreachError as exc:
        back = await _roll_back_password_login(conn, op)
        later = ("the router put the previous setting back" if back else
                 f"the router puts the previous setting back by itself within {deadline} s")
        raise RemoteFailed(
            f"camreach could not {what}: after dropbear restarted, a new login with camreach's "
            f"key failed ({exc.user_message}), so {later}.",
            detail=exc.detail,
        ) from exc
    if answer == f"confirmed {op}":
        log.info("SSH password login is %s on %s", want, conn.target.where)
        return True
    if lost is not None and answer.startswith("not-pending") and op not in answer:
        raise lost  # the apply never reached the router: nothing changed
    reason = _PASSWORD_ANSWERS.get(answer, "the change was rolled back before camreach could "
                                           "confirm it")
    raise RemoteFailed(f"camreach could not {what}: {reason}.", detail=answer[:200])


async def _confirm_password_login(reopen: Reopen, op: str, attempts: int,
                                  retry_delay: float) -> str:
    """Confirm over a new connection; dropbear may still be starting, so retry a refusal."""
    for attempt in range(attempts):
        try:
            async with reopen() as fresh:
                res = await fresh.run(_password_command("confirm", op), check=False)
                return _first_line(res.stdout)
        except AuthRejected:
            raise  # the key no longer gets in: roll back now, never wait
        except Unreachable:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(retry_delay)
    raise AssertionError("unreachable")  # pragma: no cover


async def _roll_back_password_login(conn: SshConnection, op: str) -> bool:
    """Undo a pending change over the connection that made it; False if that failed."""
    try:
        res = await conn.run(_password_command("rollback", op, "no-login"), check=False)
    except CamreachError:
        return False
    answer = _first_line(res.stdout)
    return answer.startswith("rolled-back") or f"{op} rolled-back" in answer
