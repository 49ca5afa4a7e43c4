from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot import texts
from bot.services.sites import SiteStatus


def status(name: str) -> SiteStatus:
    return SiteStatus(name=name, droplet={"status": "active", "region": "fra1", "size": "s",
                                          "public_ipv4": "203.0.113.7", "price_monthly": 4.0},
                      router={"host": "192.168.1.1", "last_push_at": None},
                      modem={"protocol": "ncm", "model": None}, cameras=["porch"], peers=2,
                      open_incidents=1, last_operation=None, updated_at="")


def test_split_message_respects_limit_and_keeps_text() -> None:
    text = "\n".join(f"line {i} " + "x" * (i % 70) for i in range(400))
    parts = texts.split_message(text, limit=500)
    assert all(len(p) <= 500 for p in parts) and len(parts) > 10
    assert "\n".join(parts) == text
    assert texts.split_message("a" * 1200, limit=500) == ["a" * 500, "a" * 500, "a" * 200]


def test_many_sites_compact() -> None:
    few = texts.site_status_text([status("a"), status("b")])
    assert "droplet: active in fra1 (203.0.113.7)" in few and "open incidents: 1" in few
    many = texts.site_status_text([status(f"s{i}") for i in range(100)])
    assert many.count("📍") == 100 and "/status NAME" in many
    assert len(texts.split_message(many)) == 2


def test_ago_and_bytes() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert texts.ago(None) == "never"
    assert texts.ago(now - timedelta(seconds=30), now) == "30 s ago"
    assert texts.ago(now - timedelta(minutes=5), now) == "5 min ago"
    assert texts.ago(now - timedelta(days=3), now) == "3 days ago"
    assert texts.human_bytes(512) == "512 B" and texts.human_bytes(3 * 1024 * 1024) == "3.0 MiB"
