"""Checks before serving anything: the image, this PC's address, the UDP port.

Each failure raises a camreach error whose ``user_message`` says what to do about it.
The checks run in the order the user can fix things, and all of them before the port is
bound, so a failed pre-flight never answers a router.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import ipaddress
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import OperatorError, ValidationFailed
from bot.flash.guide import FIREWALL_HINT, address_setup_commands, target_for
from bot.flash.models import OPENWRT_DEFAULT_IP, FlashTarget, get_model

MIB = 1024 * 1024
# Smaller than any OpenWrt image that boots; such a file is a failed or partial download.
MIN_IMAGE_BYTES = 1 * MIB
# For routers not in the table: no TFTP recovery flash is this big, and we keep it in memory.
MAX_UNKNOWN_IMAGE_BYTES = 64 * MIB
SUMS_FILE = "sha256sums"

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class CheckedImage:
    """The image as read and checked; ``data`` is what gets served, so a file changed
    after the check cannot reach the router."""

    path: Path
    data: bytes = field(repr=False)
    sha256: str
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.data)


def resolve_target(
    model_key: str | None, server_ip: str | None, filename: str | None
) -> FlashTarget:
    """A table row, optionally overridden, or a router described by hand."""
    if server_ip is not None:
        _parse_ipv4(server_ip, "--server-ip")
    if filename is not None:
        check_plain_filename(filename)
    if model_key:
        target = target_for(get_model(model_key))
        return FlashTarget(
            label=target.label,
            server_ip=server_ip or target.server_ip,
            filename=filename or target.filename,
            openwrt_ip=target.openwrt_ip,
            model=target.model,
            server_prefix=target.server_prefix,
        )
    if server_ip is None or filename is None:
        raise ValidationFailed(
            "Say which router: --model KEY (see `camreach flash --list-models`), or for a"
            " router not in the list both --server-ip and --filename from its OpenWrt wiki"
            " page (the PC's address and the file name the bootloader asks for)."
        )
    return FlashTarget(
        label=f"router asking {server_ip} for {filename}",
        server_ip=server_ip,
        filename=filename,
        openwrt_ip=OPENWRT_DEFAULT_IP,
    )


def check_plain_filename(name: str) -> None:
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise ValidationFailed(
            f"--filename must be a plain file name such as tp_recovery.bin, not {name!r}."
        )


def _parse_ipv4(text: str, option: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValidationFailed(
            f"{option} {text!r} is not an IPv4 address such as 192.168.0.225."
        ) from None


# --- the image ---------------------------------------------------------------------------


def check_image(path: Path, target: FlashTarget, sha256_hex: str | None = None) -> CheckedImage:
    expected = _normalise_sha256(sha256_hex) if sha256_hex is not None else None
    _check_file(path)
    size = path.stat().st_size
    _check_size(path, size, target)
    data = path.read_bytes()
    _check_content(path, data)
    notes = [_check_name(path, target)]
    digest = hashlib.sha256(data).hexdigest()
    notes.extend(_check_checksums(path, digest, expected))
    return CheckedImage(path=path, data=data, sha256=digest, notes=tuple(notes))


def _normalise_sha256(text: str) -> str:
    hex_ = text.strip().lower()
    if not _HEX64.fullmatch(hex_):
        raise ValidationFailed(
            "--sha256 must be the 64 hex digits from the download page or sha256sums file."
        )
    return hex_


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ValidationFailed(
            f"The image {path} does not exist. Check the path, or download the image first"
            " (`camreach flash --list-models` shows where)."
        )
    if not path.is_file():
        raise ValidationFailed(f"{path} is not a file. Give the path of the .bin image itself.")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValidationFailed(
            f"Cannot read {path}: {exc.strerror}. Copy it somewhere you can read, or fix its"
            " permissions."
        ) from exc


def _check_size(path: Path, size: int, target: FlashTarget) -> None:
    m = target.model
    limit = m.max_image_bytes if m is not None else MAX_UNKNOWN_IMAGE_BYTES
    if size > limit:
        where = (
            f"the {m.name} takes at most {limit} bytes ({m.flash_bytes // MIB} MiB flash less"
            " the bootloader's own partitions); a bigger image would overwrite the Wi-Fi"
            " calibration data"
            if m is not None
            else f"no router recovers from an image over {limit // MIB} MiB by TFTP"
        )
        raise ValidationFailed(
            f"{path.name} is {size} bytes, too big: {where}. Use the OpenWrt"
            f" tftp-recovery image for this router{_pattern_hint(target)}."
        )
    if size < MIN_IMAGE_BYTES:
        raise ValidationFailed(
            f"{path.name} is only {size} bytes: too small for a firmware image, most likely a"
            f" failed download. Download it again{_pattern_hint(target)}."
        )


def _check_content(path: Path, data: bytes) -> None:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml")):
        raise ValidationFailed(
            f"{path.name} is a web page, not firmware: the browser saved an error or"
            " redirect page. Download the image again with a direct link."
        )


def _pattern_hint(target: FlashTarget) -> str:
    m = target.model
    return f" ({m.image_pattern}, from {m.selector_url})" if m is not None else ""


def _check_name(path: Path, target: FlashTarget) -> str:
    m = target.model
    name = path.name.lower()
    if m is None:
        return f"router not in the table: {path.name} is served as is, its kind unchecked"
    if fnmatch.fnmatchcase(name, m.image_pattern.lower()):
        return f"{path.name} is the OpenWrt tftp-recovery image for the {m.name}"
    if name == target.filename.lower():
        return (
            f"{path.name} was renamed already, so its name cannot show it is the {m.name}"
            " tftp-recovery image: make sure it is"
        )
    if "sysupgrade" in name:
        why = (
            "it is a sysupgrade image, for routers already running OpenWrt; the bootloader"
            " needs the tftp-recovery image"
        )
    elif m.openwrt_device not in name and ("tplink_" in name or "tp-link" in name):
        why = f"its name says it is for another router, not the {m.name}"
    elif "initramfs" in name or "kernel" in name:
        why = "it is a kernel or initramfs image, not a tftp-recovery image"
    else:
        why = f"its name does not look like the OpenWrt tftp-recovery image for the {m.name}"
    raise ValidationFailed(
        f"{path.name}: {why}. Download {m.image_pattern} from {m.selector_url}"
        f" (you do not need to rename it; if you did, name it {target.filename})."
    )


def _check_checksums(path: Path, digest: str, expected: str | None) -> list[str]:
    notes: list[str] = []
    if expected is not None:
        if digest != expected:
            raise ValidationFailed(_mismatch(path, digest, expected, "--sha256"))
        notes.append("SHA-256 matches --sha256")
    sums = path.parent / SUMS_FILE
    if sums.is_file():
        listed = parse_sha256sums(sums.read_text(encoding="utf-8", errors="replace"))
        if path.name in listed:
            if listed[path.name] != digest:
                raise ValidationFailed(_mismatch(path, digest, listed[path.name], str(sums)))
            notes.append(f"SHA-256 matches {SUMS_FILE}")
        else:
            notes.append(f"{SUMS_FILE} next to it does not list {path.name}: not checked there")
    if not notes:
        notes.append(
            f"SHA-256 not checked: pass --sha256 or put the release's {SUMS_FILE} next to it"
        )
    return notes


def _mismatch(path: Path, digest: str, expected: str, source: str) -> str:
    return (
        f"The SHA-256 of {path.name} is {digest}, but {source} says {expected}: the download"
        " is damaged or it is another file. Download it again; do not flash this one."
    )


def parse_sha256sums(text: str) -> dict[str, str]:
    """``{file name: hex}`` from a sha256sum(1)-style file (``HEX *name`` or ``HEX  name``)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and _HEX64.fullmatch(parts[0].lower()):
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


# --- this PC's address -------------------------------------------------------------------


def check_listen_address(target: FlashTarget, listen: str) -> str | None:
    """Raise unless the router can reach us at ``listen``; a note for loopback trials."""
    addr = _parse_ipv4(listen, "--listen")
    if addr.is_loopback:
        return (
            f"listening on {listen}: only this machine can connect (for trying it out);"
            " the address check is skipped and a router cannot reach it"
        )
    if not addr.is_unspecified and str(addr) != target.server_ip:
        raise ValidationFailed(
            f"The router sends its request to {target.server_ip}, so listening on {listen}"
            " would never see it. Leave out --listen, or use --listen 0.0.0.0."
        )
    if not address_is_local(target.server_ip):
        raise OperatorError(address_missing_message(target))
    return None


def address_is_local(ip: str) -> bool:
    """Whether an interface of this machine has ``ip``: binding to it works only then,
    on Linux, macOS and Windows alike."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((ip, 0))
        except OSError:
            return False
    return True


def wired_interfaces(sys_class_net: Path = Path("/sys/class/net")) -> list[str]:
    """Linux network interfaces backed by hardware and not Wi-Fi: where the cable goes."""
    if not sys_class_net.is_dir():
        return []
    return sorted(
        p.name
        for p in sys_class_net.iterdir()
        if (p / "device").exists()
        and not (p / "wireless").exists()
        and not (p / "phy80211").exists()
    )


def guess_interface() -> str | None:
    wired = wired_interfaces()
    return wired[0] if len(wired) == 1 else None


def address_missing_message(target: FlashTarget, iface: str | None = None) -> str:
    iface = iface or guess_interface()
    return (
        f"No interface of this PC has the address {target.server_ip}, which the"
        f" {target.label} bootloader sends its request to.\n"
        + address_setup_commands(target.server_ip, target.server_prefix, iface)
        + "\nThen run this command again. (To try camreach without a router:"
        " --listen 127.0.0.1 --port 6969.)"
    )


# --- the UDP port ------------------------------------------------------------------------


def bind_server_socket(listen: str, port: int, target: FlashTarget) -> socket.socket:
    """The bound UDP socket the server will use: binding it is the port check."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((listen, port))
    except OSError as exc:
        sock.close()
        raise bind_error(exc, listen, port, target) from exc
    return sock


def bind_error(exc: OSError, listen: str, port: int, target: FlashTarget) -> OperatorError:
    """Map a failed bind to what the user can do about it."""
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return OperatorError(privileged_port_message(port), detail=str(exc))
    if code == errno.EADDRINUSE:
        return OperatorError(
            f"UDP port {port} on {listen} is taken by another program, most likely another"
            " TFTP server (tftpd-hpa, atftpd, dnsmasq with enable-tftp, Tftpd32/Tftpd64)."
            f" Find it with `sudo ss -ulpn 'sport = :{port}'` (Linux),"
            f" `sudo lsof -nP -iUDP:{port}` (macOS) or `netstat -ano -p udp | findstr :{port}`"
            " (Windows), and stop it while flashing.",
            detail=str(exc),
        )
    if code == errno.EADDRNOTAVAIL:
        return OperatorError(address_missing_message(target), detail=str(exc))
    return OperatorError(
        f"Cannot listen on UDP {listen}:{port}: {exc.strerror or exc}. {FIREWALL_HINT}",
        detail=str(exc),
    )


def privileged_port_message(port: int) -> str:
    python = sys.executable
    return (
        f"Listening on UDP port {port} needs root here (ports below 1024 are privileged,"
        " and the bootloader always asks on port 69). Either run it with sudo:"
        " `sudo camreach flash ...` (if sudo does not find it: `sudo $(command -v camreach)"
        " flash ...`), or on Linux allow this Python once with CAP_NET_BIND_SERVICE:"
        f" `sudo setcap cap_net_bind_service=+ep $(readlink -f {python})` (that lets every"
        " program run by this Python use low ports)."
    )
