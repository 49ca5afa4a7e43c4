"""Database models. Every timestamp is UTC; secrets live only in ``Secret`` (encrypted)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    REAL,
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bot.db.types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Site(Timestamped, Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    # The validated site file as JSON: the desired state; other tables hold the actual state.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)

    droplet: Mapped[Droplet | None] = relationship(back_populates="site", cascade="all")
    router: Mapped[Router | None] = relationship(back_populates="site", cascade="all")
    modem: Mapped[Modem | None] = relationship(back_populates="site", cascade="all")
    cameras: Mapped[list[Camera]] = relationship(
        back_populates="site", cascade="all, delete-orphan", order_by="Camera.name"
    )
    peers: Mapped[list[VpnPeer]] = relationship(
        back_populates="site", cascade="all, delete-orphan", order_by="VpnPeer.id"
    )


class Droplet(Timestamped, Base):
    __tablename__ = "droplets"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), unique=True)
    do_id: Mapped[int | None] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(100))
    region: Mapped[str] = mapped_column(String(32))
    size: Mapped[str] = mapped_column(String(64))
    image: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="planned")
    public_ipv4: Mapped[str | None] = mapped_column(String(45))
    price_monthly: Mapped[float | None] = mapped_column(Float)
    # Pinned on first contact; a different key later is refused.
    ssh_host_key: Mapped[str | None] = mapped_column(Text)

    site: Mapped[Site] = relationship(back_populates="droplet")


class Router(Timestamped, Base):
    __tablename__ = "routers"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=22)
    user: Mapped[str] = mapped_column(String(64), default="root")
    ssh_host_key: Mapped[str | None] = mapped_column(Text)
    key_installed: Mapped[bool] = mapped_column(Boolean, default=False)
    openwrt_release: Mapped[str | None] = mapped_column(String(64))
    board: Mapped[str | None] = mapped_column(String(128))
    arch: Mapped[str | None] = mapped_column(String(64))
    last_push_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    site: Mapped[Site] = relationship(back_populates="router")


class Modem(Timestamped, Base):
    __tablename__ = "modems"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), unique=True)
    protocol: Mapped[str] = mapped_column(String(16), default="auto")
    apn: Mapped[str | None] = mapped_column(String(100))
    usb_id: Mapped[str | None] = mapped_column(String(9))
    model: Mapped[str | None] = mapped_column(String(128))
    mode: Mapped[str | None] = mapped_column(String(32))
    device: Mapped[str | None] = mapped_column(String(64))

    site: Mapped[Site] = relationship(back_populates="modem")


class PeerKind(enum.StrEnum):
    SERVER = "server"
    ROUTER = "router"
    PHONE = "phone"


class VpnPeer(Timestamped, Base):
    __tablename__ = "vpn_peers"
    __table_args__ = (
        UniqueConstraint("site_id", "name", name="uq_vpn_peers_site_name"),
        UniqueConstraint("site_id", "tunnel_address", name="uq_vpn_peers_site_address"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[PeerKind] = mapped_column(
        Enum(PeerKind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    tunnel_address: Mapped[str] = mapped_column(String(45))
    public_key: Mapped[str] = mapped_column(String(64))
    # Name of the Secret holding the private key; None when camreach never saw it.
    private_key_secret: Mapped[str | None] = mapped_column(String(128))

    site: Mapped[Site] = relationship(back_populates="peers")


class Camera(Timestamped, Base):
    __tablename__ = "cameras"
    __table_args__ = (UniqueConstraint("site_id", "name", name="uq_cameras_site_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=80)
    user: Mapped[str] = mapped_column(String(64))
    password_env: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32), default="hikvision")
    via: Mapped[str] = mapped_column(String(16), default="droplet")
    snapshot_url: Mapped[str | None] = mapped_column(String(512))
    daily_snapshot: Mapped[str | None] = mapped_column(String(5))
    # Name of the Secret with a password typed in chat (password_env is the other way).
    password_secret: Mapped[str | None] = mapped_column(String(128))
    # What the camera said about itself (ISAPI deviceInfo).
    model: Mapped[str | None] = mapped_column(String(128))
    serial: Mapped[str | None] = mapped_column(String(128))
    firmware: Mapped[str | None] = mapped_column(String(128))
    # A keyed hash of a password the camera refused: never tried again (HIKVision locks the
    # address after a few failures) until the password changes.
    refused_password: Mapped[str | None] = mapped_column(String(64))
    refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    site: Mapped[Site] = relationship(back_populates="cameras")


class Secret(Timestamped, Base):
    __tablename__ = "secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class ComponentHealth(Base):
    """The latest check of one part of a site, and its alert state machine (JSON, see
    :class:`bot.health.machine.Machine`), which must survive restarts."""

    __tablename__ = "component_health"
    __table_args__ = (UniqueConstraint("site_id", "component", name="uq_component_health_part"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    component: Mapped[str] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    summary: Mapped[str] = mapped_column(Text, default="")
    figures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    machine: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class HealthHour(Base):
    """Per-hour aggregate of one part's checks, for charts; every probe is not kept. The
    biggest table, so its key is the row itself and its numbers are small types."""

    __tablename__ = "health_hours"
    __table_args__ = ({"sqlite_with_rowid": False},)

    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"),
                                         primary_key=True)
    component: Mapped[str] = mapped_column(String(80), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    checks: Mapped[int] = mapped_column(SmallInteger, default=0)
    up: Mapped[int] = mapped_column(SmallInteger, default=0)
    value_min: Mapped[float | None] = mapped_column(REAL)
    value_sum: Mapped[float] = mapped_column(REAL, default=0.0)
    value_count: Mapped[int] = mapped_column(SmallInteger, default=0)


class HealthDay(Base):
    """The hourly figures of one part's finished day, packed in one row (see
    :mod:`bot.health.hourpack`): health_hours keeps the recent days, which sweeps update."""

    __tablename__ = "health_days"
    __table_args__ = ({"sqlite_with_rowid": False},)

    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"),
                                         primary_key=True)
    component: Mapped[str] = mapped_column(String(80), primary_key=True)
    day: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)  # 00:00 UTC
    hours: Mapped[bytes] = mapped_column(LargeBinary)


class SiteSweep(Base):
    """When a site's next check is due, and which process holds it now (a lease, as for
    operations: a dead worker's sites are taken over once its lease runs out)."""

    __tablename__ = "site_sweeps"

    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    next_due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    owner_host: Mapped[str | None] = mapped_column(String(255))
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    owner_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_swept_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sweeps: Mapped[int] = mapped_column(BigInteger, default=0)
    muted_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AlertOutbox(Base):
    """Alerts waiting for the bot: workers write them, exactly one process sends them."""

    __tablename__ = "alert_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # down, recovered, reminder, reboot
    component: Mapped[str] = mapped_column(String(80))
    text: Mapped[str] = mapped_column(Text)
    has_camera: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class Incident(Base):
    """One outage of one part: start, end, cause and the alerts sent (or recorded muted)."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    recovery_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    summary: Mapped[str | None] = mapped_column(Text)
    cause: Mapped[str | None] = mapped_column(Text)
    alerts_sent: Mapped[int] = mapped_column(Integer, default=0)
    muted: Mapped[bool] = mapped_column(Boolean, default=False)


class OpState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


ACTIVE_STATES = (OpState.QUEUED, OpState.RUNNING)
# The database itself keeps one active operation per site, whichever process starts it.
_ACTIVE_SQL = text("state IN ('queued', 'running') AND site_id IS NOT NULL")


class Operation(Base):
    __tablename__ = "operations"
    __table_args__ = (
        Index("uq_operations_active_site", "site_id", unique=True,
              sqlite_where=_ACTIVE_SQL, postgresql_where=_ACTIVE_SQL),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[int | None] = mapped_column(
        ForeignKey("sites.id", ondelete="SET NULL"), index=True
    )
    state: Mapped[OpState] = mapped_column(
        Enum(OpState, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=OpState.QUEUED,
        index=True,
    )
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requested_by: Mapped[int | None] = mapped_column(BigInteger)
    # Where progress is shown: one Telegram message edited in place.
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    # The lease (bot.leases): who runs it, and when that process last said it still does.
    owner_host: Mapped[str | None] = mapped_column(String(255))
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    owner_token: Mapped[str | None] = mapped_column(String(32))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An interrupted run is retried at most once: the retry names it, it names the retry.
    retry_of: Mapped[int | None] = mapped_column(Integer)
    retried_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    username: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), default="telegram")
    action: Mapped[str] = mapped_column(String(128))
    site_name: Mapped[str | None] = mapped_column(String(63))
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)


class ConversationState(Base):
    """Where a Telegram conversation stands (handler name, chat/user key), kept across
    restarts. Never holds a secret: those go to ``Secret`` only."""

    __tablename__ = "conversation_states"
    __table_args__ = (UniqueConstraint("handler", "key", name="uq_conversation_states_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    handler: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))
    state: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class FlowData(Base):
    """The answers so far of a user's flows (menus), as JSON; no secrets."""

    __tablename__ = "flow_data"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
