"""The core facade: every operation camreach can do, for the CLI and the bot alike."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.actions import action
from bot.adapters.digitalocean import AccountInfo, DigitalOceanClient, RegionInfo, SizeInfo
from bot.crypto import SecretBox
from bot.errors import CamreachError, NotFound, OperatorError, ValidationFailed
from bot.health.config import HealthConfig
from bot.health.metrics import HealthMetrics
from bot.health.model import HourRow, SiteHealth
from bot.health.service import Checked, HealthService, parse_duration
from bot.health.store import PendingAlert
from bot.logs import REDACTOR
from bot.operations import CONFIRM_AGAIN, OperationView, ProgressSink
from bot.render.isapi import DeviceInfo
from bot.router.detect import Detection
from bot.router.modem_status import ModemStatus
from bot.router.packages import FeedConfig
from bot.router.push_plan import PushPlan
from bot.router.service import FirstContact, RouterService
from bot.services import identity, setup_flow, sites
from bot.services.audit import Actor, AuditTrail
from bot.services.cameras import (
    CameraService,
    CameraView,
    Channel,
    DailyCamera,
    Picture,
    password_secret,
    refused_secret,
)
from bot.services.conversations import ConversationStore, Key
from bot.services.discovery import DiscoveredDevice, discover
from bot.services.droplets import DropletService, DropletView, Timing
from bot.services.peers import NewPeer, PeerService, PeerStatus
from bot.services.secrets import SecretStore
from bot.services.setup_flow import SetupProgress
from bot.settings import Settings
from bot.site import SiteSpec

if TYPE_CHECKING:
    from jobs.operations import OperationRunner

log = logging.getLogger(__name__)

# Types handlers may use without reaching into adapters.
__all__ = ["AccountInfo", "Checked", "Core", "DropletView", "PendingAlert", "Picture",
           "SiteHealth", "SizeInfo"]


class Core:
    """Holds the engine, secrets and operation runner; built once by the composition root."""

    def __init__(self, settings: Settings, engine: AsyncEngine, box: SecretBox) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self.secrets = SecretStore(self.sessions, box)
        self.audit = AuditTrail(self.sessions)
        self.conversations = ConversationStore(self.sessions)
        env_token = settings.digitalocean_token
        self.droplets = DropletService(
            self.sessions, self.secrets, env_token.get_secret_value() if env_token else None
        )
        self.peers = PeerService(self.sessions, self.secrets, self.droplets)
        feeds = FeedConfig.from_settings(settings.camreach_openwrt_feeds,
                                         settings.camreach_openwrt_feed_key)
        self.router = RouterService(self.sessions, self.secrets, self.droplets, feeds=feeds)
        self.cameras = CameraService(self.sessions, self.secrets, self.droplets)
        self.metrics = HealthMetrics()
        from bot.health.probes import SiteProber

        self.prober = SiteProber(self.droplets, self.router, self.cameras)
        self.health_service = HealthService(
            self.sessions, HealthConfig.from_settings(settings), self.prober,
            lease_seconds=settings.camreach_lease_seconds, metrics=self.metrics)
        self._runner: OperationRunner | None = None

    def attach_runner(self, runner: OperationRunner) -> None:
        """Called once by the composition root (:mod:`bot.compose`)."""
        self._runner = runner
        runner.on_finished = self._audit_finished

    @property
    def operations(self) -> OperationRunner:
        assert self._runner is not None, "open the core with bot.compose.open_core"
        return self._runner

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True) -> Core:
        """The composition root's core (kept here so callers need not know where it is)."""
        from bot.compose import open_core

        return await open_core(settings, migrate=migrate)

    # -- for surfaces --------------------------------------------------------------------
    def admin_ids(self) -> frozenset[int]:
        return self.settings.admins

    async def record(self, actor: Actor, action: str, outcome: str, *,
                     site: str | None = None, detail: str | None = None) -> None:
        """An entry in the audit trail (commands received, refusals)."""
        await self.audit.record(actor, action, outcome, site=site, detail=detail)

    async def close(self) -> None:
        await self.operations.shutdown()
        await self.prober.close()
        await self.router.close()
        await self.engine.dispose()

    # -- sites -------------------------------------------------------------------------
    async def apply_site(
        self, spec: SiteSpec, actor: Actor, *, dry_run: bool = False
    ) -> sites.ApplyResult:
        result = await sites.apply_site(self.sessions, spec, dry_run=dry_run)
        if not dry_run:
            await self.audit.record(
                actor, "site.apply", result.action, site=spec.name,
                detail="; ".join(result.changes)[:2000] or None,
            )
        return result

    async def check_droplet_choice(self, spec: SiteSpec) -> None:
        """Before an apply that will provision stores anything: DigitalOcean must sell the
        site's droplet (region, size, image) now, unless the site has its droplet already.
        ValidationFailed names each wrong field (``droplet.size``, ...) and, for a size the
        region lacks, the regions that offer it."""
        await self.droplets.check_choice(spec.name, spec.droplet)

    async def statuses(self, name: str | None = None) -> list[sites.SiteStatus]:
        return await sites.site_statuses(self.sessions, name)

    async def site_names(self) -> list[str]:
        return await sites.list_site_names(self.sessions)

    async def site_spec(self, name: str) -> SiteSpec:
        return await sites.get_spec(self.sessions, name)

    # -- droplets ----------------------------------------------------------------------
    def set_timing(self, timing: Timing) -> None:
        self.droplets.timing = timing

    async def has_do_token(self) -> bool:
        return await self.droplets.has_token()

    async def set_do_token(self, token: str, actor: Actor) -> AccountInfo:
        """Check a token typed by the user with DigitalOcean, then store it encrypted."""
        REDACTOR.add(token.strip())
        account = await DigitalOceanClient(token).check_token()
        await self.secrets.put(identity.DO_TOKEN_SECRET, token.strip())
        await self.audit.record(actor, "digitalocean.token", "stored")
        return account

    async def start_operation(
        self, kind: str, site: str | None, actor: Actor, sink: ProgressSink | None = None, *,
        params: dict[str, Any] | None = None, chat_id: int | None = None,
        message_id: int | None = None, retry_of: int | None = None,
    ) -> OperationView:
        """Start a durable operation and note who asked for it (its end is audited too)."""
        view = await self.operations.start(kind, site=site, params=params, sink=sink,
                                           requested_by=actor.user_id, chat_id=chat_id,
                                           message_id=message_id, retry_of=retry_of)
        await self.audit.record(actor, kind, "started", site=site, detail=f"operation #{view.id}")
        return view

    async def provision(
        self, site: str, actor: Actor, sink: ProgressSink | None = None,
        chat_id: int | None = None, message_id: int | None = None,
    ) -> OperationView:
        return await self.start_operation("provision_droplet", site, actor, sink,
                                          chat_id=chat_id, message_id=message_id)

    async def destroy_droplet(
        self, site: str, actor: Actor, sink: ProgressSink | None = None,
        chat_id: int | None = None, message_id: int | None = None,
    ) -> OperationView:
        return await self.start_operation("destroy_droplet", site, actor, sink,
                                          chat_id=chat_id, message_id=message_id)

    async def _audit_finished(self, view: OperationView) -> None:
        await self.audit.record(
            Actor(view.requested_by, source="operation"), view.kind, view.state.value,
            site=view.site, detail=f"operation #{view.id}: {view.error or view.message}"[:2000],
        )

    # -- Telegram conversations kept across restarts ---------------------------------------
    async def conversation_states(self, handler: str) -> dict[Key, Any]:
        return await self.conversations.states(handler)

    async def save_conversation_state(self, handler: str, key: Key, state: Any | None) -> None:
        await self.conversations.set_state(handler, key, state)

    async def flow_data(self) -> dict[int, dict[str, Any]]:
        return await self.conversations.flow_data()

    async def save_flow_data(self, user_id: int, data: dict[str, Any] | None) -> None:
        await self.conversations.set_flow_data(user_id, data)

    # -- operations ------------------------------------------------------------------------
    async def operation(self, op_id: int) -> OperationView:
        return await self.operations.get(op_id)

    async def list_operations(self, site: str | None = None, *, limit: int = 50
                              ) -> list[OperationView]:
        if site is not None:
            await self.site_spec(site)  # a clear "no such site" rather than an empty list
        return await self.operations.list_views(site=site, limit=limit)

    async def interrupted_operations(self, site: str) -> list[OperationView]:
        """Runs of ``site`` that were interrupted and not yet run again (oldest first)."""
        site_id_views = await self.operations.list_views(site=site, retryable_only=True)
        return sorted(site_id_views, key=lambda v: v.id)

    async def expire_stale_operations(self) -> list[OperationView]:
        """Mark operations whose process is gone as interrupted (never a live one)."""
        return await self.operations.expire_stale()

    async def wait_operation(self, op_id: int) -> OperationView:
        return await self.operations.wait(op_id)

    async def retry_operation(
        self, op_id: int, actor: Actor, sink: ProgressSink | None = None, *,
        chat_id: int | None = None, message_id: int | None = None,
    ) -> OperationView:
        """Run interrupted operation ``op_id`` again, once; refused if it is not interrupted.
        A destructive kind is never retried by this shortcut: it asks its confirmation again
        and starts with ``start_operation(..., retry_of=op_id)``."""
        old = await self.operations.get(op_id)
        if old.kind in CONFIRM_AGAIN:
            raise OperatorError(f"Operation #{op_id} ({old.kind.replace('_', ' ')}) deletes "
                                "something: confirm it again to retry it.")
        view = await self.operations.retry(op_id, requested_by=actor.user_id, sink=sink,
                                           chat_id=chat_id, message_id=message_id)
        await self.audit.record(actor, view.kind, "retried", site=view.site,
                                detail=f"operation #{op_id} as #{view.id}")
        return view

    async def describe_droplet(self, site: str) -> DropletView | None:
        return await self.droplets.view(site)

    async def droplet_sizes(self) -> list[SizeInfo]:
        return await (await self.droplets.client()).list_sizes()

    async def droplet_regions(self, size: str) -> list[RegionInfo]:
        return await (await self.droplets.client()).available_regions_for(size)

    async def monthly_price(self, size: str) -> float:
        return await (await self.droplets.client()).monthly_price(size)

    # -- VPN peers -----------------------------------------------------------------------
    async def add_peer(
        self, site: str, name: str, actor: Actor, *, dns: str | None = None
    ) -> NewPeer:
        try:
            peer = await self.peers.add(site, name, dns=dns)
        except CamreachError as exc:
            await self.audit.record(actor, "peer.add", "failed", site=site,
                                    detail=f"{name}: {exc.user_message}")
            raise
        await self.audit.record(actor, "peer.add", "ok", site=site,
                                detail=f"{name} {peer.address}")
        return peer

    async def list_peers(self, site: str) -> list[PeerStatus]:
        return await self.peers.list(site)

    async def remove_peer(self, site: str, name: str, actor: Actor) -> None:
        try:
            await self.peers.remove(site, name)
        except CamreachError as exc:
            await self.audit.record(actor, "peer.remove", "failed", site=site,
                                    detail=f"{name}: {exc.user_message}")
            raise
        await self.audit.record(actor, "peer.remove", "ok", site=site, detail=name)

    async def choose_droplet(self, site: str, region: str, size: str, actor: Actor) -> None:
        """Store the region and size picked in /setup in the site's spec."""
        spec = await self.site_spec(site)
        doc = spec.to_json()
        doc["droplet"] = {**doc["droplet"], "region": region, "size": size}
        await self.apply_site(SiteSpec.model_validate(doc), actor)

    # -- the router -----------------------------------------------------------------------
    async def router_first_contact(self, site: str, actor: Actor, *,
                                   password_login: bool = False) -> FirstContact:
        """Key installed, then dropbear's password login off (``password_login``: on)."""
        result = await self.router.first_contact(site, password_login=password_login)
        details = ["host key pinned"] if result.pinned_now else []
        if result.password_changed:
            details.append(f"password login {'on' if result.password_login else 'off'}")
        await self.audit.record(actor, "router.connect", "ok", site=site,
                                detail=", ".join(details) or None)
        return result

    async def router_forget_key(self, site: str, actor: Actor) -> bool:
        """Forget the router's pinned SSH host key, on purpose (a reflashed or replaced
        router); the next ``router connect`` pins afresh. False: nothing was pinned."""
        await self.site_spec(site)
        had = await self.router.forget_host_key(site)
        await self.audit.record(actor, "router.forget-key", "ok" if had else "nothing pinned",
                                site=site)
        return had

    async def router_detect(self, site: str, actor: Actor) -> Detection:
        found = await self.router.detect(site)
        await self.audit.record(actor, "router.detect", "ok", site=site,
                                detail=found.modem.model if found.modem else "no modem")
        return found

    async def plan_router_push(self, site: str) -> PushPlan:
        return await self.router.plan_push(site)

    async def push_router(
        self, site: str, actor: Actor, expect: str, sink: ProgressSink | None = None, *,
        confirm_via: str = "tunnel", chat_id: int | None = None, message_id: int | None = None,
    ) -> OperationView:
        """Push exactly the plan the user saw (``expect`` is its fingerprint)."""
        return await self.start_operation(
            "push_router_config", site, actor, sink,
            params={"expect": expect, "confirm_via": confirm_via},
            chat_id=chat_id, message_id=message_id)

    async def install_router_packages(
        self, site: str, actor: Actor, sink: ProgressSink | None = None, *,
        chat_id: int | None = None, message_id: int | None = None,
    ) -> OperationView:
        return await self.start_operation("install_router_packages", site, actor, sink,
                                          chat_id=chat_id, message_id=message_id)

    async def modem_status(self, site: str) -> ModemStatus:
        return await self.router.modem_status(site)

    # -- cameras ------------------------------------------------------------------------------
    async def snapshots(self, site: str, camera: str | None = None,
                        channel: Channel = "main") -> list[Picture]:
        """Fresh pictures of one camera or all of the site's, within 20 s or a clear error."""
        return await self.cameras.snapshots(site, camera, channel)

    async def daily_cameras(self) -> list[DailyCamera]:
        return await self.cameras.daily()

    async def set_daily_snapshot(self, site: str, camera: str, at: str | None,
                                 actor: Actor) -> None:
        """``at`` "HH:MM" (the site's time) or None for off; kept in the site's spec."""
        doc = (await self.site_spec(site)).to_json()
        cam = next((c for c in doc.get("cameras", []) if c["name"] == camera), None)
        if cam is None:
            raise NotFound(f"{site} has no camera named {camera!r}.")
        cam["daily_snapshot"] = at
        try:
            spec = SiteSpec.model_validate(doc)
        except ValueError:
            raise ValidationFailed(f"{at!r} is not a time of day: give HH:MM, e.g. 08:00, "
                                   "or off.") from None
        await self.apply_site(spec, actor)

    async def camera_views(self, site: str) -> list[CameraView]:
        return await self.cameras.views(site)

    async def add_camera(self, site: str, camera: dict[str, Any], actor: Actor) -> None:
        """Add (or replace) a camera in the site's spec; the spec stays the source of truth."""
        doc = (await self.site_spec(site)).to_json()
        doc["cameras"] = [c for c in doc.get("cameras", []) if c["name"] != camera["name"]]
        doc["cameras"].append(camera)
        await self.apply_site(SiteSpec.model_validate(doc), actor)

    async def remove_camera(self, site: str, name: str, actor: Actor) -> None:
        doc = (await self.site_spec(site)).to_json()
        kept = [c for c in doc.get("cameras", []) if c["name"] != name]
        if len(kept) == len(doc.get("cameras", [])):
            raise NotFound(f"{site} has no camera named {name!r}.")
        doc["cameras"] = kept
        await self.apply_site(SiteSpec.model_validate(doc), actor)
        for secret in (password_secret(site, name), refused_secret(site, name)):
            await self.secrets.delete(secret)

    async def set_camera_password(self, site: str, name: str, password: str,
                                  actor: Actor) -> None:
        REDACTOR.add(password)
        await self.cameras.set_password(site, name, password)
        await self.audit.record(actor, "camera.password", "stored", site=site, detail=name)

    async def add_camera_checked(self, site: str, name: str, host: str, user: str,
                                 password: str, actor: Actor, *, port: int = 80) -> DeviceInfo:
        """A camera found on the LAN: log in once (nothing is stored when that fails), then
        add it with its password stored encrypted and what it says it is."""
        REDACTOR.add(password)
        via = "droplet" if await self.describe_droplet(site) is not None else "direct"
        info = await self.cameras.try_login(site, name, host, port, user, password, via)
        await self.add_camera(site, {"name": name, "host": host, "port": port, "user": user,
                                     "via": via}, actor)
        await self.set_camera_password(site, name, password, actor)
        await self.cameras.record_info(site, name, info)
        return info

    async def discover_cameras(self, site: str) -> list[DiscoveredDevice]:
        """What answers on the site's LAN (through its router): address, MAC, vendor, host
        name, whether it speaks HIKVision ISAPI, and which camera of the site it is."""
        return await discover(self.sessions, self.router, self.droplets, site)

    # -- the guided /setup ---------------------------------------------------------------------
    async def create_site(self, name: str, actor: Actor) -> SetupProgress:
        """A new site from its name alone (the defaults of examples/site.yaml)."""
        if name in await self.site_names():
            raise ValidationFailed(f"A site named {name} exists already: pick it, or give "
                                   "another name.")
        await self.apply_site(setup_flow.validate(setup_flow.new_site_doc(name)), actor)
        return await self.setup_progress(name)

    async def setup_progress(self, site: str) -> SetupProgress:
        """Which steps of /setup are done for ``site`` (from the database)."""
        return await setup_flow.progress(self.sessions, site)

    async def set_router_host(self, site: str, host: str, actor: Actor) -> None:
        doc = (await self.site_spec(site)).to_json()
        await self.apply_site(setup_flow.validate(setup_flow.router_host_doc(doc, host)), actor)
        try:
            await self.sync_router_lan(site)
        except CamreachError as exc:  # the review syncs again before the push
            log.info("site %s: LAN not yet routed on the droplet: %s", site, exc.user_message)

    async def sync_router_lan(self, site: str) -> bool:
        """The droplet routes the site's current LAN to the router (it may have changed in
        /setup after the droplet was made). True when the droplet was changed."""
        return await self.droplets.sync_router_lan(site)

    async def router_connect_password(self, site: str, password: str,
                                      actor: Actor) -> FirstContact:
        """First contact with a root password typed in chat: used for this login only."""
        REDACTOR.add(password)
        result = await self.router.first_contact(site, password=password)
        await self.audit.record(actor, "router.connect", "ok", site=site, detail="from chat")
        return result

    async def set_modem(self, site: str, apn: str, actor: Actor, *,
                        pin: str | None = None) -> None:
        """The APN (and a SIM PIN, stored encrypted) chosen in /setup."""
        doc = (await self.site_spec(site)).to_json()
        spec = setup_flow.validate(setup_flow.modem_doc(doc, apn, pin=pin is not None))
        if pin is not None:
            REDACTOR.add(pin)
            await self.secrets.put(setup_flow.modem_pin_secret(site), pin)
        else:  # no PIN now: an old one must not be sent (wrong PINs lock the SIM)
            await self.secrets.delete(setup_flow.modem_pin_secret(site))
        await self.apply_site(spec, actor)

    async def forget_site(self, site: str, actor: Actor) -> None:
        """Delete a site that exists only in the database (no droplet): a /setup cancelled
        early leaves nothing behind."""
        if await self.describe_droplet(site) is not None:
            raise OperatorError(f"{site} has a droplet: destroy it first "
                                f"({action('droplet destroy', site)}).")
        await sites.delete_site(self.sessions, site)
        await self.secrets.delete(setup_flow.modem_pin_secret(site))
        await self.audit.record(actor, "site.forget", "ok", site=site)

    def setup_undo(self, progress: SetupProgress) -> list[str]:
        return setup_flow.undo_list(progress)

    # -- health ------------------------------------------------------------------------------
    async def health(self, names: list[str] | None = None) -> list[SiteHealth]:
        """Every part of every site (or of ``names``) as last checked: from the database
        alone, so it answers at once whatever the network does."""
        return await self.health_service.sites(names)

    async def check_site(self, name: str) -> Checked:
        """Check every part of one site now (``camreach check``)."""
        return await self.health_service.check(name)

    async def refresh_health(self, names: list[str] | None = None) -> list[SiteHealth]:
        """Sweep these sites now (all when None) and answer with what that found."""
        return await self.health_service.refresh(names)

    async def mute(self, site: str, duration: str | None, actor: Actor) -> str:
        """Alerts of ``site`` recorded, not sent, for ``duration`` ("2h", "30m"; None: until
        unmuted). Returns the end as ISO time ("" for until unmuted)."""
        span = parse_duration(duration) if duration else None
        until = await self.health_service.mute(site, span)
        await self.audit.record(actor, "health.mute", "ok", site=site, detail=duration or "on")
        return until.isoformat() if span is not None else ""

    async def unmute(self, site: str, actor: Actor) -> None:
        await self.health_service.unmute(site)
        await self.audit.record(actor, "health.unmute", "ok", site=site)

    async def uptime_hours(self, site: str, days: int = 7) -> list[HourRow]:
        return await self.health_service.hours(site, days)

    async def uptime_chart(self, site: str) -> bytes:
        """A PNG of the last 24 h (signal, tunnel), drawn in a thread: plotting is CPU work."""
        from bot.db.types import utcnow
        from bot.render.uptime_chart import uptime_chart_png

        rows = await self.health_service.hours(site, 1)
        return await asyncio.to_thread(uptime_chart_png, site, rows, utcnow())

    async def sweep_forever(self, stop: asyncio.Event) -> None:
        """Sweep due sites until ``stop`` (the bot by default; ``camreach worker``)."""
        await self.health_service.sweeper().run(stop)

    async def pending_alerts(self) -> list[PendingAlert]:
        """Alerts the sweeps wrote, claimed for sending (only the bot sends them)."""
        return await self.health_service.pending_alerts()

    async def alert_done(self, alert: PendingAlert, *, sent: bool) -> None:
        await self.health_service.alert_done(alert, sent=sent)

    def alert_chats(self, alert: PendingAlert) -> list[int]:
        """Every admin's private chat, CAMREACH_ALERT_CHAT and the site's own alert_chat."""
        chats = sorted(self.settings.admins)
        for extra in (self.settings.camreach_alert_chat, alert.alert_chat):
            if extra is not None and extra not in chats:
                chats.append(extra)
        return chats

    async def export_site(self, name: str) -> str:
        """Site ``name`` as a site file (YAML) that ``site apply`` takes back: ``*_env``
        references only; a secret stored encrypted (typed in chat) gets a variable name."""
        from bot.services.export import export_site

        return await export_site(self.sessions, name)
