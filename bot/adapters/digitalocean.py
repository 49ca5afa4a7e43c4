"""DigitalOcean through python-digitalocean: typed, async, errors mapped onto ``bot.errors``.

python-digitalocean (1.17) is synchronous (requests), untyped and lossy about errors, so this
module wraps it rather than exposing its objects:

* ``BaseAPI.get_data`` raises ``DataReadError(message)`` for every non-2xx except 404 and drops
  the status code and headers, so 401/403/422/429/5xx look alike (and an error body with only
  one of ``id``/``message`` raises ``IndexError``). Each library object built here gets its
  private ``__perform_request`` wrapped to keep the last ``requests.Response``, and errors are
  classified from that response in one place, ``_mapped_errors``.
* It has no request timeout unless ``PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC`` is set, so a
  stalled connection would pin a worker thread forever: ``get_timeout`` is overridden per object.
* It logs every request at DEBUG with the JSON body (droplet ``user_data`` holds WireGuard keys)
  and the headers; it swaps the token for ``TOKEN0`` itself, but only as long as the token's
  ``repr`` is the token. A filter on its logger cuts that line down to method and URL and scrubs
  anything token-like.
* Every ``BaseAPI`` object reads ``DIGITALOCEAN_END_POINT`` in ``__init__`` (construction time,
  not import); an ``end_point=`` keyword overrides it. The value must end in ``/v2/``:
  ``urljoin("…/v2", "droplets/")`` drops ``v2``. Objects the library builds for itself
  (``Manager.get_account()``, ``Manager.get_droplet()``, keys looked up by ``Droplet.create``)
  ignore the keyword and re-read the environment, so this module builds every object it calls
  and passes ``end_point`` explicitly instead of changing the process environment.
* All library calls run in a worker thread (``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

import digitalocean
import requests  # type: ignore[import-untyped, unused-ignore]

from bot.errors import (
    AuthRejected,
    CamreachError,
    ConfigError,
    NotFound,
    OperatorError,
    RemoteFailed,
    TransientError,
    Unreachable,
    ValidationFailed,
)
from bot.logs import REDACTOR

__all__ = [
    "AccountInfo",
    "DigitalOceanClient",
    "DropletInfo",
    "DropletNotReady",
    "ImageInfo",
    "KeyInfo",
    "RateLimited",
    "RegionInfo",
    "RequestRejected",
    "ServerError",
    "SizeInfo",
    "resolve_end_point",
    "ssh_fingerprint",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

END_POINT_ENV = "DIGITALOCEAN_END_POINT"
DEFAULT_END_POINT = "https://api.digitalocean.com/v2/"
AUTH_REJECTED_MESSAGE = (
    "DigitalOcean rejected the API token. Create a new one at cloud.digitalocean.com → API → "
    "Tokens (read+write) and send it again."
)
SCOPE_MISSING_MESSAGE = (
    "DigitalOcean refused to {what}: the API token is not allowed to (it is read-only or lacks "
    "a scope). Create a read+write token at cloud.digitalocean.com → API → Tokens and send it "
    "again."
)
USER_DATA_LIMIT = 64 * 1024  # DigitalOcean's cap on droplet user_data

_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_\-.~+/=]{8,512}")  # nothing repr() would escape
_HOSTNAME = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9.-]{0,253}[a-zA-Z0-9])?")
_TAG = re.compile(r"[a-zA-Z0-9_:\-]{1,255}")
_UBUNTU_LTS = re.compile(r"ubuntu-(\d{2})-04-x64")
_PERFORM = "_BaseAPI__perform_request"  # python-digitalocean's name-mangled request method


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class AccountInfo:
    email: str
    uuid: str
    status: str  # "active", "warning" or "locked"
    status_message: str
    droplet_limit: int
    email_verified: bool


@dataclass(frozen=True)
class RegionInfo:
    slug: str
    name: str
    available: bool
    sizes: tuple[str, ...]
    features: tuple[str, ...]


@dataclass(frozen=True)
class SizeInfo:
    slug: str
    memory_mb: int
    vcpus: int
    disk_gb: int
    transfer_tb: float
    price_monthly: float
    price_hourly: float
    regions: tuple[str, ...]
    available: bool
    description: str


@dataclass(frozen=True)
class ImageInfo:
    id: int
    slug: str
    name: str
    distribution: str
    regions: tuple[str, ...]


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    fingerprint: str


@dataclass(frozen=True)
class DropletInfo:
    id: int
    name: str
    status: str  # "new", "active", "off", "archive"
    region: str
    size: str
    public_ipv4: str | None
    tags: tuple[str, ...]
    price_monthly: float | None
    image: str | None = None
    created_at: str | None = None


# --------------------------------------------------------------------------- errors


class ServerError(RemoteFailed):
    """DigitalOcean answered 5xx; raised once the retries are used up."""


class RateLimited(RemoteFailed):
    """HTTP 429; ``retry_after`` is how many seconds DigitalOcean asked us to wait."""

    def __init__(self, user_message: str, *, retry_after: float, detail: str | None = None):
        super().__init__(user_message, detail=detail)
        self.retry_after = retry_after


class RequestRejected(ValidationFailed):
    """HTTP 422 (or 400): ``do_message`` is what DigitalOcean said, ``fields`` what it names."""

    def __init__(
        self,
        user_message: str,
        *,
        do_message: str,
        fields: tuple[str, ...] = (),
        detail: str | None = None,
    ) -> None:
        super().__init__(user_message, detail=detail)
        self.do_message = do_message
        self.fields = fields


class DropletNotReady(TransientError):
    """A droplet did not become active with a public address before the deadline."""


# --------------------------------------------------------------------------- redaction


_LIB_REQUEST_LINE = re.compile(
    r"^(?P<method>GET|POST|PUT|PATCH|DELETE) (?P<url>\S+) (?P<payload>params|data):", re.S
)


class _RequestLineFilter(logging.Filter):
    """Keeps tokens and request bodies out of python-digitalocean's DEBUG lines.

    The library logs ``METHOD URL params|data:<body> <headers> <timeout>``; only method and URL
    survive. Tokens are then masked by camreach's shared redactor (which knows the token).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not leak its raw args either
            message = str(record.msg)
        line = _LIB_REQUEST_LINE.match(message)
        if line:
            message = f"{line['method']} {line['url']} ({line['payload']} and headers withheld)"
        record.msg = REDACTOR.redact(message)
        record.args = ()
        return True


_LIB_FILTER = _RequestLineFilter()


def _install_redactor() -> None:
    # The library logs through the logger named after its package, "digitalocean".
    lib_log = logging.getLogger(digitalocean.__name__)
    if _LIB_FILTER not in lib_log.filters:
        lib_log.addFilter(_LIB_FILTER)


_install_redactor()


class _Secret:
    """Holds the token so that no repr, str or f-string of ours can print it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


# --------------------------------------------------------------------------- helpers


def resolve_end_point(endpoint: str | None = None) -> str:
    """The API base URL in the form python-digitalocean needs: ``scheme://host[:port]/…/v2/``.

    ``endpoint`` wins, then ``$DIGITALOCEAN_END_POINT``, then the public API. A missing trailing
    slash is added (the library would drop the last path segment); a bare host gets ``/v2/``.
    """
    raw = (endpoint or os.environ.get(END_POINT_ENV) or DEFAULT_END_POINT).strip()
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"The DigitalOcean API address {raw!r} is not an http(s) URL.",
            detail=f"set {END_POINT_ENV} or the endpoint setting to e.g. {DEFAULT_END_POINT}",
        )
    if parsed.path in ("", "/"):
        return f"{parsed.scheme}://{parsed.netloc}/v2/"
    return raw if raw.endswith("/") else raw + "/"


def ssh_fingerprint(public_key_openssh: str) -> str:
    """DigitalOcean's key fingerprint: MD5 of the key blob as colon-separated hex pairs."""
    parts = public_key_openssh.strip().split()
    bad = ValidationFailed(
        "That is not an OpenSSH public key (expected e.g. 'ssh-ed25519 AAAA… comment')."
    )
    if len(parts) < 2:
        raise bad
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    # The blob starts with its own length-prefixed key type; a mismatch means a mangled paste.
    type_len = int.from_bytes(blob[:4], "big")
    if blob[4 : 4 + type_len] != parts[0].encode():
        raise bad
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _slug(value: Any) -> str:
    # Droplets carry region/size/image as nested objects; be lenient about bare slugs.
    if isinstance(value, Mapping):
        return _s(value.get("slug"))
    return _s(value)


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _account_info(a: Mapping[str, Any]) -> AccountInfo:
    return AccountInfo(
        email=_s(a.get("email")),
        uuid=_s(a.get("uuid")),
        status=_s(a.get("status")) or "active",
        status_message=_s(a.get("status_message")),
        droplet_limit=int(a.get("droplet_limit") or 0),
        email_verified=bool(a.get("email_verified")),
    )


def _region_info(r: Mapping[str, Any]) -> RegionInfo:
    return RegionInfo(
        slug=_s(r.get("slug")),
        name=_s(r.get("name")),
        available=bool(r.get("available")),
        sizes=_strs(r.get("sizes")),
        features=_strs(r.get("features")),
    )


def _size_info(s: Mapping[str, Any]) -> SizeInfo:
    return SizeInfo(
        slug=_s(s.get("slug")),
        memory_mb=int(s.get("memory") or 0),
        vcpus=int(s.get("vcpus") or 0),
        disk_gb=int(s.get("disk") or 0),
        transfer_tb=float(s.get("transfer") or 0.0),
        price_monthly=float(s.get("price_monthly") or 0.0),
        price_hourly=float(s.get("price_hourly") or 0.0),
        regions=_strs(s.get("regions")),
        available=bool(s.get("available", True)),
        description=_s(s.get("description")),
    )


def _image_info(i: Mapping[str, Any]) -> ImageInfo:
    return ImageInfo(
        id=int(i.get("id") or 0),
        slug=_s(i.get("slug")),
        name=_s(i.get("name")),
        distribution=_s(i.get("distribution")),
        regions=_strs(i.get("regions")),
    )


def _key_info(k: Mapping[str, Any]) -> KeyInfo:
    return KeyInfo(id=int(k["id"]), name=_s(k.get("name")), fingerprint=_s(k.get("fingerprint")))


def _droplet_info(d: Mapping[str, Any]) -> DropletInfo:
    size = d.get("size")
    networks = d.get("networks")
    v4 = networks.get("v4") if isinstance(networks, Mapping) else None
    public = next(
        (_s(n.get("ip_address")) for n in (v4 or [])
         if isinstance(n, Mapping) and n.get("type") == "public"),
        None,
    )
    price = size.get("price_monthly") if isinstance(size, Mapping) else None
    return DropletInfo(
        id=int(d["id"]),
        name=_s(d.get("name")),
        status=_s(d.get("status")),
        region=_slug(d.get("region")),
        size=_s(d.get("size_slug")) or _slug(size),
        public_ipv4=public or None,
        tags=_strs(d.get("tags")),
        price_monthly=None if price is None else float(price),
        image=_slug(d.get("image")) or None,
        created_at=_s(d.get("created_at")) or None,
    )


def _check_tag(tag: str) -> None:
    if not _TAG.fullmatch(tag):
        raise ValidationFailed(
            f"The tag {tag!r} is not valid on DigitalOcean: use letters, digits, ':', '-' and "
            "'_' only (at most 255)."
        )


# --------------------------------------------------------------------------- the boundary


class _Library:
    """Builds python-digitalocean objects for one call, inside the worker thread.

    Each object gets our timeout and a wrapped ``__perform_request`` that keeps the last
    response, which is the only place the status code and rate-limit headers survive.
    """

    def __init__(self, token: str, end_point: str, timeout: float) -> None:
        self._token = token
        self._end_point = end_point
        self._timeout = timeout
        self._objects: list[Any] = []
        self.response: Any = None  # requests.Response of the latest request, if one came back

    def make(self, cls: Any, **attrs: Any) -> Any:
        obj = cls(token=self._token, end_point=self._end_point, **attrs)
        perform = getattr(obj, _PERFORM, None)
        if perform is not None:  # absent in some future version: then we map by type only

            def recording(url: str, type: str = "GET", params: Any = None) -> Any:
                self.response = None
                response = perform(url, type, params)
                self.response = response
                return response

            # Instance attribute shadows the method for get_data and its pagination loop.
            setattr(obj, _PERFORM, recording)
        obj.get_timeout = lambda: self._timeout
        self._objects.append(obj)
        return obj

    def manager(self) -> Any:
        return self.make(digitalocean.Manager)

    def last_json(self, key: str) -> Mapping[str, Any]:
        """``key`` of the last JSON answer (e.g. the droplet a POST returned, which the library
        drops after reading its id)."""
        data = self.response.json() if self.response is not None else None
        if not isinstance(data, Mapping) or not isinstance(data.get(key), Mapping):
            raise ValueError(f"answer has no {key!r} object")
        value: Mapping[str, Any] = data[key]
        return value

    def close(self) -> None:
        # Every BaseAPI object opens its own requests.Session; don't leave sockets to the GC.
        for obj in self._objects:
            with contextlib.suppress(Exception):
                obj._session.close()


def _do_message(response: Any) -> str:
    """What DigitalOcean said, from a DO error body (``{"id", "message"}``) or the raw text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and body.get("message"):
        text = str(body["message"])
    else:
        text = _s(getattr(response, "text", "")).strip() or f"HTTP {response.status_code}"
    return REDACTOR.redact(" ".join(text.split()))[:300]


def _rate_limit_wait(headers: Mapping[str, str], now: float) -> float:
    """Seconds to wait after a 429: ``retry-after``, or until ``ratelimit-reset`` (epoch s)
    when ``ratelimit-remaining`` is 0; the longer of the two."""
    waits: list[float] = []
    with contextlib.suppress(TypeError, ValueError):
        waits.append(float(headers["retry-after"]))
    if _s(headers.get("ratelimit-remaining")) == "0":
        with contextlib.suppress(TypeError, ValueError):
            waits.append(float(headers["ratelimit-reset"]) - now)
    return max(0.0, max(waits)) if waits else 5.0


def _mentioned(message: str, fields: Mapping[str, object]) -> tuple[str, ...]:
    words = {"ssh_keys": "ssh", "tags": "tag", "user_data": "user"}
    lowered = message.lower()
    return tuple(f for f in fields if words.get(f, f).replace("_", " ") in lowered)


def _map_error(
    exc: Exception, response: Any, what: str, fields: Mapping[str, object]
) -> CamreachError | None:
    """One mapping from library/transport failures to ``bot.errors``; None: not ours, re-raise."""
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and not 200 <= status < 300:
        message = _do_message(response)
        detail = f"HTTP {status} while trying to {what}: {message}"
        if status == 401:
            return AuthRejected(AUTH_REJECTED_MESSAGE, detail=detail)
        if status == 403:
            return OperatorError(SCOPE_MISSING_MESSAGE.format(what=what), detail=detail)
        if status == 404:
            return NotFound(
                f"DigitalOcean has no such thing (while trying to {what}); it may have been "
                "deleted.",
                detail=detail,
            )
        if status in (400, 422):
            named = _mentioned(message, fields)
            context = ", ".join(f"{f}={fields[f]}" for f in named or tuple(fields))
            return RequestRejected(
                f"DigitalOcean refused to {what}: {message}"
                + (f" ({context})" if context else ""),
                do_message=message,
                fields=named,
                detail=detail,
            )
        if status == 429:
            wait = _rate_limit_wait(response.headers, time.time())
            return RateLimited(
                "DigitalOcean is rate-limiting this token; try again in "
                f"{max(1, round(wait / 60))} min.",
                retry_after=wait,
                detail=detail,
            )
        if status >= 500:
            return ServerError(
                f"DigitalOcean had an internal error while trying to {what}. Try again in a few "
                "minutes; status.digitalocean.com shows outages.",
                detail=detail,
            )
        return RemoteFailed(f"DigitalOcean refused to {what}: {message}", detail=detail)
    if isinstance(exc, requests.exceptions.Timeout):
        return Unreachable(
            f"DigitalOcean did not answer in time while trying to {what}.",
            detail=type(exc).__name__,
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return Unreachable(
            f"Could not connect to DigitalOcean while trying to {what}. Check this machine's "
            "internet connection.",
            detail=type(exc).__name__,
        )
    if isinstance(exc, digitalocean.TokenError):
        return AuthRejected(AUTH_REJECTED_MESSAGE, detail="no token")
    if isinstance(exc, digitalocean.NotFoundError):  # only without a recorded response
        return NotFound(f"DigitalOcean has no such thing (while trying to {what}).")
    if isinstance(exc, digitalocean.Error | KeyError | TypeError | ValueError):
        # A 2xx with a body we (or the library) could not read.
        return RemoteFailed(
            f"DigitalOcean sent an answer camreach could not read while trying to {what}.",
            detail=f"{type(exc).__name__}: {REDACTOR.redact(str(exc))[:300]}",
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return Unreachable(
            f"Could not talk to DigitalOcean while trying to {what}.", detail=type(exc).__name__
        )
    return None


@contextlib.contextmanager
def _mapped_errors(lib: _Library, what: str, fields: Mapping[str, object]) -> Iterator[None]:
    try:
        yield
    except CamreachError:
        raise
    except Exception as exc:
        mapped = _map_error(exc, lib.response, what, fields)
        if mapped is None:
            raise
        raise mapped from exc


# --------------------------------------------------------------------------- the client


class DigitalOceanClient:
    """Async, typed access to the DigitalOcean API for camreach.

    The token is checked (GET /v2/account) before the first other call. Retries: 5xx and
    network failures back off exponentially (``backoff`` · 2ⁿ s, at most ``max_backoff``) up to
    ``max_retries`` times; 429 waits for the rate-limit reset when that is at most
    ``max_rate_limit_wait`` s away. ``sleep`` is injectable so tests need not wait.
    """

    def __init__(
        self,
        token: str,
        *,
        endpoint: str | None = None,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        request_timeout: float = 30.0,
        max_rate_limit_wait: float = 60.0,
        poll_interval: float = 3.0,
        max_poll_interval: float = 20.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        token = token.strip()  # a pasted token often carries a newline
        if not _TOKEN_SHAPE.fullmatch(token):
            # Never echo it: requests would put a malformed header value in its error text.
            raise AuthRejected(AUTH_REJECTED_MESSAGE, detail="token is empty or malformed")
        _install_redactor()
        REDACTOR.add(token)
        self._token = _Secret(token)
        self.end_point = resolve_end_point(endpoint)
        self._max_retries = max(0, max_retries)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._request_timeout = request_timeout
        self._max_rate_limit_wait = max_rate_limit_wait
        self._poll_interval = poll_interval
        self._max_poll_interval = max_poll_interval
        self._sleep = sleep
        self._account: AccountInfo | None = None
        self._check_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"DigitalOceanClient(end_point={self.end_point!r})"

    # ---------------------------------------------------------------- plumbing

    def _run(self, what: str, work: Callable[[_Library], T], fields: Mapping[str, object]) -> T:
        """In the worker thread: one library call, errors mapped at the boundary."""
        lib = _Library(self._token.reveal(), self.end_point, self._request_timeout)
        try:
            with _mapped_errors(lib, what, fields):
                return work(lib)
        finally:
            lib.close()

    async def _call(
        self,
        what: str,
        work: Callable[[_Library], T],
        *,
        fields: Mapping[str, object] | None = None,
        check_token: bool = True,
    ) -> T:
        if check_token and self._account is None:
            await self._ensure_token_checked()
        attempt = 0
        while True:
            try:
                return await asyncio.to_thread(self._run, what, work, fields or {})
            except RateLimited as exc:
                if attempt >= self._max_retries or exc.retry_after > self._max_rate_limit_wait:
                    raise
                delay, reason = exc.retry_after, "rate-limited"
            except (ServerError, Unreachable) as exc:
                if attempt >= self._max_retries:
                    raise
                delay = min(self._backoff * 2**attempt, self._max_backoff)
                reason = exc.detail or type(exc).__name__
            attempt += 1
            log.warning(
                "DigitalOcean: %s failed (%s); retry %d of %d in %.1fs",
                what, reason, attempt, self._max_retries, delay,
            )
            await self._sleep(delay)

    async def _ensure_token_checked(self) -> None:
        async with self._check_lock:
            if self._account is None:
                await self.check_token()

    # ---------------------------------------------------------------- account

    async def check_token(self) -> AccountInfo:
        """GET /v2/account: proves the token works before anything else is attempted."""

        def work(lib: _Library) -> AccountInfo:
            account = lib.make(digitalocean.Account)
            account.load()
            return _account_info(vars(account))

        info = await self._call("check the API token", work, check_token=False)
        if info.status == "locked":
            raise OperatorError(
                "The DigitalOcean account is locked"
                + (f" ({info.status_message})" if info.status_message else "")
                + ". Resolve it at cloud.digitalocean.com, then try again."
            )
        self._account = info
        return info

    # ---------------------------------------------------------------- catalogue

    async def list_regions(self) -> list[RegionInfo]:
        def work(lib: _Library) -> list[RegionInfo]:
            return [_region_info(vars(r)) for r in lib.manager().get_all_regions()]

        return await self._call("list regions", work)

    async def list_sizes(self) -> list[SizeInfo]:
        def work(lib: _Library) -> list[SizeInfo]:
            return [_size_info(vars(s)) for s in lib.manager().get_all_sizes()]

        return await self._call("list droplet sizes", work)

    async def _size(self, size_slug: str) -> SizeInfo:
        for size in await self.list_sizes():
            if size.slug == size_slug:
                return size
        raise NotFound(f"DigitalOcean has no droplet size {size_slug!r}.")

    async def available_regions_for(self, size_slug: str) -> list[RegionInfo]:
        """Regions open for new droplets that offer ``size_slug``, by slug."""
        size = await self._size(size_slug)
        regions = await self.list_regions()
        return sorted(
            (r for r in regions
             if r.available and size_slug in r.sizes and r.slug in size.regions),
            key=lambda r: r.slug,
        )

    async def smallest_size(self, region: str | None = None) -> SizeInfo:
        """The cheapest size on sale (in ``region``, if given)."""
        sizes = [s for s in await self.list_sizes() if s.available and s.regions]
        if region is not None:
            open_here = {
                s for r in await self.list_regions() if r.slug == region and r.available
                for s in r.sizes
            }
            sizes = [s for s in sizes if region in s.regions and s.slug in open_here]
        if not sizes:
            where = f" in {region}" if region else ""
            raise NotFound(f"DigitalOcean offers no droplet size{where} right now.")
        return min(sizes, key=lambda s: (s.price_monthly, s.memory_mb, s.slug))

    async def monthly_price(self, size_slug: str) -> float:
        return (await self._size(size_slug)).price_monthly

    async def default_image(self) -> ImageInfo:
        """The newest Ubuntu LTS (YY.04 with an even YY) among distribution images."""

        def work(lib: _Library) -> list[ImageInfo]:
            return [
                _image_info(vars(i)) for i in lib.manager().get_distro_images()
                if getattr(i, "status", None) in (None, "available")
            ]

        best: tuple[int, ImageInfo] | None = None
        for image in await self._call("list distribution images", work):
            match = _UBUNTU_LTS.fullmatch(image.slug)
            if match and int(match[1]) % 2 == 0 and (best is None or int(match[1]) > best[0]):
                best = (int(match[1]), image)
        if best is None:
            raise NotFound("DigitalOcean lists no Ubuntu LTS image right now.")
        return best[1]

    # ---------------------------------------------------------------- SSH keys

    async def ensure_ssh_key(self, name: str, public_key_openssh: str) -> KeyInfo:
        """The account's key with this key's fingerprint, registering it only if missing.

        Race-free: when another process registers the same key between our list and our POST,
        DigitalOcean answers 422 "SSH Key is already in use on your account"; the key is then
        fetched by its fingerprint (GET /v2/account/keys/{fingerprint}) and returned.
        """
        public_key = public_key_openssh.strip()
        fingerprint = ssh_fingerprint(public_key)

        def find(lib: _Library) -> KeyInfo | None:
            for key in lib.manager().get_all_sshkeys():
                if _s(key.fingerprint).lower() == fingerprint:
                    return _key_info(vars(key))
            return None

        def find_or_create(lib: _Library) -> KeyInfo:
            found = find(lib)
            if found is not None:
                return found
            key = lib.make(digitalocean.SSHKey, name=name, public_key=public_key)
            key.create()
            return _key_info(lib.last_json("ssh_key"))

        def by_fingerprint(lib: _Library) -> KeyInfo:
            key = lib.make(digitalocean.SSHKey, fingerprint=fingerprint)
            key.load()
            return _key_info(vars(key))

        try:
            return await self._call(f"register the SSH key {name!r}", find_or_create)
        except RequestRejected:
            # "already in use": someone registered it between our list and our POST. Any other
            # 422 (a bad name, say) leaves no key with this fingerprint: the 422 stands.
            try:
                return await self._call(f"look up the SSH key {fingerprint}", by_fingerprint)
            except NotFound:
                pass
            raise

    # ---------------------------------------------------------------- droplets

    async def find_droplets_by_tag(self, tag: str) -> list[DropletInfo]:
        _check_tag(tag)

        def work(lib: _Library) -> list[DropletInfo]:
            return [_droplet_info(vars(d)) for d in lib.manager().get_all_droplets(tag_name=tag)]

        return await self._call(f"list droplets tagged {tag!r}", work)

    async def create_droplet(
        self,
        name: str,
        region: str,
        size: str,
        image: str | int,
        ssh_key_ids: Sequence[int],
        tags: Sequence[str],
        user_data: str | None,
    ) -> DropletInfo:
        """POST /v2/droplets. Safe to retry: after a failed attempt that may have reached
        DigitalOcean, a droplet with this name and tags is looked up before posting again."""
        if not _HOSTNAME.fullmatch(name):
            raise ValidationFailed(
                f"{name!r} is not a valid droplet name: use letters, digits, '.' and '-'."
            )
        for tag in tags:
            _check_tag(tag)
        if user_data is not None and len(user_data.encode()) > USER_DATA_LIMIT:
            raise ValidationFailed("The droplet's cloud-init user data is over DigitalOcean's "
                                   "64 KiB limit.")
        fields: dict[str, object] = {"name": name, "region": region, "size": size,
                                     "image": image}
        posted = False

        def work(lib: _Library) -> DropletInfo:
            nonlocal posted
            if posted:
                existing = self._find_created(lib, name, tags)
                if existing is not None:
                    log.info("DigitalOcean: droplet %s (%s) was created by an earlier attempt",
                             existing.id, name)
                    return existing
            posted = True
            droplet = lib.make(
                digitalocean.Droplet, name=name, region=region, size_slug=size, image=image,
                ssh_keys=[int(k) for k in ssh_key_ids], tags=list(tags), user_data=user_data,
            )
            droplet.create()
            return _droplet_info(lib.last_json("droplet"))

        try:
            return await self._call(f"create the droplet {name!r}", work, fields=fields)
        except RequestRejected as exc:
            if "region" not in exc.do_message.lower():
                raise
            hint = await self._regions_hint(size)
            if not hint:
                raise
            raise RequestRejected(
                f"{exc.user_message} {hint}", do_message=exc.do_message, fields=exc.fields,
                detail=exc.detail,
            ) from exc.__cause__

    async def _regions_hint(self, size: str) -> str:
        try:
            regions = await self.available_regions_for(size)
        except CamreachError:
            return ""  # the hint is a courtesy; the original error is what matters
        if not regions:
            return ""
        return f"Regions that offer {size}: {', '.join(r.slug for r in regions)}."

    @staticmethod
    def _find_created(lib: _Library, name: str, tags: Sequence[str]) -> DropletInfo | None:
        manager = lib.manager()
        found = manager.get_all_droplets(tag_name=tags[0]) if tags else manager.get_all_droplets()
        matches = [
            _droplet_info(vars(d)) for d in found
            if d.name == name and set(tags) <= set(_strs(d.tags))
        ]
        return max(matches, key=lambda d: d.id) if matches else None

    async def get_droplet(self, droplet_id: int) -> DropletInfo:
        def work(lib: _Library) -> DropletInfo:
            droplet = lib.make(digitalocean.Droplet, id=droplet_id)
            droplet.load()
            return _droplet_info(vars(droplet))

        return await self._call(f"read droplet {droplet_id}", work)

    async def wait_active(
        self,
        droplet_id: int,
        on_progress: Callable[[str], Awaitable[None]] | None = None,
        timeout: float = 300.0,  # noqa: ASYNC109 (a polling deadline, not one await)
    ) -> DropletInfo:
        """Poll until the droplet is ``active`` with a public IPv4 address.

        Polls back off from ``poll_interval`` doubling up to ``max_poll_interval``; ``on_progress``
        gets a short status line after each poll. Raises DropletNotReady past ``timeout``.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = self._poll_interval
        while True:
            droplet = await self.get_droplet(droplet_id)
            elapsed = loop.time() - started
            if droplet.status == "active" and droplet.public_ipv4:
                if on_progress is not None:
                    await on_progress(
                        f"Droplet {droplet.name} is active at {droplet.public_ipv4}."
                    )
                return droplet
            if droplet.status not in ("new", "active"):
                raise RemoteFailed(
                    f"Droplet {droplet.name} is {droplet.status!r} instead of starting up. "
                    "Check it at cloud.digitalocean.com; destroy it and try again."
                )
            if elapsed >= timeout:
                raise DropletNotReady(
                    f"Droplet {droplet.name} is still {droplet.status!r} after {elapsed:.0f} s. "
                    "DigitalOcean may be slow in this region: try again later, or destroy it "
                    "and pick another region.",
                    detail=f"droplet {droplet_id}, timeout {timeout} s",
                )
            if on_progress is not None:
                await on_progress(
                    f"Droplet {droplet.name} is starting ({droplet.status}, {elapsed:.0f} s)…"
                )
            await self._sleep(min(delay, max(0.0, timeout - elapsed)))
            delay = min(delay * 2, self._max_poll_interval)

    async def destroy_droplet(self, droplet_id: int, *, missing_ok: bool = False) -> None:
        """DELETE /v2/droplets/{id}. A 404 after a retried attempt counts as done."""
        attempts = 0

        def work(lib: _Library) -> None:
            nonlocal attempts
            attempts += 1
            lib.make(digitalocean.Droplet, id=droplet_id).destroy()

        try:
            await self._call(f"destroy droplet {droplet_id}", work)
        except NotFound:
            if not (missing_ok or attempts > 1):
                raise
