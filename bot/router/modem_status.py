"""The modem's radio state as one typed result, read with the tool that fits its protocol.

- QMI: ``uqmi --get-signal-info`` and ``--get-serving-system`` (JSON; field names from
  openwrt/uqmi ``commands-nas.c``: ``type``, ``rssi``, ``rsrq``, ``rsrp``, ``snr``;
  ``registration``, ``plmn_mcc``, ``plmn_mnc``, ``plmn_description``, ``roaming``).
- NCM and 3G sticks: AT commands through the modem's port with comgt's ``gcom`` and
  ``/etc/gcom/runcommand.gcom`` (what OpenWrt's ncm.sh uses): ``AT+CSQ``, ``AT+COPS?``,
  ``AT+CREG?``, ``AT+CEREG?`` (3GPP TS 27.007 §8.5, §7.3, §7.2, §10.1.22) and Huawei's
  ``AT^HCSQ?`` (HUAWEI ME909s AT Command Interface Specification, ^HCSQ: LTE RSSI = -120 + n
  dBm, RSRP = -140 + n dBm, SINR = -20 + 0.2 n dB, RSRQ = -19.5 + 0.5 n dB).
- HiLink sticks: the stick's web API at 192.168.8.1 (``/api/device/signal``,
  ``/api/net/current-plmn``, ``/api/monitoring/status``; element names as used by the
  huawei-lte-api library), fetched on the router with ``uclient-fetch``.

The parsers are pure and never raise on odd output: what they cannot read stays None and
shows as "unknown".
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.adapters.ssh import SshConnection
from bot.errors import CamreachError, ValidationFailed
from bot.render.model import ModemProtocol
from bot.router.frames import FRAME_SH, parse_frames

__all__ = [
    "ModemStatus",
    "Registration",
    "parse_at",
    "parse_hilink",
    "parse_uqmi",
    "read_modem_status",
]

Registration = Literal[
    "registered", "roaming", "searching", "denied", "not-registered", "unknown"
]


@dataclass(frozen=True)
class ModemStatus:
    source: Literal["uqmi", "at", "hilink", "none"]
    rssi_dbm: float | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    operator: str | None = None
    registration: Registration = "unknown"
    network_type: str | None = None  # "LTE", "UMTS", "GSM"
    problems: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        def val(v: float | None, unit: str) -> str:
            return "unknown" if v is None else f"{v:g} {unit}"

        lines = [
            f"Operator: {self.operator or 'unknown'} ({self.network_type or 'unknown'}), "
            f"{self.registration}",
            f"Signal: RSSI {val(self.rssi_dbm, 'dBm')}, RSRP {val(self.rsrp_dbm, 'dBm')}, "
            f"RSRQ {val(self.rsrq_db, 'dB')}, SINR {val(self.sinr_db, 'dB')}",
        ]
        lines += [f"({p})" for p in self.problems]
        return "\n".join(lines)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = re.search(r"-?\d+(?:\.\d+)?", value)
        return float(m.group()) if m else None
    return None


# --- uqmi ----------------------------------------------------------------------------------

_QMI_REG: dict[str, Registration] = {
    "registered": "registered",
    "searching": "searching",
    "not_registered": "not-registered",
    "registering_denied": "denied",
}
_QMI_TYPES = {"lte": "LTE", "wcdma": "UMTS", "gsm": "GSM", "5gnr": "5G NR", "tdma": "TDMA"}


def _json_obj(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if isinstance(data, list):  # newer uqmi: one table per radio (LTE + 5G NR)
        data = next((d for d in data if isinstance(d, dict)), {})
    return data if isinstance(data, dict) else {}


def parse_uqmi(signal: str, serving: str) -> ModemStatus:
    sig, srv = _json_obj(signal), _json_obj(serving)
    problems = []
    if not sig:
        problems.append("uqmi gave no signal information")
    reg = _QMI_REG.get(str(srv.get("registration", "")), "unknown")
    if reg == "registered" and srv.get("roaming") is True:
        reg = "roaming"
    operator = srv.get("plmn_description")
    if not operator and "plmn_mcc" in srv and "plmn_mnc" in srv:
        operator = f"{srv['plmn_mcc']}{int(srv['plmn_mnc']):02d}" if isinstance(
            srv["plmn_mnc"], int) else None
    return ModemStatus(
        source="uqmi",
        rssi_dbm=_num(sig.get("rssi")),
        rsrp_dbm=_num(sig.get("rsrp")),
        rsrq_db=_num(sig.get("rsrq")),
        sinr_db=_num(sig.get("snr")),
        operator=str(operator) if operator else None,
        registration=reg,
        network_type=_QMI_TYPES.get(str(sig.get("type", "")).lower()),
        problems=tuple(problems),
    )


# --- AT commands ---------------------------------------------------------------------------

_CREG: dict[str, Registration] = {
    "0": "not-registered", "1": "registered", "2": "searching", "3": "denied",
    "4": "unknown", "5": "roaming",
}
_ACT = {"0": "GSM", "2": "UMTS", "3": "GSM", "4": "UMTS", "5": "UMTS", "6": "UMTS",
        "7": "LTE", "13": "5G NR"}


def _at_line(text: str, prefix: str) -> list[str] | None:
    """The fields after ``+CSQ:`` (etc.) in a response, split on commas outside quotes."""
    for line in text.splitlines():
        line = line.strip()
        if line.upper().startswith(prefix):
            body = line[len(prefix):].strip()
            return [f.strip() for f in re.findall(r'"[^"]*"|[^,]+', body)]
    return None


def _csq(fields: list[str] | None) -> float | None:
    if not fields or not fields[0].isdigit():
        return None
    n = int(fields[0])
    return None if n == 99 or n > 31 else float(-113 + 2 * n)


def _hcsq(fields: list[str] | None) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    if not fields:
        return out
    rat = fields[0].strip('"').upper()
    out["rat"] = rat
    vals = [int(f) if f.isdigit() else None for f in fields[1:]]

    def get(i: int, top: int) -> int | None:
        v = vals[i] if i < len(vals) else None
        return v if v is not None and v <= top else None

    if rat == "LTE":
        if (v := get(0, 96)) is not None:
            out["rssi"] = -120.0 + v
        if (v := get(1, 97)) is not None:
            out["rsrp"] = -140.0 + v
        if (v := get(2, 251)) is not None:
            out["sinr"] = round(-20.0 + 0.2 * v, 1)
        if (v := get(3, 34)) is not None:
            out["rsrq"] = -19.5 + 0.5 * v
    elif rat in ("WCDMA", "GSM") and (v := get(0, 96)) is not None:
        out["rssi"] = -120.0 + v
    return out


def parse_at(responses: Mapping[str, str]) -> ModemStatus:
    """``responses`` by command: ``{"AT+CSQ": "+CSQ: 23,99\\r\\nOK", ...}``."""
    problems = []
    csq = _csq(_at_line(responses.get("AT+CSQ", ""), "+CSQ:"))
    hcsq = _hcsq(_at_line(responses.get("AT^HCSQ?", ""), "^HCSQ:"))
    cops = _at_line(responses.get("AT+COPS?", ""), "+COPS:")
    operator = network = None
    if cops and len(cops) >= 3:
        operator = cops[2].strip('"') or None
        if len(cops) >= 4:
            network = _ACT.get(cops[3])
    reg: Registration = "unknown"
    for cmd, prefix in (("AT+CEREG?", "+CEREG:"), ("AT+CREG?", "+CREG:")):
        fields = _at_line(responses.get(cmd, ""), prefix)
        if fields and len(fields) >= 2:
            state = _CREG.get(fields[1], "unknown")
            if reg == "unknown" or state in ("registered", "roaming"):
                reg = state
            if state in ("registered", "roaming"):
                break
    rat = hcsq.get("rat")
    if network is None and isinstance(rat, str) and rat not in ("NOSERVICE", ""):
        network = {"WCDMA": "UMTS"}.get(rat, rat)
    if not any(responses.values()):
        problems.append("the modem did not answer AT commands")

    def f(key: str) -> float | None:
        v = hcsq.get(key)
        return v if isinstance(v, float) else None

    return ModemStatus(
        source="at",
        rssi_dbm=f("rssi") if f("rssi") is not None else csq,
        rsrp_dbm=f("rsrp"),
        rsrq_db=f("rsrq"),
        sinr_db=f("sinr"),
        operator=operator,
        registration=reg,
        network_type=network,
        problems=tuple(problems),
    )


# --- HiLink web API ------------------------------------------------------------------------

# monitoring/status CurrentNetworkType (huawei-lte-api NetworkTypeEnum).
_HILINK_NET = {"19": "LTE", "101": "LTE", "4": "UMTS", "9": "UMTS", "1": "GSM", "2": "GSM",
               "3": "GSM", "7": "UMTS", "41": "UMTS", "46": "UMTS"}
_HILINK_RAT = {"7": "LTE", "2": "UMTS", "0": "GSM"}  # current-plmn Rat


def _xml_values(text: str) -> dict[str, str]:
    """Leaf elements of a HiLink ``<response>`` (flat by design; no XML entities needed)."""
    if "<error>" in text:
        return {}
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"<([A-Za-z_][\w-]*)>([^<]*)</\1>", text)}


def parse_hilink(signal: str, plmn: str, status: str) -> ModemStatus:
    sig, net, st = _xml_values(signal), _xml_values(plmn), _xml_values(status)
    problems = []
    for name, text, values in (("signal", signal, sig), ("current-plmn", plmn, net),
                               ("status", status, st)):
        if not values:
            code = re.search(r"<code>(\d+)</code>", text)
            problems.append(
                f"the stick's {name} page needs a login (error {code.group(1)})" if code
                else f"the stick's {name} page gave nothing"
            )
    conn, service = st.get("ConnectionStatus"), st.get("ServiceStatus")
    reg: Registration = "unknown"
    if service == "2" or conn == "901":  # service available / connected
        reg = "roaming" if st.get("RoamingStatus") == "1" else "registered"
    elif service is not None:
        reg = "searching"
    network = _HILINK_NET.get(st.get("CurrentNetworkTypeEx", "")) or _HILINK_NET.get(
        st.get("CurrentNetworkType", "")) or _HILINK_RAT.get(net.get("Rat", ""))
    return ModemStatus(
        source="hilink",
        rssi_dbm=_num(sig.get("rssi")),
        rsrp_dbm=_num(sig.get("rsrp")),
        rsrq_db=_num(sig.get("rsrq")),
        sinr_db=_num(sig.get("sinr")),
        operator=net.get("FullName") or net.get("ShortName") or None,
        registration=reg,
        network_type=network,
        problems=tuple(problems),
    )


# --- reading it on the router --------------------------------------------------------------

_QMI_SCRIPT = r"""
umask 077
T=$(mktemp -d /tmp/camreach-modem.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
""" + FRAME_SH + r"""
capture signal uqmi -t 5000 -s -d "$1" --get-signal-info
capture serving uqmi -t 5000 -s -d "$1" --get-serving-system
"""

_AT_SCRIPT = r"""
umask 077
T=$(mktemp -d /tmp/camreach-modem.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
""" + FRAME_SH + r"""
n=0
for c in 'AT+CSQ' 'AT^HCSQ?' 'AT+COPS?' 'AT+CREG?' 'AT+CEREG?'; do
	n=$((n + 1))
	# busybox has no timeout(1) here: a silent modem port must not hold the readout.
	COMMAND="$c" gcom -d "$1" -s /etc/gcom/runcommand.gcom > "$T/at$n" 2>/dev/null &
	pid=$!
	( sleep 4; kill -9 "$pid" ) </dev/null >/dev/null 2>&1 &
	killer=$!
	wait "$pid"
	kill "$killer" 2>/dev/null
	emit "at$n" "$T/at$n"
	# No answer to the first command (gcom prints only its "sending ->" line): the port is
	# silent, and asking more would only cost time.
	if [ "$n" = 1 ] && ! grep -qE 'OK|ERROR|^[+^]' "$T/at$n"; then break; fi
done
"""

_HILINK_SCRIPT = r"""
umask 077
T=$(mktemp -d /tmp/camreach-modem.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
""" + FRAME_SH + r"""
for page in device/signal net/current-plmn monitoring/status; do
	name=$(echo "$page" | tr / _)
	uclient-fetch -q -T 5 -O - "http://$1/api/$page" > "$T/$name" 2>/dev/null
	emit "$name" "$T/$name"
done
"""

_AT_COMMANDS = ("AT+CSQ", "AT^HCSQ?", "AT+COPS?", "AT+CREG?", "AT+CEREG?")
_DEVICE_RE = re.compile(r"/dev/[A-Za-z0-9_.-]+")
_HOST_RE = re.compile(r"[A-Za-z0-9.-]+(?::\d{1,5})?")


async def read_modem_status(
    conn: SshConnection, protocol: ModemProtocol, device: str | None, *,
    hilink_host: str = "192.168.8.1",
) -> ModemStatus:
    """One round trip with the tool for ``protocol``; anything unreadable is "unknown"."""
    try:
        if protocol == "qmi":
            if device is None or not _DEVICE_RE.fullmatch(device):
                raise ValidationFailed("No QMI control device is known; detect the modem.")
            parts = await _run(conn, _QMI_SCRIPT, device)
            return parse_uqmi(parts.get("signal", ""), parts.get("serving", ""))
        if protocol in ("ncm", "3g"):
            if device is None or not _DEVICE_RE.fullmatch(device):
                raise ValidationFailed("No modem port is known; detect the modem.")
            parts = await _run(conn, _AT_SCRIPT, device)
            return parse_at({cmd: parts.get(f"at{i}", "")
                             for i, cmd in enumerate(_AT_COMMANDS, 1)})
        if protocol == "dhcp":
            if not _HOST_RE.fullmatch(hilink_host):
                raise ValidationFailed(f"{hilink_host!r} is not a host name or address.")
            parts = await _run(conn, _HILINK_SCRIPT, hilink_host)
            return parse_hilink(parts.get("device_signal", ""),
                                parts.get("net_current-plmn", ""),
                                parts.get("monitoring_status", ""))
    except CamreachError as exc:
        return ModemStatus("none", problems=(exc.user_message,))
    return ModemStatus("none", problems=(f"reading the signal of {protocol} modems is not "
                                         "supported yet",))


async def _run(conn: SshConnection, script: str, arg: str) -> dict[str, str]:
    command = shlex.join(["sh", "-c", script, "camreach-modem", arg])
    res = await conn.run(command, input=b"", timeout=45)
    return parse_frames(res.stdout_bytes or res.stdout, where=conn.target.where)
