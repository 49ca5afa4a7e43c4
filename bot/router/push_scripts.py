"""The shell side of a config push: constant scripts, run by busybox ash on the router.

Nothing is ever pasted into these texts. Arguments are a push id (hex), a deadline (an
integer) and ``package=md5`` pairs, all checked in Python before they are passed as
separate, quoted words; the ``uci batch`` travels on stdin and is checked by its md5.

On the router (``/etc/camreach`` is on the same filesystem as ``/etc/config``, so ``mv``
between them is an atomic rename):

- ``stage-ID/``   a push being prepared: copies of the configs, changed by ``uci -c`` (never
  the live files, never ``/tmp/.uci``); thrown away if anything fails.
- ``push/``       the push in flight, from arming to confirm or rollback: ``backup/`` (the old
  files), ``new/`` (the new ones), ``changed``, ``sums``, ``id``, ``state``.
- ``rollback``    the restore helper; ``/etc/init.d/camreach-rollback`` runs it at boot, so a
  power cut during the confirm window also ends on the old files.
- ``last``        one line: ``ID confirmed`` or ``ID rolled-back REASON``.
- ``cancelled-ID`` a push camreach gave up on; should its command still arrive (delivered late
  by a link that came back), it is refused.

``/var/lock/camreach-push.lock`` (flock) serialises apply, confirm and rollback: a rollback
never runs while a swap is half done, and confirm and rollback cannot both win.
"""

from __future__ import annotations

from bot.router.frames import FRAME_SH

__all__ = [
    "APPLY_SCRIPT",
    "BOOT_HOOK",
    "CONFIRM_SCRIPT",
    "READ_SCRIPT",
    "ROLLBACK_HELPER",
    "STATE_DIR",
]

STATE_DIR = "/etc/camreach"

# reload "PACKAGES" "INTERFACES": netifd re-reads its config now (the restart needs that);
# every service watching the packages hears of the change as with reload_config; then the
# interfaces whose peers changed are restarted.
RELOAD_FN = r"""
reload() {
	case " $1 " in *" network "*) ubus call network reload >/dev/null 2>&1 ;; esac
	for pkg in $1; do
		ubus call service event \
			"$(printf '{"type":"config.change","data":{"package":"%s"}}' "$pkg")" \
			>/dev/null 2>&1
	done
	for iface in $2; do
		ifup "$iface" >/dev/null 2>&1
	done
}
"""

# Restores the packages a push changed. Also finishes a restore cut short by a crash: every
# ``rollback-*`` directory left behind is restored again (copying a backup twice is harmless).
ROLLBACK_HELPER = r"""#!/bin/sh
# Written by camreach: restore the configs saved before a push that was never confirmed.
# usage: rollback ID REASON [locked]   (an empty ID means any pending push; used at boot)
trap '' HUP PIPE
C=/etc/camreach
P=$C/push
id=$1
why=${2:-unknown}
""" + RELOAD_FN + r"""
if [ "$3" != locked ]; then
	mkdir -p /var/lock
	exec 9> /var/lock/camreach-push.lock
	flock 9
fi
if [ -d "$P" ]; then
	pid=$(cat "$P/id" 2>/dev/null)
	if [ -z "$id" ] || [ "$pid" = "$id" ]; then
		mv "$P" "$C/rollback-$pid" || exit 1
	fi
fi
for R in "$C"/rollback-*; do
	[ -d "$R" ] || continue
	rid=${R##*/rollback-}
	changed=$(cat "$R/changed" 2>/dev/null)
	restart=$(cat "$R/restart" 2>/dev/null)
	for pkg in $changed; do
		cp -p "$R/backup/$pkg" "/etc/config/.$pkg.camreach" &&
			mv -f "/etc/config/.$pkg.camreach" "/etc/config/$pkg" || exit 1
	done
	sync
	echo "$rid rolled-back $why" > "$C/last.tmp" && mv -f "$C/last.tmp" "$C/last"
	rm -rf "$R"
	sync
	logger -t camreach "config push $rid rolled back ($why)" 2>/dev/null
	[ "$why" = boot ] || reload "$changed" "$restart"
done
exit 0
"""

# Runs before the firewall (19) and the network (20) start.
BOOT_HOOK = r"""#!/bin/sh /etc/rc.common
# Written by camreach: a config push that was never confirmed is undone at boot,
# before the firewall and the network start.
START=18
boot() {
	[ -x /etc/camreach/rollback ] && /etc/camreach/rollback "" boot
	return 0
}
start() {
	return 0
}
"""

READ_SCRIPT = (
    r"""
umask 077
T=$(mktemp -d /tmp/camreach-read.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
C=/etc/camreach
"""
    + FRAME_SH
    + r"""
for pkg in network firewall; do
	if [ -f "/etc/config/$pkg" ]; then
		md5sum < "/etc/config/$pkg" | cut -d' ' -f1 > "$T/sum.$pkg"
		uci show "$pkg" > "$T/show.$pkg" 2> "$T/error.$pkg" ||
			echo "uci show failed" >> "$T/error.$pkg"
		uci changes "$pkg" > "$T/changes.$pkg" 2>/dev/null
	else
		echo missing > "$T/sum.$pkg"
		: > "$T/show.$pkg"; : > "$T/error.$pkg"; : > "$T/changes.$pkg"
	fi
	for part in sum show error changes; do emit "$part.$pkg" "$T/$part.$pkg"; done
done
if [ -d "$C/push" ]; then
	echo "$(cat "$C/push/id" 2>/dev/null) $(cat "$C/push/state" 2>/dev/null || echo armed)"
fi > "$T/pending"
emit pending "$T/pending"
cat "$C/last" > "$T/last" 2>/dev/null
emit last "$T/last"
"""
)

APPLY_SCRIPT = (
    r"""
# args: ID DEADLINE HOLDOFF RESTART BATCH_MD5 PKG=MD5...   stdin: the uci batch
# RESTART: interfaces to restart after the reload ("wg0,..." or "-"): netifd does not see
# changes to a wireguard_<iface> peer section on reload, only to the interface itself.
trap '' HUP PIPE
# The batch and the staged copies hold private keys, the SIM PIN and the APN password.
umask 077
id=$1
deadline=$2
holdoff=$3
restart=$(echo "$4" | tr , ' ' | tr -d -)
batch_md5=$5
shift 5
C=/etc/camreach
P=$C/push
S=$C/stage-$id
mkdir -p "$C" /var/lock || exit 20
exec 9> /var/lock/camreach-push.lock || exit 20
flock 9 || exit 20
if [ -d "$P" ]; then
	echo "busy $(cat "$P/id" 2>/dev/null)"
	exit 10
fi
# camreach gave up on this push already (the command arrived late, after a cut link).
[ -e "$C/cancelled-$id" ] && { echo cancelled; exit 15; }
rm -rf "$C"/stage-* "$C"/confirmed-*
find "$C" -maxdepth 1 -name 'cancelled-*' -mmin +60 -exec rm -f {} \; 2>/dev/null
mkdir "$S" "$S/new" "$S/backup" "$S/delta" || exit 20
fail() { rm -rf "$S"; echo "$2"; exit "$1"; }
""" + RELOAD_FN + r"""
cat > "$S/batch"
[ "$(md5sum < "$S/batch" | cut -d' ' -f1)" = "$batch_md5" ] || fail 12 incomplete
for pair in "$@"; do
	pkg=${pair%%=*}
	want=${pair#*=}
	[ -f "/etc/config/$pkg" ] || fail 11 "missing $pkg"
	[ -z "$(uci changes "$pkg" 2>/dev/null)" ] || fail 14 "uncommitted $pkg"
	[ "$(md5sum < "/etc/config/$pkg" | cut -d' ' -f1)" = "$want" ] || fail 11 "changed $pkg"
	cp -p "/etc/config/$pkg" "$S/new/$pkg" && cp -p "/etc/config/$pkg" "$S/backup/$pkg" &&
		chmod 600 "$S/new/$pkg" "$S/backup/$pkg" || fail 20 "copy-failed $pkg"
	echo "$pkg" >> "$S/packages"
done
# uci batch exits 0 even when a line fails; the rendered batch prints nothing on success.
err=$(uci -c "$S/new" -t "$S/delta" batch < "$S/batch" 2>&1)
if [ -n "$err" ]; then
	rm -rf "$S"
	echo batch-failed
	printf '%s\n' "$err" | head -n 5
	exit 13
fi
: > "$S/changed"
for pkg in $(cat "$S/packages"); do
	uci -c "$S/new" -t "$S/delta" commit "$pkg" || fail 13 "commit-failed $pkg"
	new=$(md5sum < "$S/new/$pkg" | cut -d' ' -f1)
	[ "$new" = "$(md5sum < "/etc/config/$pkg" | cut -d' ' -f1)" ] || echo "$pkg" >> "$S/changed"
	echo "$pkg $new" >> "$S/sums"
done
if [ ! -s "$S/changed" ]; then
	rm -rf "$S"
	echo unchanged
	exit 0
fi
install_file() {
	cat > "$1.new" && chmod "$2" "$1.new" || return 1
	if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv -f "$1.new" "$1"; fi
}
install_file "$C/rollback" 755 <<'CAMREACH_ROLLBACK_EOF' || fail 20 "install-failed"
"""
    + ROLLBACK_HELPER
    + r"""CAMREACH_ROLLBACK_EOF
install_file /etc/init.d/camreach-rollback 755 <<'CAMREACH_BOOT_EOF' || fail 20 "install-failed"
"""
    + BOOT_HOOK
    + r"""CAMREACH_BOOT_EOF
[ -e /etc/rc.d/S18camreach-rollback ] || /etc/init.d/camreach-rollback enable
echo "$id" > "$S/id"
echo "$restart" > "$S/restart"
echo armed > "$S/state"
sync
mv "$S" "$P" || fail 20 "arm-failed"
# From here the push exists: it ends confirmed or rolled back, never half applied. The timer
# does not keep fd 9 (the lock) and outlives this SSH session.
( exec 9>&-; sleep "$deadline"; exec "$C/rollback" "$id" deadline ) </dev/null >/dev/null 2>&1 &
echo $! > "$P/timer"
for pkg in $(cat "$P/changed"); do
	if ! { cp -p "$P/new/$pkg" "/etc/config/.$pkg.camreach" &&
		mv -f "/etc/config/.$pkg.camreach" "/etc/config/$pkg"; }; then
		"$C/rollback" "$id" swap-failed locked
		echo "swap-failed $pkg"
		exit 21
	fi
done
sync
echo applied > "$P/state"
# The reload below takes effect a moment later (procd delays reload triggers by 1 s); a
# confirm is refused until HOLDOFF seconds have passed, so it proves the new state.
echo "$(( $(cut -d. -f1 /proc/uptime) + holdoff ))" > "$P/settled"
sync
echo "applied $id"
cat "$P/sums"
# Reload only now: the answer above is out before a reload can take the link down.
reload "$(cat "$P/changed")" "$restart"
exit 0
"""
)

CONFIRM_SCRIPT = r"""
# args: ID confirm|check   ("check" only reports: it is used over a path that must not confirm)
trap '' HUP PIPE
id=$1
C=/etc/camreach
P=$C/push
mkdir -p /var/lock
exec 9> /var/lock/camreach-push.lock
flock 9
if [ -d "$P" ] && [ "$(cat "$P/id" 2>/dev/null)" = "$id" ]; then
	if [ "$2" != confirm ]; then
		echo "pending $id $(cat "$P/state" 2>/dev/null)"
		exit 0
	fi
	if [ "$(cat "$P/state" 2>/dev/null)" != applied ]; then
		# The apply stopped between arming and the end of the swap: undo it now.
		"$C/rollback" "$id" incomplete locked
		echo "rolled-back incomplete"
		exit 0
	fi
	left=$(( $(cat "$P/settled" 2>/dev/null || echo 0) - $(cut -d. -f1 /proc/uptime) ))
	if [ "$left" -gt 0 ]; then
		echo "pending $id settling $left"
		exit 0
	fi
	timer=$(cat "$P/timer" 2>/dev/null)
	mv "$P" "$C/confirmed-$id" || exit 20
	# Stop the rollback timer (it would find nothing to do anyway).
	[ -n "$timer" ] && grep -q "$id" "/proc/$timer/cmdline" 2>/dev/null && kill "$timer"
	echo "$id confirmed" > "$C/last.tmp" && mv -f "$C/last.tmp" "$C/last"
	sync
	rm -rf "$C/confirmed-$id"
	echo "confirmed $id"
else
	last=$(cat "$C/last" 2>/dev/null)
	# Not (or no longer) pending: make sure a late copy of this push can never apply.
	case "$last" in
		"$id "*) ;;
		*) mkdir -p "$C" && : > "$C/cancelled-$id" ;;
	esac
	echo "not-pending $last"
fi
"""
