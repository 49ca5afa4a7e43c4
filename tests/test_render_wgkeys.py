"""camreach's keys against the real ``wg`` tool (Debian wireguard-tools)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess

import pytest

from bot.errors import ValidationFailed
from bot.wgkeys import generate_preshared_key, generate_private_key, is_valid_key, public_key
from tests.golden import ROUTER_PRIVATE, ROUTER_PUBLIC

WG = shutil.which("wg")


@pytest.fixture
def wg() -> str:
    if WG is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wg (wireguard-tools) is required in CI")
        pytest.skip("wg (wireguard-tools) is not installed")
    return WG


def run_wg(wg: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([wg, *args], input=stdin, capture_output=True, text=True, check=False)


def test_known_pair() -> None:
    assert public_key(ROUTER_PRIVATE) == ROUTER_PUBLIC


def test_our_private_key_gives_the_same_public_key_as_wg_pubkey(wg: str) -> None:
    for _ in range(20):
        private = generate_private_key()
        res = run_wg(wg, "pubkey", stdin=private + "\n")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == public_key(private)


def test_wg_genkey_private_key_gives_the_same_public_key_here(wg: str) -> None:
    for _ in range(20):
        private = run_wg(wg, "genkey").stdout.strip()
        assert is_valid_key(private)
        assert public_key(private) == run_wg(wg, "pubkey", stdin=private + "\n").stdout.strip()


def test_generated_private_keys_are_clamped_like_wg_genkey() -> None:
    for _ in range(50):
        raw = base64.b64decode(generate_private_key())
        assert len(raw) == 32
        assert raw[0] & 7 == 0
        assert raw[31] & 128 == 0
        assert raw[31] & 64 == 64


def test_keys_are_fresh() -> None:
    assert len({generate_private_key() for _ in range(10)}) == 10
    assert len({generate_preshared_key() for _ in range(10)}) == 10


def test_preshared_key_is_accepted_by_wg(wg: str) -> None:
    psk = generate_preshared_key()
    assert is_valid_key(psk)
    # wg pubkey parses any 32-byte key; a malformed one is refused.
    assert run_wg(wg, "pubkey", stdin=psk + "\n").returncode == 0


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not a key",
        ROUTER_PRIVATE[:-1],  # no '='
        ROUTER_PRIVATE + "=",
        ROUTER_PRIVATE[:-2] + "B=",  # non-canonical last digit: wg refuses it too
        base64.b64encode(b"\x00" * 31).decode(),
        base64.b64encode(b"\x00" * 33).decode(),
        " " + ROUTER_PRIVATE,
        ROUTER_PRIVATE + "\n",
        ROUTER_PRIVATE.replace("+", "-"),  # urlsafe alphabet is not wg's
    ],
)
def test_invalid_keys(bad: str) -> None:
    assert not is_valid_key(bad)
    with pytest.raises(ValidationFailed) as exc:
        public_key(bad)
    assert bad.strip() not in exc.value.user_message or not bad.strip()


def test_wg_agrees_on_what_is_invalid(wg: str) -> None:
    bad = ROUTER_PRIVATE[:-2] + "B="
    assert run_wg(wg, "pubkey", stdin=bad + "\n").returncode != 0
    assert not is_valid_key(bad)
