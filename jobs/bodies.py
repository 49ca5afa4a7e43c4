"""The bodies of camreach's durable operations, registered by the composition root.

Each is a thin coroutine from the runner's context to a service of the core; the kind names
are stored in the database (a retry after a restart finds its body by name), so never rename
one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.operations import OpContext, OperationFn

if TYPE_CHECKING:
    from bot.core import Core

PROVISION_DROPLET = "provision_droplet"
DESTROY_DROPLET = "destroy_droplet"
PUSH_ROUTER_CONFIG = "push_router_config"
INSTALL_ROUTER_PACKAGES = "install_router_packages"

# Destructive kinds: a retry asks for the same confirmation as the first run.
CONFIRM_AGAIN = frozenset({DESTROY_DROPLET})


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
