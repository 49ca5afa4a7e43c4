"""Everything camreach sets on the router, in order: converters -> sections -> one batch.

``CONVERTERS`` run in order; ``network`` sections come before ``firewall`` ones so the
zones name interfaces that already exist when both are committed.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.render.firewall import firewall_sections
from bot.render.model import RouterConfig
from bot.render.modem import modem_sections
from bot.render.router_wireguard import router_wireguard_sections
from bot.render.uci import UciSection, render_batch, render_uci_config

__all__ = [
    "CONVERTERS",
    "PACKAGES",
    "RouterConfig",
    "render_router_batch",
    "render_router_config",
    "render_router_sections",
]

CONVERTERS: tuple[Callable[[RouterConfig], list[UciSection]], ...] = (
    lambda cfg: modem_sections(cfg.modem),
    lambda cfg: router_wireguard_sections(cfg.wg),
    lambda cfg: firewall_sections(cfg.firewall),
)
# The UCI packages the batch touches (commit/apply/rollback these).
PACKAGES = ("network", "firewall")


def render_router_sections(cfg: RouterConfig) -> list[UciSection]:
    return [section for convert in CONVERTERS for section in convert(cfg)]


def render_router_batch(cfg: RouterConfig) -> str:
    """The ``uci batch`` script for the router (no ``commit``: the caller applies it)."""
    return render_batch(render_router_sections(cfg))


def render_router_config(cfg: RouterConfig) -> str:
    """The same sections in ``uci export`` form, for review and golden tests."""
    return render_uci_config(render_router_sections(cfg))
