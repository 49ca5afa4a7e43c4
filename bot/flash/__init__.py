"""Put OpenWrt on a router through its bootloader's TFTP recovery.

models     the routers (a typed table; each row cites its sources)
guide      plain-text instructions for the CLI and Telegram's /flash
preflight  checks before serving: image, this PC's address, the UDP port
server     a read-only, one-file TFTP server on tftpy, in a thread
cli        ``camreach flash`` (imported on its own: ``from bot.flash.cli import flash``)
"""

from __future__ import annotations

from bot.flash.guide import flash_instructions, models_for_keyboard
from bot.flash.models import MODELS, RouterModel, get_model

__all__ = ["MODELS", "RouterModel", "flash_instructions", "get_model", "models_for_keyboard"]
