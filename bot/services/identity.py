"""camreach's own SSH identity and the DigitalOcean token, both kept encrypted."""

from __future__ import annotations

import asyncssh

from bot.adapters.ssh import generate_client_key, public_key_line
from bot.errors import OperatorError
from bot.services.secrets import SecretStore

SSH_KEY_SECRET = "camreach-ssh-key"
DO_TOKEN_SECRET = "digitalocean-token"

NO_TOKEN = (
    "No DigitalOcean token yet. Create one at cloud.digitalocean.com → API → Tokens "
    "(read+write), then send /setup and paste it when asked, or set DIGITALOCEAN_TOKEN."
)


async def client_key(secrets: SecretStore) -> str:
    """camreach's ed25519 private key (OpenSSH format), generated and stored on first use.

    Processes starting at once all end up with the same key (``SecretStore.get_or_create``).
    """
    return await secrets.get_or_create(SSH_KEY_SECRET, generate_client_key)


def client_public_key(private_key: str) -> str:
    return public_key_line(asyncssh.import_private_key(private_key)) + " camreach"


async def find_do_token(secrets: SecretStore, from_env: str | None) -> str | None:
    """A token typed into the chat wins over the environment (it is the newer one)."""
    return await secrets.get(DO_TOKEN_SECRET) or from_env or None


async def do_token(secrets: SecretStore, from_env: str | None) -> str:
    token = await find_do_token(secrets, from_env)
    if token is None:
        raise OperatorError(NO_TOKEN)
    return token
