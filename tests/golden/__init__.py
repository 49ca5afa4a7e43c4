"""Golden files for the renderers, and the fixed test keys they are rendered with.

Regenerate after an intended change with ``CAMREACH_UPDATE_GOLDEN=1 pytest tests/test_render_*``
and review the diff: the golden text IS the specification of what camreach writes.
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent

# Made with `wg genkey | tee priv | wg pubkey`; test-only, never used anywhere real.
SERVER_PRIVATE = "QDOZ+qE+DxWpJ/tgnPRIbgbl/gBLk62xU5ZxkUKLIX4="
SERVER_PUBLIC = "92+5WDz1q+Ivd+Tj6znkToORZ//0RWlOPuttEQ5rvlw="
ROUTER_PRIVATE = "yMA1BKB4/zynysnDq2mMmLcg5xI3+nZ6Z7duhkz6+Ug="
ROUTER_PUBLIC = "0MTLrCmaYvnMcYth3Tqrmko7w+Ob0U9DnmSIzTy/ASY="
PHONE_PRIVATE = "WIyxwV65Fl/tSZjy2rGRuUDHGUld8ECxrbeXyAs8Qk0="
PHONE_PUBLIC = "Gq1HXpO8klla4DH6+9LzvSOw6x01X5cFp1X1t+rMUxU="
LAPTOP_PRIVATE = "mBOrAovxJ+tRWdPbNxzs/xlXxKMCIIsNu6GVYQi5SFQ="
LAPTOP_PUBLIC = "rJpjaWiXQ0rBtb8a5r75qvx85sb69qTI8eSt854J8T0="
PSK = "U55JjINnjIr2+/0LqcyZa+7Gl6k/UwG9RAKaimoDk1I="


def golden(name: str, rendered: str) -> str:
    """The text of ``tests/golden/<name>``; use as ``assert rendered == golden(name, rendered)``.

    With ``CAMREACH_UPDATE_GOLDEN=1`` the file is (re)written from ``rendered`` first.
    """
    path = GOLDEN_DIR / name
    if os.environ.get("CAMREACH_UPDATE_GOLDEN") == "1":
        path.write_text(rendered, encoding="utf-8", newline="")
    if not path.exists():
        raise AssertionError(f"missing golden file {path} (run with CAMREACH_UPDATE_GOLDEN=1)")
    return path.read_text(encoding="utf-8")
