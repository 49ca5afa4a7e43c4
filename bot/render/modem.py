"""The LTE modem's WAN interface in ``/etc/config/network``.

Option names and values are those the OpenWrt 23.05 proto scripts read
(``lib/netifd/proto/{ncm,qmi,mbim,3g,dhcp}.sh`` declare them with ``proto_config_add_*``;
``metric`` comes from ``proto_config_add_defaults``). Which mode/auth/pdptype each protocol
can take is checked when :class:`~bot.render.model.ModemConfig` is built.

The interface (``ModemConfig.interface``, ``wwan`` by default) belongs to camreach's
``modem`` firewall zone (``firewall.py``). ncm, qmi and mbim bring up dynamic
``<interface>_4``/``_6`` children; their scripts look the zone up with
``fw3 -q network <interface>``, so the children land in the same zone.
"""

from __future__ import annotations

from bot.render.model import Auth, Mode, ModemConfig, PdpType
from bot.render.uci import UciSection, UciValue

__all__ = ["modem_sections"]

# ncm: keys of the "modes" table in /etc/gcom/ncm.json (Huawei: AT^SYSCFGEX). "auto" is
# sent too: Huawei sticks keep the mode in NVRAM, so leaving it out would keep an old
# LTE-only setting after the user went back to auto.
_NCM_MODE: dict[Mode, str] = {
    "auto": "auto",
    "lte": "lte",
    "prefer-lte": "preferlte",
    "umts": "umts",
    "prefer-umts": "preferumts",
}
# qmi: uqmi --set-network-modes takes a set of allowed RATs, not an order; with "all" the
# modem camps on the best one, which is LTE wherever there is LTE.
_QMI_MODES: dict[Mode, str] = {"auto": "all", "prefer-lte": "all", "lte": "lte", "umts": "umts"}
# 3g: the proto script's "service" for Huawei/Option/Novatel sticks.
_3G_SERVICE: dict[Mode, str | None] = {"auto": None, "umts": "umts_only", "prefer-umts": "umts"}
# ncm puts auth verbatim into AT^NDISDUP=...,<auth> (Huawei) / AT$QCPDPP (Sierra): numbers.
_NCM_AUTH: dict[Auth, str | None] = {"none": None, "pap": "1", "chap": "2"}
# umbim names IPv4 "ipv4" ("ip" would fall back to the modem's default context type).
_MBIM_PDP: dict[PdpType, str] = {"ip": "ipv4", "ipv6": "ipv6", "ipv4v6": "ipv4v6"}


def _credentials(cfg: ModemConfig) -> dict[str, UciValue]:
    opts: dict[str, UciValue] = {}
    if cfg.apn is not None:
        opts["apn"] = cfg.apn
    if cfg.pin is not None:
        opts["pincode"] = cfg.pin
    if cfg.username is not None and cfg.password is not None:
        opts["username"] = cfg.username
        opts["password"] = cfg.password
    return opts


def _protocol_options(cfg: ModemConfig) -> dict[str, UciValue]:
    opts: dict[str, UciValue] = {"proto": cfg.protocol, "device": cfg.device}
    if cfg.protocol == "dhcp":
        return opts
    opts.update(_credentials(cfg))
    if cfg.protocol == "ncm":
        if (auth := _NCM_AUTH[cfg.auth]) is not None:
            opts["auth"] = auth
        opts["pdptype"] = cfg.pdptype.upper()  # the script upper-cases it; LuCI writes IP
        opts["mode"] = _NCM_MODE[cfg.mode]
    elif cfg.protocol == "qmi":
        if cfg.auth != "none":
            opts["auth"] = cfg.auth
        opts["pdptype"] = cfg.pdptype
        opts["modes"] = _QMI_MODES[cfg.mode]
    elif cfg.protocol == "mbim":
        if cfg.auth != "none":
            opts["auth"] = cfg.auth
        opts["pdptype"] = _MBIM_PDP[cfg.pdptype]
    elif cfg.protocol == "3g" and (service := _3G_SERVICE[cfg.mode]) is not None:
        opts["service"] = service
    if cfg.delay is not None:
        opts["delay"] = cfg.delay
    return opts


def modem_sections(cfg: ModemConfig) -> list[UciSection]:
    """``network.<interface>`` for the modem, with only the options its protocol reads."""
    opts = _protocol_options(cfg)
    if cfg.metric is not None:
        opts["metric"] = cfg.metric
    return [UciSection("network", "interface", cfg.interface, opts)]
