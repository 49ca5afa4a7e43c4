"""Every user-facing sentence the bot sends, built by pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.db.models import OpState
from bot.services.peers import PeerStatus
from bot.services.sites import SiteStatus
from jobs.operations import OperationView

COMMANDS: list[tuple[str, str]] = [
    ("start", "What camreach does"),
    ("help", "The commands"),
    ("status", "State of every site"),
    ("flash", "Put OpenWrt on the router (TFTP recovery)"),
    ("cancel", "Stop the current conversation"),
]

HELP = """camreach lets you reach IP cameras at a site whose only internet is an LTE stick.

The LTE operator gives the router no public address, so camreach rents a small server \
(a DigitalOcean droplet) with a public address, runs WireGuard VPN on it, and makes the \
site's OpenWrt router dial in. Your phone joins the same VPN and sees the cameras.

Commands:
{commands}

The same things can be done from a terminal with the `camreach` command."""


def help_text(commands: list[tuple[str, str]] | None = None) -> str:
    lines = "\n".join(f"/{name} — {desc}" for name, desc in (commands or COMMANDS))
    return HELP.format(commands=lines)


def refusal(user_id: int) -> str:
    return (
        f"Sorry, this bot only obeys its owners. Your Telegram user id is {user_id}. "
        "If this is your bot, add that number to CAMREACH_ADMINS and restart it."
    )


CALLBACK_REFUSAL = "Not allowed: you are not one of this bot's admins."


def progress_bar(step: int, total: int, width: int = 10) -> str:
    if total <= 0:
        return "░" * width
    filled = max(0, min(width, round(width * step / total)))
    return "█" * filled + "░" * (width - filled)


_ICON = {
    OpState.QUEUED: "⏳",
    OpState.RUNNING: "⏳",
    OpState.SUCCEEDED: "✅",
    OpState.FAILED: "❌",
    OpState.INTERRUPTED: "⚠️",
}


def operation_text(op: OperationView) -> str:
    title = f"{_ICON[op.state]} {op.kind.replace('_', ' ')}"
    if op.site:
        title += f" — {op.site}"
    title += f" (#{op.id})"
    if op.state in (OpState.QUEUED, OpState.RUNNING):
        step = f"step {op.step}/{op.total_steps}" if op.total_steps else "starting"
        return f"{title}\n[{progress_bar(op.step, op.total_steps)}] {step}\n{op.message}"
    if op.state is OpState.SUCCEEDED:
        return f"{title}\nDone. {op.message}".rstrip()
    if op.state is OpState.FAILED:
        return f"{title}\nFailed at step {op.step}/{op.total_steps}: {op.error}"
    return f"{title}\nInterrupted at step {op.step}/{op.total_steps}: {op.error}"


def interrupted_text(op: OperationView) -> str:
    return (
        f"⚠️ camreach restarted while operation #{op.id} ({op.kind.replace('_', ' ')}"
        f"{' on ' + op.site if op.site else ''}) was at step {op.step}/{op.total_steps}: "
        f"{op.message}. Press Retry to run it again."
    )


def site_status_text(statuses: list[SiteStatus]) -> str:
    if not statuses:
        return "No sites yet. Describe one in a YAML file and run `camreach site apply FILE`."
    return "\n\n".join(_one_status(st) for st in statuses)


def _one_status(st: SiteStatus) -> str:
    lines = [f"📍 {st.name}"]
    d = st.droplet
    if d is None:
        lines.append("  droplet: not created yet")
    else:
        ip = d.get("public_ipv4") or "no address yet"
        lines.append(f"  droplet: {d['status']} in {d['region']} ({ip})")
    r = st.router
    pushed = r.get("last_push_at") or "never"
    lines.append(f"  router: {r.get('host')} — last config push {pushed}")
    m = st.modem
    lines.append(f"  modem: {m.get('model') or 'not detected'}, {m.get('protocol')}")
    lines.append(f"  cameras: {', '.join(st.cameras) or 'none'}; VPN peers: {st.peers}")
    if st.open_incidents:
        lines.append(f"  🔴 open incidents: {st.open_incidents}")
    if st.last_operation:
        op = st.last_operation
        lines.append(f"  last operation: #{op.id} {op.kind} {op.state}")
    return "\n".join(lines)


def error_text(what: str, op_id: int | None = None) -> str:
    suffix = f" (operation #{op_id})" if op_id is not None else ""
    return f"❌ {what}{suffix}"


GENERIC_ERROR = "Something went wrong inside camreach. The log has the details."


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 90:
        return f"{max(seconds, 0)} s ago"
    if seconds < 90 * 60:
        return f"{seconds // 60} min ago"
    if seconds < 36 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def peer_line(p: PeerStatus) -> str:
    name = p.name or "(on the server but unknown to camreach)"
    return (f"{name} [{p.kind}] {p.address} — handshake {ago(p.latest_handshake)}, "
            f"↓{human_bytes(p.rx_bytes)} ↑{human_bytes(p.tx_bytes)}")
