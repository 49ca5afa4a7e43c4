"""A day of one part's hourly figures in one small value: the 24 hours, each as the hourly
table holds it (checks, up, the key figure's min, sum and count), packed side by side.

Hourly rows are what the sweeps update; once a day is over (and past the windows /uptime
reads), its 24 rows become one, losslessly: 30 days of 500 sites are 75 000 such rows instead
of 1.8 million, most of a row's size being the database's own per-row overhead.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_SLOT = struct.Struct("<HHffH")  # checks, up, value_min (NaN: none), value_sum, value_count
HOURS = 24
SIZE = _SLOT.size * HOURS


@dataclass(frozen=True)
class Slot:
    """One hour's aggregates, as a health_hours row holds them."""

    checks: int
    up: int
    value_min: float | None
    value_sum: float
    value_count: int


def pack(slots: Mapping[int, Slot]) -> bytes:
    """Hours of the day (0..23) to bytes; an hour without checks is left empty."""
    out = bytearray(SIZE)
    for hour, slot in slots.items():
        if not 0 <= hour < HOURS:
            raise ValueError(f"hour {hour} is not in a day")
        vmin = math.nan if slot.value_min is None else slot.value_min
        _SLOT.pack_into(out, hour * _SLOT.size, slot.checks, slot.up, vmin, slot.value_sum,
                        slot.value_count)
    return bytes(out)


def unpack(data: bytes) -> dict[int, Slot]:
    """The hours that had checks."""
    if len(data) != SIZE:
        raise ValueError(f"a packed day is {SIZE} bytes, not {len(data)}")
    out: dict[int, Slot] = {}
    for hour, (checks, up, vmin, vsum, count) in enumerate(_SLOT.iter_unpack(data)):
        if checks:
            out[hour] = Slot(checks, up, None if math.isnan(vmin) else vmin, vsum, count)
    return out


def merge(a: Slot, b: Slot) -> Slot:
    """Two partial aggregates of one hour as one."""
    mins = [v for v in (a.value_min, b.value_min) if v is not None]
    return Slot(a.checks + b.checks, a.up + b.up, min(mins) if mins else None,
                a.value_sum + b.value_sum, a.value_count + b.value_count)


def merge_into(day: dict[int, Slot], hours: Iterable[tuple[int, Slot]]) -> dict[int, Slot]:
    for hour, slot in hours:
        day[hour] = merge(day[hour], slot) if hour in day else slot
    return day
