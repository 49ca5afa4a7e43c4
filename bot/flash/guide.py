"""Plain-text instructions for flashing, shared by ``camreach flash`` and Telegram's /flash.

Everything here is a pure function of the model table: no I/O, no markup (the texts are
safe to send with no parse mode and to print on a terminal).
"""

from __future__ import annotations

import ipaddress

from bot.flash.models import MODELS, FlashTarget, RouterModel, get_model

DOWNLOADS = "https://downloads.openwrt.org/releases/"

FIREWALL_HINT = (
    "A host firewall can drop the router's request (UDP port 69) without a trace. "
    "Allow it while flashing: Linux `sudo ufw allow 69/udp` or "
    "`sudo firewall-cmd --add-service=tftp`; Windows: allow Python in Windows Defender "
    "Firewall for Private and Public networks; macOS: System Settings > Network > Firewall, "
    "allow incoming connections for Python."
)

_IFACE = "<ethernet-interface>"
_SERVICE = "Ethernet"


def models_for_keyboard() -> list[tuple[str, str]]:
    """(key, button label) for each supported router, in table order."""
    return [(m.key, f"{m.name} ({m.uplink})") for m in MODELS]


def target_for(model: RouterModel) -> FlashTarget:
    return FlashTarget(
        label=model.name,
        server_ip=model.server_ip,
        filename=model.recovery_filename,
        openwrt_ip=model.openwrt_ip,
        model=model,
        server_prefix=model.server_prefix,
    )


def flash_command(model: RouterModel, *, sudo: bool = True) -> str:
    """The exact command to run; the shell glob finds the downloaded image."""
    image = f"~/Downloads/{model.image_pattern}"
    prefix = "sudo " if sudo else ""
    return f"{prefix}camreach flash --model {model.key} --image {image}"


def broadcast_reminder(server_ip: str) -> str:
    last = server_ip.rsplit(".", 1)[-1]
    spelled = "-".join(_DIGITS[d] for d in last)
    return (
        f"Type {server_ip} exactly: the last number is {last} ({spelled}), not 255. "
        "An address ending in .255 is the network's broadcast address; "
        "the router can never reach it."
    )


_DIGITS = dict(
    zip("0123456789", "zero one two three four five six seven eight nine".split(), strict=True)
)


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in text.splitlines())


def _netmask(prefix: int) -> str:
    return str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask)


def address_setup_commands(server_ip: str, prefix: int = 24, iface: str | None = None) -> str:
    """How to give the PC the server address on Linux, macOS and Windows."""
    dev = iface or _IFACE
    mask = _netmask(prefix)
    lines = [
        f"Give this PC the address {server_ip} on the Ethernet port that goes to the router:",
        f"  Linux:    sudo ip addr add {server_ip}/{prefix} dev {dev}",
        "            (`ip -br link` lists the interfaces; or set a manual IPv4 address",
        f"            {server_ip}, netmask {mask}, no gateway, in the network settings)",
        "  macOS:    networksetup -listallnetworkservices   (find the Ethernet service)",
        f'            sudo networksetup -setmanual "{_SERVICE}" {server_ip} {mask}',
        "  Windows:  (as Administrator) netsh interface ipv4 show interfaces",
        f'            netsh interface ipv4 set address name="{_SERVICE}" static {server_ip} {mask}',
        broadcast_reminder(server_ip),
    ]
    return "\n".join(lines)


def dhcp_restore_commands(server_ip: str, prefix: int = 24, iface: str | None = None) -> str:
    dev = iface or _IFACE
    return "\n".join(
        [
            f"  Linux:    sudo ip addr del {server_ip}/{prefix} dev {dev}"
            " (then reconnect the wired connection)",
            f'  macOS:    sudo networksetup -setdhcp "{_SERVICE}"',
            f'  Windows:  netsh interface ipv4 set address name="{_SERVICE}" source=dhcp',
        ]
    )


def recovery_steps(target: FlashTarget) -> tuple[str, ...]:
    if target.model is not None:
        return target.model.recovery_steps
    return (
        "Connect the router's Ethernet port to this PC with a cable.",
        "Power the router off completely.",
        "Put it in TFTP recovery as its OpenWrt wiki page says"
        " (usually: hold reset while powering on).",
    )


def waiting_text(target: FlashTarget) -> str:
    steps = "\n".join(f"  {n}. {s}" for n, s in enumerate(recovery_steps(target), 1))
    return f"Now start the router in recovery mode:\n{steps}"


def next_steps(target: FlashTarget, iface: str | None = None) -> str:
    ip = target.openwrt_ip
    return "\n".join(
        [
            "What happens next:",
            "  1. Do not power the router off or unplug it: it is writing OpenWrt to its flash"
            " and restarts by itself. Wait 2-3 minutes, until the LEDs stop blinking.",
            "  2. Set this PC's Ethernet back to DHCP:",
            _indent(dhcp_restore_commands(target.server_ip, target.server_prefix, iface), 3),
            f"  3. Open http://{ip} in a browser, or run: ssh root@{ip}",
            "     (user root, no password yet: set one; Wi-Fi stays off until you turn it on;"
            " snapshot builds have no web page, only ssh)",
            "  4. Then send /setup to the camreach bot in Telegram.",
        ]
    )


def troubleshooting(target: FlashTarget, timeout_s: float, iface: str | None = None) -> str:
    ip, prefix = target.server_ip, target.server_prefix
    m = target.model
    hold = (
        f"{m.power_off}, press and hold the {m.reset_button}, power on and keep holding"
        f" for {m.hold}"
        if m is not None
        else "power the router off, then hold reset while powering it on"
    )
    checks = [
        "Cable: the PC is connected straight to the router's Ethernet port"
        " and the port's link LED is on.",
        f"Address: this PC has {ip}/{prefix} on that port (`ip -br addr`, `ipconfig`),"
        " and no other interface (Wi-Fi!) is in the same network: disconnect Wi-Fi while"
        " flashing. " + broadcast_reminder(ip),
        f"Recovery mode: {hold}. The bootloader asks only during a few seconds after"
        " power-on, so power it off fully and try again.",
        "Firewall: " + FIREWALL_HINT,
        "Slow link: some PCs' Ethernet ports come up after the bootloader has given up."
        " Put a simple switch between the PC and the router, or hold reset longer.",
        "NetworkManager may drop an address added with `ip addr add` when the link goes"
        " down as the router powers on: check it is still there, or set it in the"
        " connection's settings.",
        f"The file name does not matter: camreach answers the request for {target.filename}"
        " with your image.",
    ]
    body = "\n".join(f"  - {c}" for c in checks)
    return (
        f"The router did not fetch the image within {timeout_s:g} s. Check these, then run"
        f" the same command again:\n{body}"
    )


def flash_instructions(model_key: str) -> str:
    """Steps for /flash in Telegram: which image, the PC's address, the exact command.

    Raises NotFound for a key that is not in the table.
    """
    m = get_model(model_key)
    steps = "\n".join(f"   - {s}" for s in m.recovery_steps)
    setup = _indent(address_setup_commands(m.server_ip, m.server_prefix), 3).lstrip()
    return "\n".join(
        [
            f"{m.name}: install OpenWrt by TFTP recovery",
            "",
            "You need a PC with an Ethernet port and camreach installed, and a network cable.",
            "",
            "1. Download the OpenWrt image whose name ends in -squashfs-tftp-recovery.bin:",
            f"   {m.image_pattern}",
            f"   from {m.selector_url}",
            f"   or {DOWNLOADS} (newest release) > targets/{m.openwrt_target}/; save the"
            " sha256sums file from there next to it and camreach checks the download.",
            "   Not the sysupgrade image: that one is for routers already running OpenWrt."
            " No need to rename the file.",
            f"2. {setup}",
            f"3. Run on the PC (port 69 needs root; on Windows leave out sudo and put the"
            f" full path of the image):\n   {flash_command(m)}",
            f"4. When it says it is waiting for the router:\n{steps}",
            "5. When the transfer is done, do not power the router off: wait for the LEDs to"
            f" settle, set the PC back to DHCP, open http://{m.openwrt_ip} (or ssh"
            f" root@{m.openwrt_ip}), then send /setup here.",
            "",
            f"Source: {m.sources[0]}",
        ]
    )


def _kib(n: int) -> str:
    return f"{n // 1024} KiB"


def models_table() -> str:
    """``camreach flash --list-models``: the table, then each row's image, recovery, sources."""
    head = ("MODEL", "ROUTER", "UPLINK", "PC ADDRESS", "FILE", "LARGEST IMAGE (FLASH)")
    rows = [head] + [
        (
            m.key,
            m.name,
            m.uplink,
            m.server_ip,
            m.recovery_filename,
            f"{_kib(m.max_image_bytes)} ({m.flash_bytes // (1024 * 1024)} MiB)",
        )
        for m in MODELS
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for m in MODELS:
        lines += [
            "",
            f"{m.key}: OpenWrt comes up on {m.openwrt_ip}",
            f"  image:    {m.image_pattern}",
            f"  recovery: {m.power_off}; hold the {m.reset_button} while powering on, for {m.hold}",
            f"  sources:  {m.sources[0]}",
            *(f"            {s}" for s in m.sources[1:]),
        ]
    lines += [
        "",
        "Another router that recovers by TFTP: give --server-ip and --filename from its"
        " OpenWrt wiki page instead of --model.",
    ]
    return "\n".join(lines)
