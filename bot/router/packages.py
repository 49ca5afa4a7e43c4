"""Installing the packages a modem needs, with or without internet on the router.

With internet (``opkg update`` works) the router's own package manager installs them. Without
(the usual case: the modem is what would bring the internet), camreach downloads the exact
packages for the router's release, target and architecture from the OpenWrt feeds on the bot
host, resolves their dependencies against what the router has, refuses before uploading
anything if the flash cannot hold them, uploads them in one stream and installs them from
the local files with ``opkg``.

Feeds follow downloads.openwrt.org's layout (``/releases/<release>/targets/<target>/packages``
for the core packages and kernel modules, ``/releases/<release>/packages/<arch>/<feed>`` for
the rest; ``SNAPSHOT`` lives under ``/snapshots``). ``FeedConfig.base_url`` points elsewhere
(a mirror, or the tests' local feed) and must be ``https://``.

Each feed's index is trusted only if its ``Packages.sig`` (usign, :mod:`bot.router.usign`)
verifies against the key camreach has for the router's release (shipped in
``bot/data/openwrt-feed-keys``; a mirror that signs its own index names its key in
``FeedConfig.key``, CAMREACH_OPENWRT_FEED_KEY). Every package must have a SHA256 in the
index, and each downloaded file must match it. Unzipping, checking and parsing the index, and
hashing the files, run in worker threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import re
import shlex
import ssl
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from bot.adapters.ssh import SshConnection
from bot.errors import ConfigError, OperatorError, RemoteFailed, Unreachable, ValidationFailed
from bot.router import usign
from bot.router.detect import RouterFacts

__all__ = [
    "OFFICIAL_FEEDS",
    "FeedConfig",
    "FeedPackage",
    "InstallResult",
    "NotEnoughFlash",
    "feed_urls",
    "fetch_index",
    "install_offline",
    "install_online",
    "install_packages",
    "parse_index",
    "resolve",
    "trusted_keys",
]

log = logging.getLogger(__name__)

OFFICIAL_FEEDS = "https://downloads.openwrt.org"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._+-]*")
_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]*\.ipk")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# An index bigger than this once unzipped is refused (the largest official one is a few MB).
MAX_INDEX_BYTES = 64 * 1024 * 1024
KEY_SETTING = "CAMREACH_OPENWRT_FEED_KEY"
KEYRING_URL = "https://git.openwrt.org/?p=keyring.git;a=tree;f=usign"
# Room left on the flash after installing: opkg needs some for its status files, and a
# router with a full overlay misbehaves (logs, uci commits).
FLASH_RESERVE_KB = 128
UPLOAD_DIR = "/tmp/camreach-pkgs"


class NotEnoughFlash(OperatorError):
    """The packages would not fit; nothing was uploaded."""


@dataclass(frozen=True)
class FeedConfig:
    base_url: str = OFFICIAL_FEEDS
    # The feeds modem packages come from (LuCI's feed is large and never needed here).
    feeds: tuple[str, ...] = ("base", "packages", "routing", "telephony")
    timeout: float = 60.0
    # The usign public key (its file's path, or its text) the indexes must be signed with;
    # None: the OpenWrt key camreach ships for the router's release.
    key: str | None = None
    # A PEM bundle of the CAs to trust for the feed's HTTPS instead of the default ones (a
    # mirror with a private CA; the tests' feed). Never turns certificate checks off.
    ca_file: str | None = None

    @classmethod
    def from_settings(cls, base_url: str | None, key: str | None) -> FeedConfig:
        """From CAMREACH_OPENWRT_FEEDS and CAMREACH_OPENWRT_FEED_KEY (either may be unset)."""
        return cls(base_url=(base_url or "").strip() or OFFICIAL_FEEDS,
                   key=(key or "").strip() or None)

    def check_https(self) -> None:
        """Refuse a mirror that is not ``https://`` (nothing is downloaded over plain HTTP)."""
        parts = urlsplit(self.base_url.strip())
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise ConfigError(
                f"The OpenWrt package mirror {self.base_url!r} is not an https:// URL. "
                "camreach downloads packages only over HTTPS: set CAMREACH_OPENWRT_FEEDS to "
                "the mirror's https:// address (or leave it unset for downloads.openwrt.org)."
            )


@dataclass(frozen=True)
class FeedPackage:
    name: str
    version: str
    depends: tuple[str, ...]  # raw entries: "kernel (= 5.15.137-1-...)", "a | b"
    provides: tuple[str, ...]
    filename: str
    size: int
    installed_size: int | None
    sha256: str
    feed_url: str

    @property
    def url(self) -> str:
        return f"{self.feed_url}/{self.filename}"


@dataclass(frozen=True)
class InstallResult:
    method: str  # "online", "offline", or "nothing"
    installed: tuple[str, ...]

    @property
    def message(self) -> str:
        if not self.installed:
            return "Nothing to install: the router has every package the modem needs."
        how = "from the router's own feeds" if self.method == "online" else (
            "from files camreach downloaded and uploaded (the router had no internet)")
        return f"Installed {', '.join(self.installed)} {how}."


def feed_urls(facts: RouterFacts, cfg: FeedConfig) -> list[str]:
    """The feeds for this router's release, target and architecture."""
    for what, value in (("release", facts.release), ("architecture", facts.arch)):
        if not _SEGMENT_RE.fullmatch(value) or value == "unknown":
            raise ValidationFailed(f"The router's OpenWrt {what} is unknown; detect it first.")
    if not all(_SEGMENT_RE.fullmatch(p) for p in facts.target.split("/")):
        raise ValidationFailed("The router's OpenWrt target is unknown; detect it first.")
    base = cfg.base_url.rstrip("/")
    root = f"{base}/snapshots" if facts.release.upper() == "SNAPSHOT" else (
        f"{base}/releases/{facts.release}")
    urls = [f"{root}/targets/{facts.target}/packages"]
    urls += [f"{root}/packages/{facts.arch}/{feed}" for feed in cfg.feeds]
    return urls


def parse_index(text: str, feed_url: str) -> dict[str, FeedPackage]:
    """An opkg ``Packages`` index (RFC822-like stanzas) by package name."""
    out: dict[str, FeedPackage] = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                continue  # continuation (Description)
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        name, filename = fields.get("Package", ""), fields.get("Filename", "")
        if not name or not filename:
            continue
        try:
            size = int(fields.get("Size", "0"))
            installed = int(fields["Installed-Size"]) if "Installed-Size" in fields else None
        except ValueError:
            continue
        out[name] = FeedPackage(
            name=name,
            version=fields.get("Version", ""),
            depends=tuple(d.strip() for d in fields.get("Depends", "").split(",") if d.strip()),
            provides=tuple(p.strip() for p in fields.get("Provides", "").split(",")
                           if p.strip()),
            filename=filename,
            size=size,
            installed_size=installed,
            sha256=fields.get("SHA256sum", "").lower(),
            feed_url=feed_url,
        )
    return out


def trusted_keys(cfg: FeedConfig, release: str) -> tuple[usign.UsignKey, ...]:
    """The keys the feeds' ``Packages.sig`` must verify against (reads files: call in a thread).

    ``cfg.key`` if set (a mirror that signs its own index); else the OpenWrt keys camreach
    ships for ``release`` (a plain mirror serves OpenWrt's own signatures). No key: refused,
    never unchecked.
    """
    if cfg.key:
        try:
            return (usign.read_key(cfg.key),)
        except usign.UsignError as exc:
            raise ConfigError(
                f"The feed key ({KEY_SETTING}) is not a usable usign public key: {exc}. "
                "Give the path of the key file (two lines: 'untrusted comment: ...' and the "
                "base64 key) or the key's base64 line."
            ) from exc
    keys = usign.shipped_keys(release)
    if not keys:
        raise OperatorError(
            f"camreach has no OpenWrt signing key for release {release}, so it cannot check "
            "the package feed's signature and will not install from it. Set "
            f"{KEY_SETTING} to the usign public key that signs that release's feeds "
            f"(OpenWrt's keys: {KEYRING_URL}), or connect the router to the internet "
            "(by LAN cable) so that it installs the packages itself."
        )
    return keys


def _gunzip(data: bytes, url: str) -> bytes:
    unzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = unzip.decompress(data, MAX_INDEX_BYTES)
    except zlib.error as exc:
        raise RemoteFailed(f"The package index of {url} is not valid gzip.") from exc
    if unzip.unconsumed_tail or (len(out) >= MAX_INDEX_BYTES and not unzip.eof):
        raise RemoteFailed(
            f"The package index of {url} unzips to more than {MAX_INDEX_BYTES >> 20} MiB; "
            "refused."
        )
    if not unzip.eof:
        raise RemoteFailed(f"The package index of {url} is cut short (incomplete gzip).")
    return out


def _read_index(
    name: str, data: bytes, signature: bytes, keys: Sequence[usign.UsignKey], url: str
) -> dict[str, FeedPackage]:
    """Unzip, check the signature over the uncompressed ``Packages``, parse (in a thread)."""
    index = _gunzip(data, url) if name.endswith(".gz") else data
    try:
        usign.verify(index, usign.parse_signature(signature), keys)
    except usign.UsignError as exc:
        raise OperatorError(
            f"The package index of {url} failed its signature check (Packages.sig): {exc}. "
            "Nothing was installed. If this mirror signs its own index, set "
            f"{KEY_SETTING} to its public key."
        ) from exc
    return parse_index(index.decode("utf-8", errors="replace"), url)


def _plain_http(url: httpx.URL | str) -> ConfigError:
    return ConfigError(
        f"camreach downloads packages only over HTTPS and refused {url} (a mirror given as, "
        "or redirecting to, plain http://)."
    )


async def _https_only(request: httpx.Request) -> None:
    """An httpx request hook: nothing leaves over plain HTTP, redirects included."""
    if request.url.scheme != "https":
        raise _plain_http(request.url)


async def _get(client: httpx.AsyncClient, url: str, what: str) -> httpx.Response:
    if urlsplit(url).scheme != "https":
        raise _plain_http(url)
    try:
        resp = await client.get(url)
    except httpx.HTTPError as exc:
        raise Unreachable(f"Cannot download {what}: {exc}.") from exc
    if resp.url.scheme != "https" or any(r.url.scheme != "https" for r in resp.history):
        raise _plain_http(resp.url)
    return resp


async def _client(cfg: FeedConfig) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = True
    if cfg.ca_file:
        try:
            verify = await asyncio.to_thread(ssl.create_default_context, cafile=cfg.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"Cannot load the feed's CA bundle {cfg.ca_file}: {exc}."
            ) from exc
    return httpx.AsyncClient(timeout=cfg.timeout, follow_redirects=True, verify=verify,
                             event_hooks={"request": [_https_only]})


async def fetch_index(
    client: httpx.AsyncClient, urls: Sequence[str], keys: Sequence[usign.UsignKey]
) -> dict[str, FeedPackage]:
    """All feeds' signed indexes merged (earlier feeds win); a feed that is absent is skipped.

    A feed that has an index but no ``Packages.sig``, or whose signature is not by one of
    ``keys`` over exactly its ``Packages``, is refused (and with it the whole install).
    """
    merged: dict[str, FeedPackage] = {}
    reached = 0
    for url in urls:
        found: tuple[str, bytes] | None = None
        for name in ("Packages.gz", "Packages"):
            resp = await _get(client, f"{url}/{name}", f"the OpenWrt package index from {url}")
            if resp.status_code == 200:
                found = (name, resp.content)
                break
        if found is None:
            log.info("feed %s has no index; skipped", url)
            continue
        sig = await _get(client, f"{url}/Packages.sig", f"the index signature from {url}")
        if sig.status_code in (404, 410):
            raise OperatorError(
                f"The package feed {url} has no signature (Packages.sig), so camreach "
                "cannot tell whether its index is genuine; it installs only from signed "
                "feeds. Nothing was installed."
            )
        if sig.status_code != 200:
            raise RemoteFailed(f"The feed answered {sig.status_code} for {url}/Packages.sig.")
        entries = await asyncio.to_thread(_read_index, *found, sig.content, keys, url)
        reached += 1
        for pkg, entry in entries.items():
            merged.setdefault(pkg, entry)
    if not reached:
        raise Unreachable(f"None of the OpenWrt package feeds answered ({urls[0]} ...).")
    return merged


_DEP_RE = re.compile(r"([^\s(]+)\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?")


def resolve(
    wanted: Iterable[str], installed: Mapping[str, str], index: Mapping[str, FeedPackage]
) -> list[FeedPackage]:
    """``wanted`` plus every dependency the router lacks, from ``index``.

    An exact-version dependency on something installed (kernel modules name the kernel
    build they were compiled for) must match, or the module would not load.
    """
    provided: dict[str, FeedPackage] = {}
    for entry in index.values():
        for p in entry.provides:
            provided.setdefault(p.split()[0], entry)
    chosen: dict[str, FeedPackage] = {}
    todo = list(wanted)
    while todo:
        item = todo.pop(0)
        alternatives = [a.strip() for a in item.split("|")]
        parsed = []
        for alt in alternatives:
            m = _DEP_RE.fullmatch(alt)
            if m is None:
                raise RemoteFailed(f"Cannot read the dependency {alt!r} in the feed index.")
            parsed.append((m.group(1), m.group(2), m.group(3)))
        if any(name in installed or name in chosen for name, _, _ in parsed):
            for name, op, version in parsed:
                if name in installed and op == "=" and installed[name] != version:
                    raise OperatorError(
                        f"The feed's packages are built for {name} {version}, but the router "
                        f"runs {name} {installed[name]}. Upgrade the router to the current "
                        "build of its release (or point camreach at the feed that matches it)."
                    )
            continue
        for name, _, _ in parsed:
            found = index.get(name) or provided.get(name)
            if found is not None:
                if found.name not in chosen and found.name not in installed:
                    chosen[found.name] = found
                    todo.extend(found.depends)
                break
        else:
            raise OperatorError(
                f"The package {parsed[0][0]} is not in the OpenWrt feeds for this router's "
                "release and architecture."
            )
    return list(chosen.values())


def _check_space(packages: Sequence[FeedPackage], facts: RouterFacts) -> None:
    need_kb = sum((p.installed_size or p.size * 3) for p in packages) // 1024 + 1
    if facts.flash_free_kb is not None and need_kb + FLASH_RESERVE_KB > facts.flash_free_kb:
        raise NotEnoughFlash(
            f"The packages need about {need_kb} KiB of flash, and the router has "
            f"{facts.flash_free_kb} KiB free (camreach keeps {FLASH_RESERVE_KB} KiB spare). "
            "Nothing was uploaded. Free some space (remove packages you do not use, e.g. LuCI "
            "themes) or use a firmware image that already includes them."
        )
    upload_kb = sum(p.size for p in packages) // 1024 + 1
    if facts.tmp_free_kb is not None and upload_kb * 2 > facts.tmp_free_kb:
        raise NotEnoughFlash(
            f"The router's memory (/tmp, {facts.tmp_free_kb} KiB free) cannot hold the "
            f"{upload_kb} KiB of packages to upload. Nothing was uploaded."
        )


def _check_checksums(packages: Sequence[FeedPackage]) -> None:
    for pkg in packages:
        if not _SHA256_RE.fullmatch(pkg.sha256):
            raise OperatorError(
                f"The feed's index lists {pkg.name} with "
                + ("an empty SHA256sum" if not pkg.sha256 else "a malformed SHA256sum")
                + ", so camreach cannot check its download. Nothing was installed."
            )


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _download(client: httpx.AsyncClient, pkg: FeedPackage) -> bytes:
    resp = await _get(client, pkg.url, f"{pkg.name} from {pkg.feed_url}")
    if resp.status_code != 200:
        raise RemoteFailed(f"The feed answered {resp.status_code} for {pkg.name}.")
    data = resp.content
    if await asyncio.to_thread(_sha256_hex, data) != pkg.sha256:
        raise RemoteFailed(
            f"{pkg.name} from {pkg.feed_url} does not match the feed's checksum; not installed."
        )
    return data


def _bundle(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed tar of the .ipk files plus a SHA256SUMS to check them on the router."""
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [*files.items(), ("SHA256SUMS", sums.encode())]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


_UPLOAD_INSTALL = r"""
D=/tmp/camreach-pkgs
rm -rf "$D" && mkdir -p "$D" || exit 1
trap 'rm -rf "$D"' EXIT
tar -xf - -C "$D" || exit 2
(cd "$D" && sha256sum -c SHA256SUMS) >/dev/null 2>&1 || { echo "checksum mismatch"; exit 3; }
opkg install "$D"/*.ipk 2>&1
"""


async def install_offline(
    conn: SshConnection, facts: RouterFacts, names: Sequence[str], cfg: FeedConfig,
    client: httpx.AsyncClient | None = None,
) -> list[str]:
    """Download on this host, check the flash, upload once, ``opkg install`` the files."""
    if facts.package_manager != "opkg":
        raise OperatorError(
            "Installing without internet needs opkg; this router uses "
            f"{facts.package_manager or 'no package manager'}. Connect it to the internet "
            "(e.g. by LAN cable) and detect again."
        )
    cfg.check_https()
    urls = feed_urls(facts, cfg)
    keys = await asyncio.to_thread(trusted_keys, cfg, facts.release)
    own = client is None
    http = client or await _client(cfg)
    try:
        index = await fetch_index(http, urls, keys)
        packages = resolve(names, facts.packages, index)
        if not packages:
            return []
        _check_checksums(packages)
        _check_space(packages, facts)
        files: dict[str, bytes] = {}
        for pkg in packages:
            filename = pkg.filename.rsplit("/", 1)[-1]
            if not _FILE_RE.fullmatch(filename):
                raise RemoteFailed(f"The feed names {pkg.name}'s file oddly ({filename!r}).")
            files[filename] = await _download(http, pkg)
    finally:
        if own:
            await http.aclose()
    bundle = await asyncio.to_thread(_bundle, files)
    res = await conn.run("sh -c " + shlex.quote(_UPLOAD_INSTALL), input=bundle,
                         check=False, timeout=max(conn.target.command_timeout, 300))
    if not res.ok:
        raise RemoteFailed(
            f"opkg could not install the packages on {conn.target.where}.",
            detail=res.stdout.strip()[-500:],
        )
    return [p.name for p in packages]


async def install_online(conn: SshConnection, facts: RouterFacts, names: Sequence[str]) -> bool:
    """Install with the router's own package manager; False if it cannot reach its feeds."""
    for name in names:
        if not _NAME_RE.fullmatch(name):
            raise ValidationFailed(f"{name!r} is not a package name.")
    args = " ".join(shlex.quote(n) for n in names)
    if facts.package_manager == "apk":
        update, install = "apk update", f"apk add {args}"
    else:
        update, install = "opkg update", f"opkg install {args}"
    try:
        res = await conn.run(update, check=False, timeout=90)
    except Unreachable:
        return False
    if not res.ok:
        log.info("%s failed on %s; installing offline", update, conn.target.where)
        return False
    res = await conn.run(install, check=False, timeout=max(conn.target.command_timeout, 300))
    if not res.ok:
        raise RemoteFailed(
            f"The router's package manager could not install {', '.join(names)}.",
            detail=(res.stdout + res.stderr).strip()[-500:],
        )
    return True


async def install_packages(
    conn: SshConnection, facts: RouterFacts, names: Sequence[str], cfg: FeedConfig,
    *, online: bool | None = None, client: httpx.AsyncClient | None = None,
) -> InstallResult:
    """Install ``names`` (those not installed yet): online if the router can, else offline.

    ``online=False`` skips the online attempt (known to have no uplink), ``True`` forbids
    the offline way.
    """
    missing = [n for n in names if not facts.has_package(n)]
    if not missing:
        return InstallResult("nothing", ())
    if online is not False and await install_online(conn, facts, missing):
        return InstallResult("online", tuple(missing))
    if online is True:
        raise Unreachable("The router cannot reach its package feeds.")
    installed = await install_offline(conn, facts, missing, cfg, client)
    return InstallResult("offline", tuple(installed))
