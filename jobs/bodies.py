"""The bodies of camreach's durable operations, registered by the composition root.

Each is a thin coroutine from the runner's context to a service of the core; the kind names
(in :mod:`bot.operations`) are stored in the database, so never rename one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.operations import (
    DESTROY_DROPLET,
    INSTALL_ROUTER_PACKAGES,
    PROVISION_DROPLET,
    PUSH_ROUTER_CONFIG,
    OpContext,
    OperationFn,
)

if TYPE_CHECKING:
    from bot.core import Core


def _site(ctx: OpContext) -> str:
    assert ctx.site is not None, "this operation runs on a site"
    return ctx.site


def operation_bodies(core: Core) -> dict[str, OperationFn]:
    async def provision(ctx: OpContext) -> str:
        return await core.droplets.provision(ctx, _site(ctx))

    async def destroy(ctx: OpContext) -> str:
        return await core.droplets.destroy(ctx, _site(ctx))

    return {
        PROVISION_DROPLET: provision,
        DESTROY_DROPLET: destroy,
        PUSH_ROUTER_CONFIG: core.router.push_operation,
        INSTALL_ROUTER_PACKAGES: core.router.install_operation,
    }
