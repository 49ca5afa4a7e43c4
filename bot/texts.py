"""Every user-facing sentence the bot sends, built by pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.actions import action, for_chat
from bot.adapters.digitalocean import RegionInfo, SizeInfo
from bot.db.models import OpState
from bot.operations import RERUN_ACTION, OperationView
from bot.services.cameras import CameraView
from bot.services.droplets import DropletView, droplet_name
from bot.services.peers import PeerStatus
from bot.services.sites import SiteStatus

COMMANDS: list[tuple[str, str]] = [
    ("start", "What camreach does"),
    ("help", "The commands"),
    ("status", "Every part of every site at a glance: /status [SITE]"),
    ("uptime", "Availability and a 24 h chart: /uptime [SITE]"),
    ("mute", "Hold a site's alerts: /mute SITE [2h|30m|1d]"),
    ("unmute", "Send a site's alerts again: /unmute SITE"),
    ("snapshot", "A picture from a camera: /snapshot [SITE] [CAMERA]"),
    ("camera", "Cameras: /camera list, rtsp NAME, password NAME"),
    ("flash", "Put OpenWrt on the router (TFTP recovery)"),
    ("setup", "Create a site's VPN server: /setup [SITE]"),
    ("peer", "VPN phones and laptops: /peer add NAME, /peer list, /peer remove NAME"),
    ("droplet", "The site's server: /droplet [SITE], /droplet destroy [SITE]"),
    ("router", "The site's router: /router connect|detect|install|push|modem [SITE]"),
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
    by = f" ({op.owner})" if op.owner else ""
    return (
        f"⚠️ camreach was stopped or restarted{by} while operation #{op.id} "
        f"({op.kind.replace('_', ' ')}{' on ' + op.site if op.site else ''}) was at step "
        f"{op.step}/{op.total_steps}: {op.message}. Press Retry to run it again."
    )


COMPACT_AFTER = 5
MESSAGE_LIMIT = 4000  # Telegram's limit is 4096 characters


def site_status_text(statuses: list[SiteStatus]) -> str:
    if not statuses:
        return "No sites yet. Describe one in a YAML file and run `camreach site apply FILE`."
    if len(statuses) > COMPACT_AFTER:
        lines = [_compact_status(st) for st in statuses]
        return "\n".join([*lines, "", "/status NAME shows one site in detail."])
    return "\n\n".join(_one_status(st) for st in statuses)


def _compact_status(st: SiteStatus) -> str:
    d = st.droplet
    droplet = "no droplet" if d is None else f"droplet {d['status']} {d.get('public_ipv4') or ''}"
    alarm = f" · 🔴 {st.open_incidents}" if st.open_incidents else ""
    return f"📍 {st.name}: {droplet.strip()} · {len(st.cameras)} cameras{alarm}"


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split at line ends so each part fits in one Telegram message."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:  # a single over-long line: hard split
            parts.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            candidate = line
        current = candidate
    if current:
        parts.append(current)
    return parts


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
    """An error as Telegram shows it (actions spelled as chat commands)."""
    suffix = f" (operation #{op_id})" if op_id is not None else ""
    return for_chat(f"❌ {what}{suffix}")


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


# -- conversations shared by /setup, /peer, /droplet ------------------------------------------

CANCELLED = "Cancelled. Nothing was changed."
BUTTON_CONFIRM = "Confirm"
BUTTON_CANCEL = "Cancel"
BUTTON_REMOVE = "Remove"
BUTTON_DELETE = "Delete it"
MENU_OUT_OF_DATE = "This menu is out of date: use the newest one."
MENU_EXPIRED = "This menu has expired. Send the command again."
NO_SITES = (
    "No sites yet. Describe one in a YAML file and run `camreach site apply FILE.yaml` "
    "on the camreach machine, then try again."
)


def unknown_site(name: str, names: list[str]) -> str:
    return f"There is no site named {name!r}. Sites: {', '.join(names) or 'none yet'}."


def several_sites(names: list[str], example: str) -> str:
    return f"There are several sites ({', '.join(names)}): name one, e.g. {example}"


def usd_month(price: float | None) -> str:
    if price is None:
        return "unknown cost"
    return f"${price:.2f}".removesuffix(".00") + "/month"


# -- /setup ------------------------------------------------------------------------------------

SETUP_PICK_SITE = "Which site should get its VPN server?"
ASK_DO_TOKEN = (
    "camreach needs a DigitalOcean API token to rent the server. Create one at "
    "cloud.digitalocean.com → API → Tokens (read+write) and paste it here.\n"
    "I delete your message as soon as it arrives and keep the token encrypted. /cancel to stop."
)
TOKEN_REJECTED = (
    "DigitalOcean rejected that token (wrong, expired or revoked). Your message is deleted. "
    "Paste another token, or /cancel."
)
TOKEN_NOT_DELETED = (
    "⚠️ I could not delete the message with your token: delete it yourself, "
    "and revoke the token at cloud.digitalocean.com if this chat is shared."
)


def token_accepted(email: str) -> str:
    return f"✅ Token accepted (DigitalOcean account {email}). It is stored encrypted."


def token_failed(what: str) -> str:
    return f"❌ {what}\nPaste the token again, or /cancel."


def setup_sizes_text(site: str, smallest: SizeInfo) -> str:
    return (
        f"Droplet size for {site}. WireGuard needs very little: the smallest, "
        f"{smallest.slug} ({usd_month(smallest.price_monthly)}), is plenty."
    )


def size_button(size: SizeInfo) -> str:
    return f"{size.slug} · {size.memory_mb} MB · {usd_month(size.price_monthly)}"


def setup_regions_text(size: str) -> str:
    return (f"Region for {size} (only regions that offer it now). Pick the one nearest the "
            "site: the VPN is faster.")


def no_region_for(size: str) -> str:
    return f"No region offers {size} right now. Pick another size."


def region_button(region: RegionInfo) -> str:
    return f"{region.slug} · {region.name}"


def setup_confirm_text(site: str, size: str, region: str, price: float) -> str:
    return (
        f"camreach will create droplet {droplet_name(site)}, {size}, {region}, "
        f"{usd_month(price)}.\nDigitalOcean bills it until you delete it (/droplet destroy)."
    )


def setup_existing_text(site: str, d: DropletView) -> str:
    return (
        f"{site} already has droplet {d.name} (#{d.do_id}, {d.region}, {d.size}, "
        f"{usd_month(d.price_monthly)}). Confirm to check it and finish its set-up; nothing new "
        "is created. To change size or region, /droplet destroy it first."
    )


def setup_site_chosen(site: str) -> str:
    return f"Site: {site}"


NO_SIZES = "DigitalOcean offers no droplet size right now. Try again later."


# -- /peer -------------------------------------------------------------------------------------

PEER_USAGE = (
    "Usage:\n/peer add NAME [SITE] — a new phone or laptop, e.g. /peer add anna-phone\n"
    "/peer list [SITE]\n/peer remove NAME [SITE]"
)


def peer_conf_caption(name: str, site: str) -> str:
    return (
        f"{name}.conf: WireGuard config for {site}'s VPN. In the WireGuard app: + → Import "
        "from file. It holds this device's private key: do not forward it; delete it from "
        "this chat once imported."
    )


def peer_qr_caption(name: str) -> str:
    return f"Or, on {name}: WireGuard app → + → Scan from QR code."


def peer_list_text(site: str, rows: list[PeerStatus]) -> str:
    if not rows:
        return f"{site}'s VPN has no peers."
    return f"VPN peers of {site}:\n" + "\n".join(f"• {peer_line(p)}" for p in rows)


def peer_remove_confirm(site: str, p: PeerStatus) -> str:
    return (f"Remove {p.name} ({p.address}) from {site}'s VPN? The device loses access at "
            "once; adding it again needs a new config.")


def peer_removed(name: str, site: str) -> str:
    return f"✅ {name} is removed from {site}'s VPN."


def peer_not_found(name: str, site: str) -> str:
    return f"{site} has no peer named {name!r}. /peer list shows them."


# -- /droplet ----------------------------------------------------------------------------------

DROPLET_USAGE = "Usage: /droplet [SITE] shows it; /droplet destroy [SITE] deletes it."


def droplet_text(site: str, d: DropletView) -> str:
    return (f"{site}: droplet {d.name} (#{d.do_id}) is {d.status} in {d.region}, {d.size}, "
            f"{d.public_ipv4 or 'no address yet'}, {usd_month(d.price_monthly)}.")


def destroy_confirm_text(site: str, d: DropletView, price: float | None) -> str:
    return (
        f"This deletes {site}'s droplet for good:\n"
        f"  name: {d.name}\n  id: {d.do_id}\n  IP: {d.public_ipv4 or 'none'}\n"
        f"  region: {d.region}\n  size: {d.size}\n  cost: {usd_month(price)}\n"
        "The VPN stops for the router and every phone until /setup creates a new droplet."
    )


def destroy_type_name(site: str) -> str:
    return f"To delete it, type the site name: {site}\nAnything else cancels."


DESTROY_NOT_CONFIRMED = "That is not the site name. Nothing was deleted."


ROUTER_USAGE = (
    "Usage: /router VERB [SITE], VERB one of:\n"
    "connect — first login on the LAN: pin its host key, install camreach's SSH key\n"
    "detect — OpenWrt release, free flash, USB modem and the protocol to use\n"
    "install — install the packages the modem needs (works without internet on the router)\n"
    "push — show the config changes, then apply them with automatic rollback\n"
    "modem — signal, operator and registration of the modem"
)
WORKING = "Working on it…"
ROUTER_NO_CHANGES = "No changes: the router already has this configuration. Nothing was touched."
BUTTON_APPLY = "Apply"


def router_diff_text(site: str, diff: list[str]) -> str:
    lines = "\n".join(diff)
    return (f"Changes for the router of {site}:\n{lines}\n\nApply them? If camreach cannot "
            "reach the router through the tunnel afterwards, the router restores its old "
            "config by itself within two minutes.")


def step_timed_out(seconds: int) -> str:
    return (f"⌛ No answer within {seconds} s, so camreach stopped waiting. Nothing more was "
            "changed; check the connection and try again.")


UNKNOWN_COMMAND = "I don't know that command. /help lists what I can do."


def no_droplet(site: str) -> str:
    return f"Site {site} has no droplet. /setup {site} creates one."


def interrupted_notice(op: OperationView) -> str:
    """What a command says first about an earlier run of its site that was interrupted."""
    rerun = RERUN_ACTION.get(op.kind)
    how = (f" Running {action(rerun, op.site or '')} again retries it"
           f"{' (this command does that now)' if rerun else ''}." if rerun else "")
    return (f"Note: operation #{op.id} ({op.kind.replace('_', ' ')} on {op.site}) was "
            f"interrupted at step {op.step}/{op.total_steps}: {op.error or op.message}.{how}")


def operation_line(op: OperationView) -> str:
    when = (op.finished_at or op.started_at or op.created_at)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"
    owner = f" by {op.owner}" if op.owner else ""
    return (f"#{op.id:<5} {op.state.value:<11} {op.kind:<24} {op.site or '-':<16} "
            f"step {op.step}/{op.total_steps}{owner}  {stamp}")


def operation_detail(op: OperationView) -> str:
    lines = [operation_text(op), f"owner: {op.owner or '-'}"]
    for label, value in (("created", op.created_at), ("started", op.started_at),
                         ("last heartbeat", op.heartbeat_at), ("finished", op.finished_at)):
        lines.append(f"{label}: {value.isoformat() if value else '-'}")
    if op.retry_of is not None:
        lines.append(f"retry of: #{op.retry_of}")
    if op.retried_by is not None:
        lines.append(f"run again as: #{op.retried_by}")
    return "\n".join(lines)


BUTTON_OPEN_PRIVATE = "Open a private chat"


def private_only(command: str) -> str:
    return (f"{command} sends or asks for a secret, so it works in a private chat only: ask me "
            "in a private chat (the button opens one). Nothing was sent here.")


SNAPSHOT_USAGE = "Usage: /snapshot [SITE] [CAMERA] — a picture from one camera, or from all."
BUTTON_ANOTHER = "📷 Another"


def snapshot_album_done(count: int) -> str:
    return f"{count} pictures. Another round?"


CAMERA_USAGE = ("Usage: /camera add [SITE] · /camera list [SITE] · /camera remove NAME [SITE] · "
                "/camera rtsp NAME [SITE] · "
                "/camera password NAME [SITE] · /camera daily NAME HH:MM|off [SITE]")
PASSWORD_NOT_DELETED = ("⚠️ I could not delete your message with the password: delete it "
                        "yourself (long-press → Delete).")


def camera_list_text(site: str, views: list[CameraView]) -> str:
    if not views:
        return f"{site} has no cameras yet (camreach camera add, or the site file)."
    lines = [f"📷 Cameras of {site}:"]
    for v in views:
        about = " ".join(x for x in (v.model, v.serial) if x) or "model not read yet"
        flag = " — password refused: /camera password " + v.name if v.refused else ""
        lines.append(f"• {v.name}: {v.host}:{v.port}, {v.kind} via {v.via}, {about}{flag}")
    return "\n".join(lines)


def rtsp_text(site: str, v: CameraView) -> str:
    base = f"rtsp://{v.user}:PASSWORD@{v.host}:554/Streaming/Channels"
    return (f"📺 {v.name} ({site}), for a video app on a phone with its WireGuard peer "
            f"(/peer add):\nmain stream: {base}/101\nsub stream: {base}/102\n"
            "Put the camera's password where it says PASSWORD.")


def ask_camera_password(camera: str) -> str:
    return (f"Send the password of camera {camera}. I delete your message as soon as it "
            "arrives and keep the password encrypted. /cancel to stop.")


def camera_password_stored(camera: str) -> str:
    return (f"🔐 Stored (encrypted). The next /snapshot of {camera} uses it.")


def daily_set(site: str, camera: str, at: str | None) -> str:
    if at is None:
        return f"No more daily picture from {camera} ({site})."
    return f"☀️ {camera} ({site}) sends a picture every day at {at}, the site's time."


CAMERA_LOOKING = "🔎 Looking for cameras on the site's LAN (through the router)…"
CAMERA_BAD_USER = "A user name is one word of at most 64 characters. Send it again."


def device_label(ip: str, vendor: str | None, isapi: bool, model: str | None) -> str:
    what = model or ("HIKVision ISAPI" if isapi else "no ISAPI")
    return f"{ip} · {(vendor or 'unknown vendor')[:24]} · {what}"


def camera_none_found(site: str) -> str:
    return (f"Nothing new answers on {site}'s LAN. Is the camera plugged in to the router and "
            "powered? Or add it by address: camreach camera add.")


def camera_pick(site: str) -> str:
    return f"What answers on {site}'s LAN (HIKVision cameras first). Which one is the camera?"


def camera_ask_user(host: str, name: str) -> str:
    return (f"Camera {name} at {host}. Its login user name? Tap admin or send another.")


def camera_try_again(why: str) -> str:
    return f"❌ {why}\nNothing was stored. Send the password again, or /cancel."


def camera_added(site: str, name: str, host: str, model: str, serial: str) -> str:
    return (f"✅ Camera {name} ({host}) added to {site}: {model}, serial {serial}. "
            f"/snapshot {site} {name} takes a picture.")


def camera_remove_confirm(site: str, camera: str) -> str:
    return f"Remove camera {camera} from {site} (and its stored password)?"


def camera_removed(site: str, camera: str) -> str:
    return f"Camera {camera} removed from {site}."


# -- health ---------------------------------------------------------------------------------
BUTTON_REFRESH = "🔄 Refresh"
BUTTON_STATUS = "Status"
BUTTON_MUTE_2H = "🔕 Mute 2 h"
BUTTON_SNAPSHOT = "📷 Snapshot"
CHECKING = "Checking now…"
MUTE_USAGE = "Usage: /mute SITE [DURATION], e.g. /mute farm 2h (without a duration: until /unmute)"


def muted(site: str, duration: str | None) -> str:
    span = f"for {duration}" if duration else "until /unmute"
    return (f"🔕 {site}: alerts muted {span}. They are still recorded and shown in /status; "
            f"/unmute {site} sends them again.")


def unmuted(site: str) -> str:
    return f"🔔 {site}: alerts are sent again."


def uptime_caption(site: str) -> str:
    return f"{site}: modem signal and tunnel, last 24 h"


# -- the guided /setup ------------------------------------------------------------------------
BUTTON_NEW_SITE = "➕ New site"
BUTTON_SKIP = "Skip"
BUTTON_NO_PIN = "No PIN"
BUTTON_OTHER_APN = "Other (type it)"
BUTTON_STICK_YES = "Yes: confirm through the tunnel"
BUTTON_STICK_NO = "Not yet: confirm on the LAN"
ASK_SITE_NAME = ("A name for the new site (letters, digits and '-', e.g. farmhouse). "
                 "/cancel to stop.")
SETUP_STEP_NAMES = {"droplet": "VPN server (droplet)", "router": "router",
                    "modem": "modem (APN)", "push": "router configuration",
                    "camera": "camera"}
SETUP_USAGE = "Usage: /setup [SITE] [droplet|router|modem|camera]"
ASK_APN = ("Which mobile operator is the SIM from? Pick its APN, or type the APN your "
           "operator gives.")
ASK_APN_TEXT = "Type the APN (e.g. airtelgprs.com). /cancel to stop."
ASK_PIN = ("Does the SIM ask for a PIN? Send the PIN (I delete the message at once and keep "
           "it encrypted), or press No PIN.")
PIN_INVALID = "A SIM PIN is 4 to 8 digits. Send it again, or press No PIN."
ASK_STICK = ("Is the LTE stick plugged into the router, with a working SIM?\n"
             "Yes: camreach confirms the new settings through the tunnel.\n"
             "Not yet (router on the desk): it confirms them on the LAN, and you finish at "
             "the site.")
ASK_CAMERA_USER = "The camera's user name (HIKVision's default is admin):"
ASK_CAMERA_PASSWORD = ("The camera's password. I delete the message at once and keep it "
                       "encrypted.")
NO_CAMERAS_FOUND = ("No camera answered on the router's LAN. Check that it is powered and "
                    "cabled to the router, then /setup SITE camera again (or Skip).")
ROUTER_CONNECTING = "Logging in to the router and installing camreach's key…"
ROUTER_DETECTING = "Connected. Detecting the router, the modem and the packages…"
PLANNING_PUSH = "Preparing the router's configuration…"
LOOKING_FOR_CAMERAS = "Looking for cameras on the router's LAN…"
WAITING_FOR_DROPLET = "Waiting for the droplet to be ready before configuring the router…"


def setup_checklist(site: str, done: dict[str, bool], details: dict[str, str]) -> str:
    lines = [f"Setup of {site}:"]
    for step, label in SETUP_STEP_NAMES.items():
        mark = "✅" if done.get(step) else "⬜"
        extra = f" — {details[step]}" if details.get(step) else ""
        lines.append(f"{mark} {label}{extra}")
    return "\n".join(lines)


def continue_button(step: str) -> str:
    return f"▶ Continue: {SETUP_STEP_NAMES[step]}"


def redo_button(step: str) -> str:
    return f"↻ Redo: {SETUP_STEP_NAMES[step]}"


def site_created(site: str) -> str:
    return (f"Site {site} created with the usual defaults (router 192.168.1.1, LAN "
            "192.168.1.0/24, VPN 10.8.0.0/24, droplet in blr1, the smallest size); each step "
            "lets you change its part.")


def ask_router_host(site: str, current: str) -> str:
    return (f"Router of {site}: where can camreach reach it now? Send its LAN address, or "
            f"press {current} (OpenWrt's default). The machine camreach runs on must be on "
            "the router's network for this step: connect it by cable to a LAN port of the "
            "router (or its Wi-Fi).")


def router_unreachable(host: str, problem: str) -> str:
    return (f"camreach cannot reach the router at {host}: {problem}\n"
            "Connect the machine camreach runs on to the router's LAN port (the router gives "
            "it an address by DHCP), check the router is powered, then send the address "
            "again.")


def ask_router_password(host: str) -> str:
    return (f"The router's root password (the one you set after flashing, at {host}). I "
            "delete the message at once and use it once, to install camreach's key; it is "
            "not stored.")


def router_password_refused() -> str:
    return "The router refused that password. Send the root password again. /cancel to stop."


def apn_invalid(apn: str) -> str:
    return (f"{apn!r} is not an APN: letters, digits, '.' and '-', e.g. airtelgprs.com. "
            "Send it again.")


def router_ready(site: str, detected: str, proposal: str) -> str:
    return f"✅ Router of {site} connected.\n{detected}\n{proposal}"


def camera_proof(site: str, camera: str, model: str) -> str:
    return f"✅ {camera} ({model}) at {site}: here is its first picture."


def setup_summary(site: str, lines: list[str], price: float | None) -> str:
    cost = f"\nCost: about ${price:g} per month (the droplet)." if price is not None else ""
    done = "\n".join(f"• {ln}" for ln in lines)
    return (f"🎉 Setup of {site} finished.\n{done}{cost}\n\n"
            f"Next: /peer add PHONE-NAME {site} gives your phone a VPN profile (QR code) to "
            f"watch the cameras; /status for every part at a glance; /snapshot {site} for a "
            f"picture; /uptime {site}; alerts come by themselves.")


def setup_cancelled(left: list[str], forgot: bool, site: str) -> str:
    if forgot:
        return f"Cancelled. Nothing had been created outside camreach; the site {site} is gone."
    if not left:
        return f"{CANCELLED} /setup {site} continues from where it stopped."
    items = "\n".join(f"• {item}" for item in left)
    return (f"Cancelled. What exists now for {site}, and how to remove it:\n{items}\n"
            f"/setup {site} continues from where it stopped.")


def at_site_todo(site: str) -> str:
    return ("Configured on the desk. At the site: plug the LTE stick with its SIM into the "
            "router and power it; it dials in by itself. /status shows the tunnel when it is "
            "up, and an alert says if it does not come.")


def tunnel_up(site: str) -> str:
    return f"✅ The router of {site} is reachable through the tunnel."
