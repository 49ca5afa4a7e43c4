"""Pure renderers: small frozen inputs in, text out (no I/O, no settings).

netjsonconfig-style: input dataclasses (``model``) -> converters (``modem``,
``router_wireguard``, ``firewall``, combined by ``router``) -> :class:`UciSection` list ->
one dumb renderer (``uci``). wg-quick files come from ``wg_conf``, the droplet's user data
from ``cloud_init``. Golden tests: ``tests/test_render_*.py`` and ``tests/golden/``.
"""

from bot.render.cloud_init import render_user_data
from bot.render.firewall import MODEM_ZONE, VPN_ZONE, firewall_sections
from bot.render.model import (
    ClientConfig,
    FirewallConfig,
    ModemConfig,
    RouterConfig,
    RouterWireguard,
    ServerConfig,
    WgPeer,
)
from bot.render.modem import modem_sections
from bot.render.router import render_router_batch, render_router_config, render_router_sections
from bot.render.router_wireguard import router_wireguard_sections
from bot.render.uci import (
    ParsedUci,
    UciSection,
    diff_sections,
    parse_uci_show,
    render_batch,
    render_uci_config,
    uci_quote,
)
from bot.render.wg_conf import (
    add_peer,
    client_conf,
    device_peer,
    next_free_address,
    parse_server_peers,
    remove_peer,
    router_peer,
    server_conf,
)

__all__ = [
    "MODEM_ZONE",
    "VPN_ZONE",
    "ClientConfig",
    "FirewallConfig",
    "ModemConfig",
    "ParsedUci",
    "RouterConfig",
    "RouterWireguard",
    "ServerConfig",
    "UciSection",
    "WgPeer",
    "add_peer",
    "client_conf",
    "device_peer",
    "diff_sections",
    "firewall_sections",
    "modem_sections",
    "next_free_address",
    "parse_server_peers",
    "parse_uci_show",
    "remove_peer",
    "render_batch",
    "render_router_batch",
    "render_router_config",
    "render_router_sections",
    "render_uci_config",
    "render_user_data",
    "router_peer",
    "router_wireguard_sections",
    "server_conf",
    "uci_quote",
]
