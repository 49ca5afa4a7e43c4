"""What operations and their callers share: the view of a run, where progress goes, and the
context an operation body gets. The runner that drives them lives in ``jobs.operations``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bot.db.models import ACTIVE_STATES, OpState

# The kinds of operation. They are stored in the database (a retry after a restart finds its
# body by name), so never rename one.
PROVISION_DROPLET = "provision_droplet"
DESTROY_DROPLET = "destroy_droplet"
PUSH_ROUTER_CONFIG = "push_router_config"
INSTALL_ROUTER_PACKAGES = "install_router_packages"
# Destructive kinds: a retry asks for the same confirmation as the first run did.
CONFIRM_AGAIN = frozenset({DESTROY_DROPLET})
# The command that runs each kind again (for bot.actions.action, with the site after it).
RERUN_ACTION = {
    PROVISION_DROPLET: "setup",
    DESTROY_DROPLET: "site destroy",
    PUSH_ROUTER_CONFIG: "router push",
    INSTALL_ROUTER_PACKAGES: "router install",
}


@dataclass(frozen=True)
class OperationView:
    """A snapshot of an operation row, safe to hand to renderers and surfaces."""

    id: int
    kind: str
    site: str | None
    state: OpState
    step: int
    total_steps: int
    message: str
    error: str | None
    chat_id: int | None = None
    message_id: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    requested_by: int | None = None
    owner: str | None = None  # "host:pid" of the process that runs (or ran) it
    heartbeat_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retry_of: int | None = None
    retried_by: int | None = None

    @property
    def done(self) -> bool:
        return self.state not in ACTIVE_STATES

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape of ``camreach op list|show --json`` (keys in the README)."""
        def at(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "id": self.id, "kind": self.kind, "site": self.site, "state": self.state.value,
            "step": self.step, "total_steps": self.total_steps, "message": self.message,
            "error": self.error, "owner": self.owner, "heartbeat_at": at(self.heartbeat_at),
            "created_at": at(self.created_at), "started_at": at(self.started_at),
            "finished_at": at(self.finished_at), "retry_of": self.retry_of,
            "retried_by": self.retried_by,
        }

    @property
    def retryable(self) -> bool:
        """Interrupted and not yet run again: a Retry may start it once more."""
        return self.state is OpState.INTERRUPTED and self.retried_by is None

    @property
    def why_not_retryable(self) -> str:
        """What to tell someone who asks to retry an operation that is not ``retryable``."""
        if self.retried_by is not None:
            return f"Operation #{self.id} was already run again as #{self.retried_by}."
        if not self.done:
            return f"Operation #{self.id} is still running."
        return (f"Operation #{self.id} {self.state.value}; only an interrupted operation can "
                "be retried.")


class ProgressSink(Protocol):
    """Where progress goes: a Telegram message edited in place, or the terminal."""

    async def update(self, view: OperationView) -> None: ...


Report = Callable[..., Awaitable[OperationView]]


class OpContext:
    """What a running operation body gets: its params and a way to report steps.

    ``remember`` stores a value in the row's params at once, so that a later retry of an
    interrupted run knows what this one had reached (a DigitalOcean id, a router push id).
    """

    def __init__(self, view: OperationView, report: Report,
                 remember: Callable[[str, Any], Awaitable[None]]) -> None:
        self._view = view
        self._report = report
        self._remember = remember
        self.params = dict(view.params)

    @property
    def op_id(self) -> int:
        return self._view.id

    @property
    def site(self) -> str | None:
        return self._view.site

    @property
    def retry_of(self) -> int | None:
        return self._view.retry_of

    async def step(self, number: int, total: int, message: str) -> None:
        self._view = await self._report(self._view.id, step=number, total_steps=total,
                                        message=message)

    async def note(self, message: str) -> None:
        """Update the current step's text without moving the bar (e.g. a wait's progress)."""
        await self.step(self._view.step, self._view.total_steps, message)

    async def remember(self, key: str, value: Any) -> None:
        self.params[key] = value
        await self._remember(key, value)


OperationFn = Callable[[OpContext], Awaitable[str]]
