"""A fake DigitalOcean API v2 on 127.0.0.1, for driving the real python-digitalocean.

Two ways to run it, both on an ephemeral port:

    async with FakeDigitalOcean() as fake:      # on the test's event loop
        client = DigitalOceanClient(fake.token, endpoint=fake.endpoint)

    with FakeDigitalOcean() as fake:            # own loop in a background thread, for
        digitalocean.Manager(token=fake.token, end_point=fake.endpoint).get_account()

In the async form the server shares the test's loop, so blocking library calls must run in a
thread (``asyncio.to_thread``, as the adapter does) or they deadlock the server they talk to.

How python-digitalocean finds the endpoint (digitalocean/baseapi.py, 1.17): every ``BaseAPI``
object (Manager, Droplet, SSHKey, ...) reads ``DIGITALOCEAN_END_POINT`` in its ``__init__``, i.e.
at object construction, not at import; an ``end_point=`` keyword overrides it. Paths are joined
with ``urljoin(end_point, "droplets/")``, so the value must end in ``/v2/`` with the trailing
slash: ``http://host:port/v2`` silently becomes ``http://host:port/droplets/`` (only an empty path
gets a ``/`` appended). ``fake.endpoint`` has the right form. Objects the library builds itself
(``Manager.get_account()``, ``Manager.get_droplet()``, droplets in a list) do not inherit an
``end_point`` keyword; they re-read the environment variable (see ``fake.set_env``).

What the fake does (DO-like JSON, pagination links, rate-limit headers):
  GET  /v2/account                     GET /v2/regions, /v2/sizes, /v2/images[?type=distribution]
  GET  /v2/account/keys                POST /v2/account/keys (fingerprint = MD5 of the key blob)
  GET|DELETE /v2/account/keys/{id|fp}
  GET  /v2/droplets[?tag_name=&name=]  POST /v2/droplets (validates region, size, image, keys)
  GET|DELETE /v2/droplets/{id}         DELETE /v2/droplets?tag_name=

Droplets start ``new`` and become ``active`` after ``active_after_gets`` GETs of
``/v2/droplets/{id}`` (or ``active_after_seconds``), at which point they get the public IPv4
address in ``public_ipv4`` (point it at a local SSH stand-in). ``stuck_in_new = True`` keeps
them ``new``. Faults: ``fail_next``, ``delay_next``. Every request is in ``requests``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

FAKE_TOKEN = "dop_v1_" + "5eed" * 16  # DO token shape: dop_v1_ + 64 hex digits
ENDPOINT_ENV = "DIGITALOCEAN_END_POINT"

_ALL_REGIONS = ["nyc1", "nyc3", "ams3", "fra1", "lon1", "sgp1", "blr1"]

REGIONS: list[dict[str, Any]] = [
    {"slug": "nyc1", "name": "New York 1", "available": True,
     "sizes": ["s-1vcpu-512mb-10gb", "s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb"]},
    {"slug": "nyc3", "name": "New York 3", "available": True,
     "sizes": ["s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb"]},
    {"slug": "ams3", "name": "Amsterdam 3", "available": True,
     "sizes": ["s-1vcpu-512mb-10gb", "s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb"]},
    {"slug": "fra1", "name": "Frankfurt 1", "available": True,
     "sizes": ["s-1vcpu-512mb-10gb", "s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb"]},
    {"slug": "lon1", "name": "London 1", "available": True,
     "sizes": ["s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb"]},
    {"slug": "sgp1", "name": "Singapore 1", "available": True,
     "sizes": ["s-1vcpu-512mb-10gb", "s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb"]},
    # Bangalore has no 512 MB droplets: creating one there is the 422 of the tests.
    {"slug": "blr1", "name": "Bangalore 1", "available": True,
     "sizes": ["s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb"]},
    # Closed to new droplets, like DO's retired regions.
    {"slug": "sfo1", "name": "San Francisco 1", "available": False, "sizes": []},
]
_FEATURES = ["backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"]
for _r in REGIONS:
    _r["features"] = list(_FEATURES) if _r["available"] else []

SIZES: list[dict[str, Any]] = [
    {"slug": "s-1vcpu-512mb-10gb", "memory": 512, "vcpus": 1, "disk": 10, "transfer": 0.5,
     "price_monthly": 4.0, "price_hourly": 0.00595, "description": "Basic"},
    {"slug": "s-1vcpu-1gb", "memory": 1024, "vcpus": 1, "disk": 25, "transfer": 1.0,
     "price_monthly": 6.0, "price_hourly": 0.00893, "description": "Basic"},
    {"slug": "s-1vcpu-2gb", "memory": 2048, "vcpus": 1, "disk": 50, "transfer": 2.0,
     "price_monthly": 12.0, "price_hourly": 0.01786, "description": "Basic"},
    {"slug": "s-2vcpu-2gb", "memory": 2048, "vcpus": 2, "disk": 60, "transfer": 3.0,
     "price_monthly": 18.0, "price_hourly": 0.02679, "description": "Basic"},
]
for _s in SIZES:
    _s["regions"] = [r["slug"] for r in REGIONS if _s["slug"] in r["sizes"]]
    _s["available"] = True

IMAGES: list[dict[str, Any]] = [
    {"id": 160232537, "name": "24.04 (LTS) x64", "distribution": "Ubuntu",
     "slug": "ubuntu-24-04-x64", "description": "Ubuntu 24.04 (LTS) x64", "min_disk_size": 7},
    {"id": 129211873, "name": "22.04 (LTS) x64", "distribution": "Ubuntu",
     "slug": "ubuntu-22-04-x64", "description": "Ubuntu 22.04 (LTS) x64", "min_disk_size": 7},
    # Newer than 24.04 but not LTS: a "current Ubuntu LTS" picker must skip it.
    {"id": 183240911, "name": "25.04 x64", "distribution": "Ubuntu",
     "slug": "ubuntu-25-04-x64", "description": "Ubuntu 25.04 x64", "min_disk_size": 7},
    {"id": 143582372, "name": "12 x64", "distribution": "Debian",
     "slug": "debian-12-x64", "description": "Debian 12 x64", "min_disk_size": 7},
]
for _i in IMAGES:
    _i.update(public=True, regions=list(_ALL_REGIONS), type="base", status="available",
              size_gigabytes=2.5, tags=[], error_message="",
              created_at="2024-04-25T00:00:00Z")

_ERROR_IDS = {
    400: "bad_request", 401: "Unauthorized", 403: "Forbidden", 404: "not_found",
    409: "conflict", 422: "unprocessable_entity", 429: "too_many_requests",
    500: "server_error", 502: "bad_gateway", 503: "service_unavailable",
}
_ERROR_MESSAGES = {
    401: "Unable to authenticate you",
    403: "You do not have access for the attempted action.",
    404: "The resource you were accessing could not be found.",
    429: "API Rate limit exceeded.",
    500: "Server was unable to give you a response.",
}
_HOSTNAME = re.compile(r"^[a-zA-Z0-9.-]{1,255}$")
_TAG = re.compile(r"^[a-zA-Z0-9_:\-]{1,255}$")


def ssh_fingerprint(public_key: str) -> str:
    """DO's fingerprint: MD5 of the base64-decoded key blob, as colon-separated hex pairs."""
    parts = public_key.strip().split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key")
    blob = base64.b64decode(parts[1], validate=True)
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    status: int | None = None  # filled in once answered; None if the answer never came


@dataclass
class FakeDroplet:
    id: int
    name: str
    region: str
    size: str
    image: dict[str, Any]
    tags: list[str]
    ssh_keys: list[int | str]
    user_data: str | None
    status: str = "new"
    gets: int = 0
    public_ipv4: str | None = None
    private_ipv4: str = "10.110.0.2"
    created_at: str = ""
    created_monotonic: float = field(default_factory=time.monotonic)


@dataclass
class FakeKey:
    id: int
    name: str
    public_key: str
    fingerprint: str


@dataclass
class _Fault:
    method: str
    prefix: str
    remaining: int
    status: int | None = None
    body: Any = None
    headers: dict[str, str] | None = None
    delay: float = 0.0
    after: bool = False  # delay the answer after the work is done (the "lost response" case)

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and path.startswith(self.prefix)


class FakeDigitalOcean:
    """Fake DigitalOcean API v2. See the module docstring."""

    def __init__(
        self,
        token: str = FAKE_TOKEN,
        *,
        active_after_gets: int | None = 2,
        active_after_seconds: float | None = None,
        public_ipv4: str = "127.0.0.1",
        max_per_page: int = 200,
        droplet_limit: int = 25,
    ) -> None:
        self.token = token
        self.active_after_gets = active_after_gets
        self.active_after_seconds = active_after_seconds
        self.public_ipv4 = public_ipv4
        self.max_per_page = max_per_page  # DO caps per_page at 200; lower it to force paging
        self.stuck_in_new = False
        self.account: dict[str, Any] = {
            "droplet_limit": droplet_limit, "floating_ip_limit": 3, "volume_limit": 100,
            "email": "ops@example.com", "email_verified": True,
            "uuid": "3f7e1b2c9d4a5e6f708192a3b4c5d6e7f8091a2b", "status": "active",
            "status_message": "",
            "team": {"uuid": "5df3e3004a7f-4b6c-9e1d-8f2a3b4c5d6e", "name": "My Team"},
        }
        self.requests: list[RecordedRequest] = []
        self._droplets: dict[int, FakeDroplet] = {}
        self._keys: dict[int, FakeKey] = {}
        self._faults: list[_Fault] = []
        self._ids = itertools.count(468100001)
        self._key_ids = itertools.count(41250001)
        self._action_ids = itertools.count(2234000001)
        self._lock = threading.RLock()  # tests mutate from their thread in sync mode
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._closing: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def endpoint(self) -> str:
        """The value python-digitalocean wants: ends in ``/v2/``, trailing slash included."""
        return f"{self.base_url}/v2/"

    async def start(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown: delayed handlers are woken by _closing, nothing else lingers.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDigitalOcean:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __enter__(self) -> FakeDigitalOcean:
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve_forever, args=(loop, ready), name="fake-do", daemon=True
        )
        self._thread.start()
        ready.wait()
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    @staticmethod
    def _serve_forever(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    @contextmanager
    def set_env(self) -> Iterator[None]:
        """Point ``DIGITALOCEAN_END_POINT`` at the fake for the duration (restored after)."""
        old = os.environ.get(ENDPOINT_ENV)
        os.environ[ENDPOINT_ENV] = self.endpoint
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(ENDPOINT_ENV, None)
            else:
                os.environ[ENDPOINT_ENV] = old

    # ------------------------------------------------------------------ test controls

    def fail_next(
        self,
        method: str,
        path_prefix: str,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (DO-like body/headers).

        ``method`` may be ``"*"``. ``path_prefix`` is matched against the path without the query,
        e.g. ``"/v2/droplets"`` (the library sends ``/v2/droplets/``). For 429 the DO headers
        ``ratelimit-limit``, ``ratelimit-remaining: 0``, ``ratelimit-reset`` (epoch seconds) and
        ``retry-after`` (seconds) are added unless ``headers`` sets them.
        """
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_prefix, count, status=status,
                                       body=body, headers=headers))

    def delay_next(
        self,
        method: str,
        path_prefix: str,
        seconds: float,
        count: int = 1,
        *,
        after: bool = False,
    ) -> None:
        """Hold the next ``count`` matching requests for ``seconds`` (to trip client timeouts).

        ``after=False`` waits before doing anything; ``after=True`` does the work first and then
        holds the answer, like a server that created the droplet but whose response was lost.
        """
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_prefix, count, delay=seconds,
                                       after=after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def count(self, method: str, path_prefix: str = "/") -> int:
        """How many recorded requests match (``method`` may be ``"*"``)."""
        with self._lock:
            return sum(1 for r in self.requests
                       if method.upper() in ("*", r.method) and r.path.startswith(path_prefix))

    @property
    def droplets(self) -> dict[int, FakeDroplet]:
        """Droplets by id (live objects: tests may change ``status`` or ``public_ipv4``)."""
        with self._lock:
            return dict(self._droplets)

    @property
    def keys(self) -> list[FakeKey]:
        with self._lock:
            return list(self._keys.values())

    def add_droplet(
        self,
        name: str,
        *,
        region: str = "fra1",
        size: str = "s-1vcpu-1gb",
        image: str = "ubuntu-24-04-x64",
        tags: list[str] | None = None,
        status: str = "active",
    ) -> FakeDroplet:
        """Seed a droplet directly (no request recorded)."""
        with self._lock:
            droplet = self._new_droplet(name, region, size, _image(image) or IMAGES[0],
                                        tags or [], [], None)
            droplet.status = status
            if status != "new":
                droplet.public_ipv4 = self.public_ipv4
            return droplet

    def add_key(self, name: str, public_key: str) -> FakeKey:
        with self._lock:
            key = FakeKey(next(self._key_ids), name, public_key.strip(),
                          ssh_fingerprint(public_key))
            self._keys[key.id] = key
            return key

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        record = RecordedRequest(request.method, request.path, dict(request.query), body)
        with self._lock:
            self.requests.append(record)
            fault = self._take_fault(request.method, request.path)
        if fault is not None and fault.delay and not fault.after:
            await self._sleep(fault.delay)
        if fault is not None and fault.status is not None:
            response = self._fault_response(fault)
        elif request.headers.get("Authorization") != f"Bearer {self.token}":
            response = _error(401)
        else:
            with self._lock:
                response = self._route(request.method, request.path, request.query, body)
        if fault is not None and fault.delay and fault.after:
            await self._sleep(fault.delay)
        response.headers.setdefault("ratelimit-limit", "5000")
        response.headers.setdefault("ratelimit-remaining", "4999")
        response.headers.setdefault("ratelimit-reset", str(int(time.time()) + 60))
        record.status = response.status
        return response

    async def _sleep(self, seconds: float) -> None:
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            pass

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _fault_response(self, fault: _Fault) -> web.Response:
        assert fault.status is not None
        headers: dict[str, str] = {}
        if fault.status == 429:
            reset = int(time.time()) + 1
            headers = {"ratelimit-limit": "5000", "ratelimit-remaining": "0",
                       "ratelimit-reset": str(reset), "retry-after": "1"}
        for name, value in (fault.headers or {}).items():
            headers[name.lower()] = value
        if fault.body is None:
            return _error(fault.status, headers=headers)
        text = fault.body if isinstance(fault.body, str) else json.dumps(fault.body)
        ctype = "application/json" if not isinstance(fault.body, str) else "text/plain"
        return web.Response(status=fault.status, text=text, content_type=ctype,
                            headers=headers)

    def _route(self, method: str, path: str, query: Any, body: Any) -> web.Response:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "v2":
            return _error(404)
        parts = parts[1:]
        q = {k: query[k] for k in query}
        match method, parts:
            case "GET", ["account"]:
                return _json({"account": self.account})
            case "GET", ["regions"]:
                return self._page(path, q, "regions", REGIONS)
            case "GET", ["sizes"]:
                return self._page(path, q, "sizes", SIZES)
            case "GET", ["images"]:
                images = [i for i in IMAGES
                          if q.get("type") in (None, "distribution")
                          and q.get("private") != "true"]
                return self._page(path, q, "images", images)
            case "GET", ["account", "keys"]:
                return self._page(path, q, "ssh_keys", [_key_json(k) for k in self._keys.values()])
            case "POST", ["account", "keys"]:
                return self._create_key(body)
            case "GET", ["account", "keys", ident]:
                key = self._find_key(ident)
                return _json({"ssh_key": _key_json(key)}) if key else _error(404)
            case "DELETE", ["account", "keys", ident]:
                key = self._find_key(ident)
                if key is None:
                    return _error(404)
                del self._keys[key.id]
                return web.Response(status=204)
            case "GET", ["droplets"]:
                found = self._filter_droplets(q)
                return self._page(path, q, "droplets", [self._droplet_json(d) for d in found])
            case "POST", ["droplets"]:
                return self._create_droplet(body)
            case "DELETE", ["droplets"]:
                if "tag_name" not in q:
                    return _error(422, "tag_name is required")  # never "delete everything"
                for d in self._filter_droplets(q):
                    del self._droplets[d.id]
                return web.Response(status=204)
            case "GET", ["droplets", ident] if ident.isdigit():
                droplet = self._droplets.get(int(ident))
                if droplet is None:
                    return _error(404)
                droplet.gets += 1
                self._maybe_activate(droplet)
                return _json({"droplet": self._droplet_json(droplet)})
            case "DELETE", ["droplets", ident] if ident.isdigit():
                if self._droplets.pop(int(ident), None) is None:
                    return _error(404)
                return web.Response(status=204)
        return _error(404)

    def _page(self, path: str, q: dict[str, str], key: str, items: list[Any]) -> web.Response:
        """DO paging: ``links.pages`` with absolute first/prev/next/last URLs, ``meta.total``."""
        try:
            page = max(1, int(q.get("page", "1")))
            per_page = min(max(1, int(q.get("per_page", "20"))), self.max_per_page)
        except ValueError:
            return _error(400, "page and per_page must be integers")
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        extra = {k: v for k, v in q.items() if k not in ("page", "per_page")}

        def link(n: int) -> str:
            return f"{self.base_url}{path.rstrip('/')}?" + urlencode(
                {**extra, "page": n, "per_page": per_page})

        pages: dict[str, str] = {}
        if page > 1:
            pages.update(first=link(1), prev=link(page - 1))
        if page < last:
            pages.update(next=link(page + 1), last=link(last))
        links: dict[str, Any] = {"pages": pages} if pages else {}
        return _json({key: chunk, "links": links, "meta": {"total": len(items)}})

    def _create_key(self, body: Any) -> web.Response:
        if not isinstance(body, dict):
            return _error(400, "Request body must be a JSON object")
        name, public_key = body.get("name"), body.get("public_key")
        if not name:
            return _error(422, "Name can't be blank")
        try:
            fingerprint = ssh_fingerprint(str(public_key or ""))
        except (ValueError, binascii.Error):
            return _error(422, "Key invalid, key should be of the format `type key [comment]`")
        if any(k.fingerprint == fingerprint for k in self._keys.values()):
            return _error(422, "SSH Key is already in use on your account")
        key = FakeKey(next(self._key_ids), str(name), str(public_key).strip(), fingerprint)
        self._keys[key.id] = key
        return _json({"ssh_key": _key_json(key)}, status=201)

    def _find_key(self, ident: str) -> FakeKey | None:
        if ident.isdigit():
            return self._keys.get(int(ident))
        return next((k for k in self._keys.values() if k.fingerprint == ident), None)

    def _create_droplet(self, body: Any) -> web.Response:
        if not isinstance(body, dict):
            return _error(400, "Request body must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not _HOSTNAME.match(name):
            return _error(422, "Only valid hostname characters are allowed. "
                               "(a-z, A-Z, 0-9, . and -)")
        region = next((r for r in REGIONS if r["slug"] == body.get("region")), None)
        if region is None:
            return _error(422, "You specified an invalid region for Droplet creation.")
        if not region["available"]:
            return _error(422, "Region is not available")
        if not any(s["slug"] == body.get("size") for s in SIZES):
            return _error(422, "You specified an invalid size for Droplet creation.")
        image = _image(body.get("image"))
        if image is None:
            return _error(422, "You specified an invalid image for Droplet creation.")
        if body["size"] not in region["sizes"]:
            return _error(422, "Size is not available in this region.")
        ssh_keys = body.get("ssh_keys") or []
        for ref in ssh_keys:
            if self._find_key(str(ref)) is None:
                return _error(422, f"ssh_keys: {ref} is not a valid key id or fingerprint")
        tags = body.get("tags") or []
        for tag in tags:
            if not isinstance(tag, str) or not _TAG.match(tag):
                return _error(422, f"tags: {tag!r} may contain only letters, numbers, "
                                   "colons, dashes and underscores")
        user_data = body.get("user_data")
        if user_data is not None and len(str(user_data).encode()) > 64 * 1024:
            return _error(422, "user_data is limited to 64 KiB")
        if len(self._droplets) >= int(self.account["droplet_limit"]):
            return _error(422, "creating this droplet will exceed your droplet limit")
        droplet = self._new_droplet(name, region["slug"], body["size"], image, list(tags),
                                    list(ssh_keys), user_data)
        action = next(self._action_ids)
        return _json({
            "droplet": self._droplet_json(droplet),
            "links": {"actions": [{
                "id": action, "rel": "create",
                "href": f"{self.base_url}/v2/actions/{action}",
            }]},
        }, status=202)

    def _new_droplet(self, name: str, region: str, size: str, image: dict[str, Any],
                     tags: list[str], ssh_keys: list[int | str],
                     user_data: str | None) -> FakeDroplet:
        droplet_id = next(self._ids)
        droplet = FakeDroplet(
            id=droplet_id, name=name, region=region, size=size, image=image, tags=tags,
            ssh_keys=ssh_keys, user_data=user_data,
            private_ipv4=f"10.110.0.{2 + droplet_id % 250}",
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        self._droplets[droplet_id] = droplet
        return droplet

    def _maybe_activate(self, d: FakeDroplet) -> None:
        if d.status != "new" or self.stuck_in_new:
            return
        by_gets = self.active_after_gets is not None and d.gets >= self.active_after_gets
        by_time = (self.active_after_seconds is not None
                   and time.monotonic() - d.created_monotonic >= self.active_after_seconds)
        if by_gets or by_time:
            d.status = "active"
            d.public_ipv4 = self.public_ipv4

    def _filter_droplets(self, q: dict[str, str]) -> list[FakeDroplet]:
        found = sorted(self._droplets.values(), key=lambda d: d.id)
        if "tag_name" in q:
            found = [d for d in found if q["tag_name"] in d.tags]
        if "name" in q:
            found = [d for d in found if d.name == q["name"]]
        return found

    def _droplet_json(self, d: FakeDroplet) -> dict[str, Any]:
        size = next(s for s in SIZES if s["slug"] == d.size)
        region = next(r for r in REGIONS if r["slug"] == d.region)
        v4: list[dict[str, str]] = []
        if d.status != "new":
            v4.append({"ip_address": d.private_ipv4, "netmask": "255.255.240.0",
                       "gateway": "10.110.0.1", "type": "private"})
            if d.public_ipv4:
                gateway = d.public_ipv4.rsplit(".", 1)[0] + ".1"
                v4.append({"ip_address": d.public_ipv4, "netmask": "255.255.240.0",
                           "gateway": gateway, "type": "public"})
        return {
            "id": d.id, "name": d.name, "memory": size["memory"], "vcpus": size["vcpus"],
            "disk": size["disk"], "locked": d.status == "new", "status": d.status,
            "kernel": None, "created_at": d.created_at, "features": ["droplet_agent"],
            "backup_ids": [], "next_backup_window": None, "snapshot_ids": [],
            "image": d.image, "volume_ids": [], "size": size, "size_slug": d.size,
            "networks": {"v4": v4, "v6": []}, "region": region, "tags": list(d.tags),
            "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000",
        }


def _image(ref: Any) -> dict[str, Any] | None:
    return next((i for i in IMAGES if ref in (i["slug"], i["id"], str(i["id"]))), None)


def _key_json(k: FakeKey) -> dict[str, Any]:
    return {"id": k.id, "fingerprint": k.fingerprint, "public_key": k.public_key, "name": k.name}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _error(status: int, message: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "id": _ERROR_IDS.get(status, "error"),
        "message": message or _ERROR_MESSAGES.get(status, "Unexpected error"),
        "request_id": str(uuid.uuid4()),
    }
    return web.json_response(body, status=status, headers=headers)
