"""The site's cameras: pictures and device information over the path the site file names.

A HIKVision camera locks the client's address for about 30 minutes after a few wrong
passwords, so a password the camera refused once is remembered (encrypted, like any secret)
and never sent again, by a snapshot or anything else, until the user gives another one.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bot.actions import action
from bot.adapters.camera import (
    CameraAuthRefused,
    CameraClient,
    CameraTarget,
    Snapshot,
    camera_client,
)
from bot.adapters.ssh import SshConnection
from bot.db.models import Camera, Site
from bot.db.types import utcnow
from bot.envvars import env_value
from bot.errors import AuthRejected, NotFound, Unreachable
from bot.render.isapi import DeviceInfo
from bot.services.droplets import DropletService
from bot.services.secrets import SecretStore
from bot.site import SiteSpec

T = TypeVar("T")
Channel = Literal["main", "sub"]
# Whatever the hops do, the user hears back within this (the 20 s, with margin).
ANSWER_WITHIN = 19.0


@dataclass(frozen=True)
class Picture:
    """One camera's still, with what a caption needs."""

    site: str
    camera: str
    data: bytes
    content_type: str
    taken_at: datetime  # in the site's time zone

    @property
    def caption(self) -> str:
        return f"{self.camera} · {self.site} · {self.taken_at:%Y-%m-%d %H:%M:%S %Z}".strip()


@dataclass(frozen=True)
class CameraView:
    name: str
    host: str
    port: int
    user: str
    kind: str
    via: str
    model: str | None
    serial: str | None
    firmware: str | None
    password: str  # where the password comes from: "password_env NAME", "stored", "none"
    refused: bool  # the current password was refused: it is not sent again
    daily_snapshot: str | None

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "host": self.host, "port": self.port, "user": self.user,
                "kind": self.kind, "via": self.via, "model": self.model, "serial": self.serial,
                "firmware": self.firmware, "password": self.password, "refused": self.refused,
                "daily_snapshot": self.daily_snapshot}


@dataclass(frozen=True)
class DailyCamera:
    """A camera that sends a picture every day at ``at`` ("HH:MM", the site's time)."""

    site: str
    camera: str
    at: str
    timezone: str | None  # None: this host's


class PasswordRefusedBefore(AuthRejected):
    """The camera refused this password earlier; camreach does not send it again."""


def password_secret(site: str, camera: str) -> str:
    return f"camera-password:{site}:{camera}"


def refused_secret(site: str, camera: str) -> str:
    return f"camera-refused:{site}:{camera}"


class CameraService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], secrets: SecretStore,
                 droplets: DropletService) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._droplets = droplets

    # -- reading ---------------------------------------------------------------------------
    async def views(self, site: str) -> list[CameraView]:
        site_row, _ = await self._site(site)
        return [await self._view(site, cam) for cam in site_row.cameras]

    async def _view(self, site: str, cam: Camera) -> CameraView:
        password = await self._password(site, cam)
        refused = password is not None and await self._was_refused(site, cam.name, password)
        source = ("stored" if cam.password_secret else
                  f"password_env {cam.password_env}" if cam.password_env else "none")
        return CameraView(cam.name, cam.host, cam.port, cam.user, cam.kind, cam.via, cam.model,
                          cam.serial, cam.firmware, source, refused, cam.daily_snapshot)

    async def daily(self) -> list[DailyCamera]:
        """Cameras with a daily time, from the mirrored column: asked every 30 s, so it reads
        only those rows and no site spec is validated."""
        async with self._sessions() as s:
            rows = (await s.execute(
                select(Site.name, Site.spec, Camera.name, Camera.daily_snapshot)
                .join(Camera, Camera.site_id == Site.id)
                .where(Camera.daily_snapshot.is_not(None)))).all()
        return [DailyCamera(site, camera, at, (spec or {}).get("timezone"))
                for site, spec, camera, at in rows]

    # -- pictures --------------------------------------------------------------------------
    async def snapshots(self, site: str, camera: str | None = None,
                        channel: Channel = "main") -> list[Picture]:
        """Pictures of one camera, or of all the site's cameras (fetched at once)."""
        site_row, spec = await self._site(site)
        cams = [c for c in site_row.cameras if camera is None or c.name == camera]
        if not cams:
            raise NotFound(_no_camera(site, camera, [c.name for c in site_row.cameras]))
        zone = ZoneInfo(spec.timezone) if spec.timezone else None
        try:
            async with asyncio.timeout(ANSWER_WITHIN), self._clients(site, cams) as clients:
                shots = await asyncio.gather(*(self._shot(site, c, channel) for c in clients))
        except TimeoutError:
            raise Unreachable(
                f"No picture from {site} within {int(ANSWER_WITHIN)} s: the droplet, the "
                "tunnel or the camera did not answer in time. Try again; "
                f"{action('status', site)} shows which part is down.") from None
        now = utcnow().astimezone(zone) if zone else utcnow().astimezone()
        return [Picture(site, c.target.name, shot.data, shot.content_type, now)
                for c, shot in zip(clients, shots, strict=True)]

    async def device_info(self, site: str, camera: str, *,
                          ssh: SshConnection | None = None) -> DeviceInfo:
        """``ssh``: a connection to the site's droplet to reach a ``via: droplet`` camera
        through (the health checks keep one open); without it one is opened for the call."""
        site_row, _ = await self._site(site)
        cam = next((c for c in site_row.cameras if c.name == camera), None)
        if cam is None:
            raise NotFound(_no_camera(site, camera, [c.name for c in site_row.cameras]))
        async with asyncio.timeout(ANSWER_WITHIN), \
                self._clients(site, [cam], ssh=ssh) as (client,):
            info = await self._guarded(site, client, client.device_info())
        async with self._sessions.begin() as s:
            row = await s.get(Camera, cam.id)
            if row is not None:
                row.model, row.serial, row.firmware = (info.model[:128], info.serial[:128],
                                                       info.firmware[:128])
        return info

    async def try_login(self, site: str, name: str, host: str, port: int, user: str,
                        password: str, via: str) -> DeviceInfo:
        """A camera not added yet: its device information with this login, one attempt. A
        refused password is remembered like a stored camera's, and never sent twice."""
        if await self._was_refused(site, name, password):
            raise PasswordRefusedBefore(
                f"Camera {name} refused this password a moment ago; camreach does not send it "
                "again (the camera locks out after a few wrong ones). Send the right one.")
        target = CameraTarget(name=name, host=host, port=port, user=user, password=password,
                              via=_via(via), site=site)
        async with asyncio.timeout(ANSWER_WITHIN), AsyncExitStack() as stack:
            ssh = (await stack.enter_async_context(self._droplets.session(site))
                   if target.via == "droplet" else None)
            client = await stack.enter_async_context(camera_client(target, ssh=ssh))
            return await self._guarded(site, client, client.device_info())

    async def record_info(self, site: str, name: str, info: DeviceInfo) -> None:
        async with self._sessions.begin() as s:
            row = (await s.execute(select(Camera).join(Site).where(
                Site.name == site, Camera.name == name))).scalar_one_or_none()
            if row is not None:
                row.model, row.serial = info.model[:128], info.serial[:128]
                row.firmware = info.firmware[:128]

    async def _shot(self, site: str, client: CameraClient, channel: Channel) -> Snapshot:
        return await self._guarded(site, client, client.snapshot(channel))

    async def _guarded(self, site: str, client: CameraClient, call: Awaitable[T]) -> T:
        """Run one authenticated call; a refusal is remembered so it is never repeated."""
        try:
            return await call
        except CameraAuthRefused:
            if client.target.password is not None:
                await self._secrets.put(refused_secret(site, client.target.name),
                                        client.target.password)
            raise

    @asynccontextmanager
    async def _clients(self, site: str, cams: list[Camera], *, ssh: SshConnection | None = None
                       ) -> AsyncIterator[list[CameraClient]]:
        targets = [await self._target(site, c) for c in cams]
        async with AsyncExitStack() as stack:
            if ssh is None and any(t.via == "droplet" for t in targets):
                ssh = await stack.enter_async_context(self._droplets.session(site))
            clients = [await stack.enter_async_context(
                camera_client(t, ssh=ssh if t.via == "droplet" else None)) for t in targets]
            yield clients

    async def _target(self, site: str, cam: Camera) -> CameraTarget:
        password = await self._password(site, cam)
        if password is not None and await self._was_refused(site, cam.name, password):
            raise PasswordRefusedBefore(
                f"Camera {cam.name} refused this password before, and HIKVision cameras lock "
                "camreach out after a few wrong ones, so camreach does not send it again. Give "
                f"the right one: {action('camera password', cam.name, site)}"
                + (f" (or change {cam.password_env})." if cam.password_env else "."))
        return CameraTarget(name=cam.name, host=cam.host, port=cam.port, user=cam.user,
                            password=password, kind=_kind(cam.kind), via=_via(cam.via),
                            snapshot_url=cam.snapshot_url, site=site)

    async def _password(self, site: str, cam: Camera) -> str | None:
        if cam.password_secret:
            stored = await self._secrets.get(cam.password_secret)
            if stored is not None:
                return stored
        return env_value(cam.password_env) if cam.password_env else None

    async def _was_refused(self, site: str, camera: str, password: str) -> bool:
        refused = await self._secrets.get(refused_secret(site, camera))
        return refused is not None and hmac.compare_digest(refused, password)

    # -- changing --------------------------------------------------------------------------
    async def set_password(self, site: str, camera: str, password: str) -> None:
        """A password typed by the user: stored encrypted; tried on the next call."""
        site_row, _ = await self._site(site)
        cam = next((c for c in site_row.cameras if c.name == camera), None)
        if cam is None:
            raise NotFound(_no_camera(site, camera, [c.name for c in site_row.cameras]))
        name = password_secret(site, camera)
        await self._secrets.put(name, password)
        async with self._sessions.begin() as s:
            row = await s.get(Camera, cam.id)
            if row is not None:
                row.password_secret = name

    async def _site(self, name: str) -> tuple[Site, SiteSpec]:
        async with self._sessions() as s:
            site = (await s.execute(select(Site).where(Site.name == name)
                                    .options(selectinload(Site.cameras)))).scalar_one_or_none()
        if site is None:
            raise NotFound(f"There is no site named {name!r}. {action('site list')} shows them.")
        return site, SiteSpec.model_validate(site.spec)


def _no_camera(site: str, camera: str | None, names: list[str]) -> str:
    if not names:
        return f"{site} has no cameras yet. {action('camera add')} adds one."
    return f"{site} has no camera named {camera!r}; it has {', '.join(names)}."


def _kind(kind: str) -> Literal["hikvision", "generic"]:
    return "generic" if kind == "generic" else "hikvision"


def _via(via: str) -> Literal["droplet", "direct"]:
    return "direct" if via == "direct" else "droplet"
