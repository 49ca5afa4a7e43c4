"""Offline installs trust a feed only through its usign signature, over HTTPS.

Stand-ins, and why: the feed is the local one of ``tests/test_router_support.py`` (an aiohttp
server on 127.0.0.1 with downloads.openwrt.org's layout), served here over real HTTPS with a
CA made in the test (trusted through ``FeedConfig.ca_file``, never by turning checks off), and
its ``Packages`` indexes signed with an Ed25519 key made in the test, written in usign's
format by hand (not by the code under test). OpenWrt's own ``usign`` in the test router
checks that format both ways. The router's real ``opkg`` installs what passes.

``signed_feed`` and ``SignedFeed.config`` are also what the other offline-install tests use.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import ipaddress
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import bot.router.packages as packages
from bot.adapters.ssh import SshConnection, ssh_session
from bot.errors import CamreachError, ConfigError, OperatorError
from bot.router import usign
from bot.router.detect import RouterFacts, detect
from bot.router.packages import FeedConfig, install_packages, trusted_keys
from bot.settings import Settings
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_support import RELEASE, Feed, first_contact, local_feed, target

BASE = f"{RELEASE}/packages/x86_64/base"


# --- a usign key and an HTTPS feed of the tests' own -----------------------------------------

def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class FeedKey:
    """An Ed25519 key with a usign key number; writes usign's files by hand."""

    private: Ed25519PrivateKey
    keynum: bytes

    @classmethod
    def generate(cls) -> FeedKey:
        key = Ed25519PrivateKey.generate()
        return cls(key, _raw_public(key)[:8])  # any 8 bytes; usign picks random ones

    @property
    def key_id(self) -> str:
        return self.keynum.hex()

    def public_text(self, comment: str = "camreach test feed key") -> str:
        blob = b"Ed" + self.keynum + _raw_public(self.private)
        return f"untrusted comment: {comment}\n{base64.b64encode(blob).decode()}\n"

    def sign(self, data: bytes) -> str:
        blob = b"Ed" + self.keynum + self.private.sign(data)
        return (f"untrusted comment: signed by key {self.key_id}\n"
                f"{base64.b64encode(blob).decode()}\n")


def _cert(subject: str, public: Any, issuer: x509.Name | None, signer: Any, *,
          ca: bool, issuer_key: Any = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
        .public_key(public).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key or public), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = (builder
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False))
    return builder.sign(signer, hashes.SHA256())


def make_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (its PEM file, for ``ca_file``) and a server context for 127.0.0.1."""
    from cryptography.hazmat.primitives.asymmetric import ec

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = _cert("camreach test feed CA", ca_key.public_key(), None, ca_key, ca=True)
    leaf = _cert("127.0.0.1", leaf_key.public_key(), ca.subject, ca_key, ca=False,
                 issuer_key=ca_key.public_key())
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return ca_file, server


@dataclass
class SignedFeed(Feed):
    """A :class:`Feed` served over HTTPS whose indexes are signed as they are written."""

    key: FeedKey = field(default_factory=FeedKey.generate)
    key_file: Path = Path()
    ca_file: Path = Path()

    def add(self, feed: str, name: str, depends: str, *, version: str = "1.0-1",
            installed_size: int = 2048, files: dict[str, bytes] | None = None) -> None:
        super().add(feed, name, depends, version=version, installed_size=installed_size,
                    files=files)
        self.sign(feed)

    def sign(self, feed: str, key: FeedKey | None = None) -> None:
        """(Re)sign ``feed``'s ``Packages`` (and rewrite ``Packages.gz`` from it)."""
        directory = self.root / feed
        index = (directory / "Packages").read_bytes()
        (directory / "Packages.gz").write_bytes(gzip.compress(index))
        (directory / "Packages.sig").write_text((key or self.key).sign(index))

    def edit_index(self, feed: str, change: Callable[[bytes], bytes], *,
                   sign: bool = True) -> None:
        """Change ``feed``'s index (``Packages`` and ``Packages.gz``), signed again or not."""
        directory = self.root / feed
        index = change((directory / "Packages").read_bytes())
        (directory / "Packages").write_bytes(index)
        (directory / "Packages.gz").write_bytes(gzip.compress(index))
        if sign:
            self.sign(feed)

    def config(self, **overrides: Any) -> FeedConfig:
        """The FeedConfig that reaches this feed: its URL, its key and its CA."""
        fields: dict[str, Any] = {"base_url": self.base_url, "key": str(self.key_file),
                                  "ca_file": str(self.ca_file)}
        fields.update(overrides)
        return FeedConfig(**fields)


@asynccontextmanager
async def signed_feed(root: Path) -> AsyncIterator[SignedFeed]:
    """Serve ``root`` over HTTPS on 127.0.0.1 as a signed package feed."""
    result = SignedFeed(root)
    result.root.mkdir(parents=True, exist_ok=True)
    result.key_file = root.parent / "feed-key.pub"
    result.key_file.write_text(result.key.public_text())
    result.ca_file, server_tls = make_tls(root.parent / "feed-tls")

    async def serve(request: web.Request) -> web.StreamResponse:
        result.requests.append(request.path)
        path = (result.root / request.match_info["path"]).resolve()
        if not path.is_relative_to(result.root) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{path:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls).start()
    result.base_url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield result
    finally:
        await runner.cleanup()


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[SignedFeed]:
    async with signed_feed(tmp_path / "feed") as served:
        yield served


async def _facts(router: OpenWrtRouter) -> tuple[str, str, RouterFacts]:
    key, pinned = await first_contact(router)
    async with ssh_session(target(router, key, pinned)) as conn:
        return key, pinned, (await detect(conn)).facts


async def refused_install(router: OpenWrtRouter, cfg: FeedConfig, names: list[str],
                          match: str) -> CamreachError:
    """Install offline, expect a refusal matching ``match``, and check nothing changed."""
    key, pinned, facts = await _facts(router)
    before = router.run("opkg list-installed").stdout
    async with ssh_session(target(router, key, pinned)) as conn:
        with pytest.raises(CamreachError, match=match) as refused:
            await install_packages(conn, facts, names, cfg, online=False)
    assert router.run("opkg list-installed").stdout == before
    assert not (router.root / "tmp/camreach-pkgs").exists()
    return refused.value


# --- the usign format, pure ------------------------------------------------------------------

# Generated once for this test: Ed25519 seed 00 01 .. 1f, key number 0123456789abcdef, and
# the signature of MESSAGE (Ed25519 signatures are deterministic). Checked against OpenWrt's
# own usign below.
SEED, KEYNUM = bytes(range(32)), bytes.fromhex("0123456789abcdef")
MESSAGE = b"Package: crtest-lib\nVersion: 1.0-1\n\n"
VECTOR_PUB = "RWQBI0VniavN7wOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
VECTOR_SIG = ("RWQBI0VniavN7z8fM5QQ1xE5CXMSBEQwD7CsT5QiXP9wAl09WWkN/TmR6WA90kIF8NCGYWVLCaZ2"
              "Gfbq34+LXV1yJssTdoh+5wo=")


def test_usign_parser_reads_a_known_vector() -> None:
    key = usign.parse_public_key(f"untrusted comment: vector key\n{VECTOR_PUB}\n")
    assert key.key_id == "0123456789abcdef" and key.comment == "vector key"
    assert key.raw == _raw_public(Ed25519PrivateKey.from_private_bytes(SEED))
    sig = usign.parse_signature(
        f"untrusted comment: signed by key 0123456789abcdef\n{VECTOR_SIG}\n".encode())
    assert sig.key_id == "0123456789abcdef" and len(sig.signature) == 64
    assert usign.verify(MESSAGE, sig, [key]) is key
    # The base64 line alone is a key too; the signature is what the seed signs.
    assert usign.parse_public_key(VECTOR_PUB).keynum == KEYNUM
    assert FeedKey(Ed25519PrivateKey.from_private_bytes(SEED), KEYNUM).sign(MESSAGE) == (
        f"untrusted comment: signed by key 0123456789abcdef\n{VECTOR_SIG}\n")

    with pytest.raises(usign.UsignError, match="does not match its signature"):
        usign.verify(MESSAGE.replace(b"1.0-1", b"1.0-2"), sig, [key])
    other = usign.parse_public_key(FeedKey.generate().public_text())
    with pytest.raises(usign.UsignError, match="signed by key 0123456789abcdef, which is not"):
        usign.verify(MESSAGE, sig, [other])
    # Same key number, another key: not fooled by the number.
    impostor = usign.UsignKey(KEYNUM, other.public)
    with pytest.raises(usign.UsignError, match="does not match"):
        usign.verify(MESSAGE, sig, [impostor])


@pytest.mark.parametrize(("text", "match"), [
    ("", "not in usign format"),
    ("untrusted comment: x\n", "not in usign format"),
    ("untrusted comment: x\nnot base64!\n", "not in usign format"),
    ("untrusted comment: x\nRWQBI0Vn\nRWQBI0Vn\n", "not in usign format"),
    (base64.b64encode(b"Ed" + bytes(30)).decode(), "holds 32 bytes"),
    (base64.b64encode(b"Xx" + bytes(40)).decode(), "algorithm b'Xx'"),
    (VECTOR_SIG, "holds 74 bytes"),  # a signature is not a key
])
def test_usign_parser_refuses_what_is_not_a_key(text: str, match: str) -> None:
    with pytest.raises(usign.UsignError, match=match):
        usign.parse_public_key(text)


def test_the_shipped_keys_and_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    (key,) = usign.shipped_keys("23.05.3")
    assert key.key_id == "b5043e70f9a75cde"
    for release in ("23.05-SNAPSHOT", "23.05.0-rc1", "SNAPSHOT"):
        assert [(k.key_id, k.raw) for k in usign.shipped_keys(release)] == [
            (key.key_id, key.raw)]
    assert usign.shipped_keys("21.02.7") == () and usign.shipped_keys("unknown") == ()
    assert usign.release_series("SNAPSHOT") == "SNAPSHOT"
    assert usign.release_series("24.10.0") == "24.10"

    assert FeedConfig.from_settings(None, None) == FeedConfig()
    assert FeedConfig.from_settings(" https://m.example/ ", "  ") == FeedConfig(
        base_url="https://m.example/")
    monkeypatch.setenv("CAMREACH_OPENWRT_FEED_KEY", "/etc/camreach/feed.pub")
    settings = Settings(_env_file=None)
    assert settings.camreach_openwrt_feed_key == "/etc/camreach/feed.pub"


def test_the_shipped_23_05_key_is_the_one_on_the_23_05_router(
    openwrt_router: OpenWrtRouter
) -> None:
    # The test router runs OpenWrt 23.05; its openwrt-keyring package installed this key.
    on_router = (openwrt_router.root / "etc/opkg/keys/b5043e70f9a75cde").read_text()
    shipped = usign.shipped_keys("23.05-SNAPSHOT")[0]
    assert usign.parse_public_key(on_router).raw == shipped.raw


def test_openwrts_usign_agrees_with_the_format(openwrt_router: OpenWrtRouter) -> None:
    router = openwrt_router
    # A signature made here, by the format written by hand, passes OpenWrt's usign -V ...
    mine = FeedKey(Ed25519PrivateKey.from_private_bytes(SEED), KEYNUM)
    (router.root / "tmp/msg").write_bytes(MESSAGE)
    (router.root / "tmp/mine.pub").write_text(mine.public_text())
    (router.root / "tmp/msg.sig").write_text(mine.sign(MESSAGE))
    assert router.run("usign -V -m /tmp/msg -p /tmp/mine.pub -q", check=False).returncode == 0
    (router.root / "tmp/msg").write_bytes(MESSAGE + b" ")
    assert router.run("usign -V -m /tmp/msg -p /tmp/mine.pub -q", check=False).returncode != 0

    # ... and a key and signature made by usign pass camreach's parser and check.
    router.run("usign -G -s /tmp/k.sec -p /tmp/k.pub -c 'made by usign'"
               " && usign -S -m /tmp/msg -s /tmp/k.sec -x /tmp/msg.sig")
    key = usign.parse_public_key((router.root / "tmp/k.pub").read_text())
    fingerprint = router.run("usign -F -p /tmp/k.pub").stdout.strip()
    assert key.key_id == fingerprint and key.comment == "made by usign"
    sig = usign.parse_signature((router.root / "tmp/msg.sig").read_bytes())
    assert usign.verify(MESSAGE + b" ", sig, [key]) is key
    with pytest.raises(usign.UsignError):
        usign.verify(MESSAGE, sig, [key])


def test_a_key_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CAMREACH_OPENWRT_FEED_KEY.*cannot read the key"):
        trusted_keys(FeedConfig(key=str(tmp_path / "missing.pub")), "23.05.3")
    (tmp_path / "bad.pub").write_text("untrusted comment: x\nRWQ=\n")
    with pytest.raises(ConfigError, match="not a usable usign public key"):
        trusted_keys(FeedConfig(key=str(tmp_path / "bad.pub")), "23.05.3")
    # The key's text works as well as its file.
    (key,) = trusted_keys(FeedConfig(key=f"untrusted comment: v\n{VECTOR_PUB}"), "21.02.7")
    assert key.key_id == "0123456789abcdef"


async def test_no_key_for_the_release_refuses_before_any_download() -> None:
    def no_network(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing may be fetched, got {request.url}")

    facts = RouterFacts(release="21.02.7", target="ramips/mt76x8", arch="mipsel_24kc",
                        package_manager="opkg")
    conn = cast(SshConnection, None)  # refused before the router is spoken to
    async with httpx.AsyncClient(transport=httpx.MockTransport(no_network)) as client:
        with pytest.raises(OperatorError) as refused:
            await packages.install_offline(conn, facts, ["uqmi"], FeedConfig(), client)
    message = refused.value.user_message
    assert "no OpenWrt signing key for release 21.02.7" in message
    assert "CAMREACH_OPENWRT_FEED_KEY" in message and "will not install" in message


# --- against the router and the local HTTPS feed ---------------------------------------------

async def test_a_good_signature_installs(openwrt_router: OpenWrtRouter, feed: SignedFeed,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    router = openwrt_router
    feed.add(f"{RELEASE}/packages/x86_64/packages", "crtest-tool", "libc, crtest-lib")
    feed.add(BASE, "crtest-lib", "libc")
    # Where the index is parsed and the downloads hashed: never on the event loop's thread.
    loop_thread = threading.get_ident()
    seen: dict[str, set[int]] = {"parse": set(), "hash": set()}
    parse, sha = packages.parse_index, packages._sha256_hex

    def parse_spy(text: str, feed_url: str) -> dict[str, packages.FeedPackage]:
        seen["parse"].add(threading.get_ident())
        return parse(text, feed_url)

    def sha_spy(data: bytes) -> str:
        seen["hash"].add(threading.get_ident())
        return sha(data)

    monkeypatch.setattr(packages, "parse_index", parse_spy)
    monkeypatch.setattr(packages, "_sha256_hex", sha_spy)
    key, pinned, facts = await _facts(router)
    async with ssh_session(target(router, key, pinned)) as conn:
        result = await install_packages(conn, facts, ["crtest-tool"], feed.config(),
                                        online=False)

    assert result.method == "offline"
    assert set(result.installed) == {"crtest-tool", "crtest-lib"}
    assert "crtest-tool - 1.0-1" in router.run("opkg list-installed").stdout
    assert f"/{BASE}/Packages.sig" in feed.requests
    assert seen["parse"] and seen["hash"] and loop_thread not in seen["parse"] | seen["hash"]
    # The key's text instead of its file does as well.
    assert trusted_keys(feed.config(key=feed.key.public_text()), "23.05-SNAPSHOT")[0].key_id \
        == feed.key.key_id


async def test_a_tampered_index_is_refused(openwrt_router: OpenWrtRouter,
                                           feed: SignedFeed) -> None:
    feed.add(BASE, "crtest-lib", "libc")
    # One byte changed after signing (a version bump an attacker would need for a downgrade).
    feed.edit_index(BASE, lambda index: index.replace(b"Version: 1.0-1", b"Version: 1.0-2"),
                    sign=False)
    refused = await refused_install(openwrt_router, feed.config(), ["crtest-lib"],
                                    "failed its signature check")
    assert "does not match its signature" in refused.user_message
    assert "Nothing was installed" in refused.user_message
    assert not any(p.endswith(".ipk") for p in feed.requests)


async def test_a_signature_by_another_key_is_refused(openwrt_router: OpenWrtRouter,
                                                     feed: SignedFeed) -> None:
    feed.add(BASE, "crtest-lib", "libc")
    stranger = FeedKey.generate()
    feed.sign(BASE, stranger)
    refused = await refused_install(openwrt_router, feed.config(), ["crtest-lib"],
                                    f"signed by key {stranger.key_id}, which is not a key")
    assert feed.key.key_id in refused.user_message  # the one it trusts
    assert not any(p.endswith(".ipk") for p in feed.requests)


async def test_a_mirror_without_its_own_key_is_checked_against_openwrts(
    openwrt_router: OpenWrtRouter, feed: SignedFeed
) -> None:
    # A plain mirror serves OpenWrt's signatures: with no key named, OpenWrt's 23.05 key is
    # the one that must have signed, and the test key has not.
    feed.add(BASE, "crtest-lib", "libc")
    await refused_install(openwrt_router, feed.config(key=None), ["crtest-lib"],
                          f"signed by key {feed.key.key_id}.*trusted: b5043e70f9a75cde")


async def test_a_missing_signature_is_refused(openwrt_router: OpenWrtRouter,
                                              feed: SignedFeed) -> None:
    feed.add(BASE, "crtest-lib", "libc")
    (feed.root / BASE / "Packages.sig").unlink()
    refused = await refused_install(openwrt_router, feed.config(), ["crtest-lib"],
                                    "has no signature")
    assert "installs only from signed feeds" in refused.user_message
    assert not any(p.endswith(".ipk") for p in feed.requests)


async def test_an_empty_sha256_is_refused(openwrt_router: OpenWrtRouter,
                                          feed: SignedFeed) -> None:
    feed.add(BASE, "crtest-lib", "libc")
    feed.add(BASE, "crtest-other", "libc")

    def blank(index: bytes) -> bytes:
        head, sep, tail = index.partition(b"Package: crtest-other\n")
        lines = [b"SHA256sum: " if line.startswith(b"SHA256sum:") else line
                 for line in tail.split(b"\n")]
        return head + sep + b"\n".join(lines)

    feed.edit_index(BASE, blank)  # signed: the index is genuine, the entry is not usable
    await refused_install(openwrt_router, feed.config(), ["crtest-lib", "crtest-other"],
                          "lists crtest-other with an empty SHA256sum")
    assert not any(p.endswith(".ipk") for p in feed.requests)


async def test_a_plain_http_mirror_is_refused(openwrt_router: OpenWrtRouter,
                                              tmp_path: Path) -> None:
    async with local_feed(tmp_path / "plain") as plain:  # the same feed over http://
        plain.add(BASE, "crtest-lib", "libc")
        refused = await refused_install(openwrt_router, FeedConfig(base_url=plain.base_url),
                                        ["crtest-lib"], "is not an https:// URL")
        assert "CAMREACH_OPENWRT_FEEDS" in refused.user_message
        assert plain.requests == []  # not even the index was asked for


async def test_a_redirect_to_plain_http_is_refused(tmp_path: Path) -> None:
    async with local_feed(tmp_path / "plain") as plain:
        plain.add(BASE, "crtest-lib", "libc")

        async def redirect(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(f"{plain.base_url}{request.path}")

        app = web.Application()
        app.router.add_get("/{path:.*}", redirect)
        runner = web.AppRunner(app)
        await runner.setup()
        ca_file, server_tls = make_tls(tmp_path / "tls")
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls).start()
        try:
            cfg = FeedConfig(base_url=f"https://127.0.0.1:{runner.addresses[0][1]}",
                             key=f"untrusted comment: v\n{VECTOR_PUB}", ca_file=str(ca_file))
            facts = RouterFacts(release="23.05-SNAPSHOT", target="x86/64", arch="x86_64",
                                package_manager="opkg")
            with pytest.raises(ConfigError, match="only over HTTPS and refused http://"):
                await packages.install_offline(cast(SshConnection, None), facts,
                                               ["crtest-lib"], cfg)
        finally:
            await runner.cleanup()
        assert plain.requests == []  # the plain-HTTP request never left


async def test_the_feed_certificate_is_checked(feed: SignedFeed) -> None:
    feed.add(BASE, "crtest-lib", "libc")
    facts = RouterFacts(release="23.05-SNAPSHOT", target="x86/64", arch="x86_64",
                        package_manager="opkg")
    # Without the test CA the self-made certificate is not trusted: no way around HTTPS.
    with pytest.raises(CamreachError, match="Cannot download"):
        await packages.install_offline(cast(SshConnection, None), facts, ["crtest-lib"],
                                       feed.config(ca_file=None))
    assert feed.requests == []


def test_the_index_unzip_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    index = b"Package: crtest-lib\n" * 100
    assert packages._gunzip(gzip.compress(index), "u") == index
    with pytest.raises(CamreachError, match="cut short"):
        packages._gunzip(gzip.compress(index)[:-12], "u")
    monkeypatch.setattr(packages, "MAX_INDEX_BYTES", 1024)
    with pytest.raises(CamreachError, match="unzips to more than"):
        packages._gunzip(gzip.compress(index), "u")
