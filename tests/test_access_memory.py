"""The per-stranger refusal memory stays bounded and still refuses once an hour."""

from __future__ import annotations

from handlers.access import RefusalMemory


def test_once_per_interval() -> None:
    memory = RefusalMemory(interval=3600, capacity=10)
    assert memory.due(7, now=0) is True
    assert memory.due(7, now=1800) is False
    assert memory.due(7, now=3600) is True


def test_bounded_by_capacity_and_age() -> None:
    memory = RefusalMemory(interval=3600, capacity=100)
    for user in range(10_000):  # a flood of new accounts within one hour
        assert memory.due(user, now=user * 0.01) is True
        assert len(memory) <= 100
    assert memory.due(9_999, now=100.0) is False  # the most recent ones are remembered
    # An hour later everything has aged out: one stranger leaves one entry.
    assert memory.due(1, now=10_000.0) is True and len(memory) == 1
