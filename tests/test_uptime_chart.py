"""The 24 h uptime chart: a real PNG, the right hours on it, and matplotlib loaded lazily."""

from __future__ import annotations

import io
import math
import struct
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from bot.health.model import HourRow
from bot.render.uptime_chart import OK_COLOUR, uptime_chart_figure, uptime_chart_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D
    from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 6, 3, 14, 30, tzinfo=UTC)
TOP = NOW.replace(minute=0)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def row(component: str, hours_back: int, checks: int = 60, up: int = 60,
        low: float | None = None, mean: float | None = None) -> HourRow:
    return HourRow(component, TOP - timedelta(hours=hours_back), checks, up, low, mean)


ROWS = [
    *(row("modem", k, low=-100.0 - k, mean=-95.0 - k) for k in range(24) if k != 5),
    *(row("tunnel", k, up=60 if k % 6 else 30) for k in range(24)),
    row("modem", 30, low=-140, mean=-140),  # yesterday: off the chart
    row("tunnel", 30, up=0),
]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, checking its CRC."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (kind, length) == (b"IHDR", 13)
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert zlib.crc32(data[12:29]) == crc
    width, height = struct.unpack(">II", body[:8])
    return width, height


def decoded(data: bytes) -> Image.Image | None:
    """The decoded image (all of it, not just the header) if Pillow is installed."""
    try:
        from PIL import Image
    except ImportError:
        return None
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def pixels_of(image: Image.Image | None, hex_colour: str) -> int:
    assert image is not None
    rgb = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    counts = image.getcolors(maxcolors=1 << 24) or []
    return sum(n for n, colour in counts if colour == rgb)


@pytest.mark.parametrize("rows", [ROWS, []], ids=["data", "empty"])
def test_is_a_real_png(rows: list[HourRow]) -> None:
    data = uptime_chart_png("farm", rows, NOW)
    width, height = png_size(data)
    assert (width, height) == (800, 480)
    assert data.endswith(b"IEND\xaeB`\x82")
    image = decoded(data)
    if image is not None:
        assert image.size == (width, height)


def test_the_tunnel_bars_are_drawn_only_with_data() -> None:
    pytest.importorskip("PIL")
    full = decoded(uptime_chart_png("farm", ROWS, NOW))
    empty = decoded(uptime_chart_png("farm", [], NOW))
    assert pixels_of(full, OK_COLOUR) > 1000
    assert pixels_of(empty, OK_COLOUR) == 0


def texts_of(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts]


def ys(line: Line2D) -> list[float]:
    return [float(y) for y in np.asarray(line.get_ydata(), dtype=float)]


def bar_heights(ax: Axes) -> list[float]:
    from matplotlib.patches import Rectangle

    return [p.get_height() for p in ax.patches if isinstance(p, Rectangle)]


def test_empty_rows_say_no_data_on_both_panels() -> None:
    signal, tunnel = uptime_chart_figure("farm", [], NOW).axes
    assert texts_of(signal) == ["no data"] and texts_of(tunnel) == ["no data"]
    assert not signal.lines and not tunnel.patches


def test_only_the_missing_panel_says_no_data() -> None:
    tunnel_only = [r for r in ROWS if r.component == "tunnel"]
    signal, tunnel = uptime_chart_figure("farm", tunnel_only, NOW).axes
    assert texts_of(signal) == ["no data"] and texts_of(tunnel) == []


def test_the_chart_holds_the_last_24_hours() -> None:
    fig = uptime_chart_figure("farm", ROWS, NOW)
    signal, tunnel = fig.axes
    assert fig.get_suptitle() == "farm: last 24 h"
    assert texts_of(signal) == [] and texts_of(tunnel) == []

    mean, low = signal.lines
    means = ys(mean)
    assert len(means) == 24
    # Oldest first: 23 hours back is -118 dBm; hour 5 back has no row (a gap, not a value).
    assert means[0] == -118 and means[-1] == -95
    assert math.isnan(means[23 - 5])
    assert min(ys(low)) == -123  # yesterday's -140 is off the chart

    heights = bar_heights(tunnel)
    assert len(heights) == 24  # hour 30's row is outside the window
    assert sorted(set(heights)) == [50.0, 100.0]
    assert heights.count(50.0) == 4  # k = 0, 6, 12, 18


def test_a_down_hour_is_a_red_sliver_and_an_unchecked_hour_no_bar() -> None:
    rows = [row("tunnel", 1, up=0), row("tunnel", 2, checks=0, up=0), row("tunnel", 3)]
    _, tunnel = uptime_chart_figure("farm", rows, NOW).axes
    assert [round(h) for h in bar_heights(tunnel)] == [100, 2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def test_importing_the_module_does_not_import_matplotlib() -> None:
    code = (
        "import sys\n"
        "import bot.render.uptime_chart as chart\n"
        "assert 'matplotlib' not in sys.modules, 'imported at module level'\n"
        "from datetime import UTC, datetime\n"
        "png = chart.uptime_chart_png('farm', [], datetime.now(UTC))\n"
        "assert png.startswith(b'\\x89PNG') and 'matplotlib' in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot used'\n"
        "print('ok')\n"
    )
    done = run_python(code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
