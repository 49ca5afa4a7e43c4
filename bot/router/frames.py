"""Length-framed output of remote scripts: several named parts in one round trip.

A router script prints each part as ``@NAME LENGTH`` on a line of its own followed by exactly
LENGTH bytes. Values inside a part (a hostile APN in ``uci show``, a USB product string) may
contain newlines or lines that look like headers; the byte count keeps them inside their
part, so nothing in the router's data can change how the rest of the output is read.
"""

from __future__ import annotations

import re

from bot.errors import RemoteFailed

__all__ = ["FRAME_SH", "parse_frames"]

# Shell functions the scripts use: ``emit NAME FILE`` and ``capture NAME CMD...``.
# ``$T`` is the script's scratch directory (created and removed by the script).
FRAME_SH = r"""
emit() { printf '@%s %s\n' "$1" "$(wc -c < "$2" | tr -d ' ')"; cat "$2"; }
capture() { _n=$1; shift; "$@" > "$T/$_n" 2>/dev/null; emit "$_n" "$T/$_n"; }
"""

_HEADER_RE = re.compile(rb"@([A-Za-z0-9_.-]+) (\d+)\n")


def parse_frames(output: bytes | str, *, where: str = "the router") -> dict[str, str]:
    """``{name: text}`` from framed output; text outside frames is an error.

    Lengths count bytes, so the frames are split on the bytes the router printed; each
    frame is then decoded on its own (bytes that are not UTF-8 are replaced, inside it).
    """
    data = output if isinstance(output, bytes) else output.encode("utf-8", "surrogateescape")
    parts: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        m = _HEADER_RE.match(data, pos)
        if m is None:
            raise RemoteFailed(
                f"Unexpected output from {where}; camreach cannot read it.",
                detail=f"at byte {pos}: {data[pos:pos + 60]!r}",
            )
        name, length = m.group(1).decode(), int(m.group(2))
        start = m.end()
        if start + length > len(data):
            raise RemoteFailed(
                f"The output from {where} was cut short.", detail=f"part {name!r} truncated"
            )
        parts[name] = data[start : start + length].decode("utf-8", errors="replace")
        pos = start + length
    return parts
