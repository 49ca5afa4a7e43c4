"""CLI operations under leases, as real processes: a killed `site apply` is reported and
retried by running it again; `camreach run` leaves a live CLI operation alone."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import yaml

from tests.cloudsim import cloud_init
from tests.conftest import ADMIN_ID
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.infra.droplet_host import DropletHost
from tests.test_crash_recovery import EXAMPLE, exe, until


def site_file(tmp_path: Path) -> Path:
    site = tmp_path / "site.yaml"
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["droplet"]["region"] = "fra1"
    site.write_text(yaml.safe_dump(doc))
    return site


def bot_env(cli_env: dict[str, str], fake: FakeDigitalOcean,
            api: FakeTelegramAPI) -> dict[str, str]:
    """The CLI's and the bot's environment: the fakes, and a 2 s lease."""
    return dict(cli_env, DIGITALOCEAN_TOKEN=fake.token, DIGITALOCEAN_END_POINT=fake.endpoint,
                TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_BASE_URL=api.base_url,
                CAMREACH_LEASE_SECONDS="2")


async def run(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        exe(), *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_killed_apply_is_reported_and_the_same_command_adopts_the_droplet(
        cli_env: dict[str, str], tmp_path: Path, droplet_host: DropletHost) -> None:
    site = site_file(tmp_path)
    async with FakeDigitalOcean(public_ipv4=droplet_host.addr) as fake, \
            cloud_init(fake, droplet_host):
        env = dict(cli_env, DIGITALOCEAN_TOKEN=fake.token, DIGITALOCEAN_END_POINT=fake.endpoint)
        fake.stuck_in_new = True
        apply = await asyncio.create_subprocess_exec(
            exe(), "site", "apply", str(site), "--yes", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        # right after the create request
        await until(lambda: fake.count("POST", "/v2/droplets") >= 1, "the apply never got that far")
        apply.send_signal(signal.SIGKILL)
        await apply.wait()
        fake.stuck_in_new = False

        code, out, err = await run(env, "site", "apply", str(site), "--yes")
        assert code == 0, err
        assert "operation #1" in err and "interrupted" in err  # reported, then retried
        assert "busy" not in err.lower()
        assert len(fake.droplets) == 1 and fake.count("POST", "/v2/droplets") == 1

        code, out, _ = await run(env, "op", "list", "--site", "farmhouse", "--json")
        assert code == 0
        ops = json.loads(out)
        assert [(o["id"], o["kind"], o["state"]) for o in ops] == [
            (2, "provision_droplet", "succeeded"), (1, "provision_droplet", "interrupted")]
        assert ops[1]["retried_by"] == 2 and ops[0]["retry_of"] is None
        assert ops[0]["owner"] and ops[0]["finished_at"]


async def test_bot_start_leaves_a_live_cli_operation_alone(
        cli_env: dict[str, str], tmp_path: Path, droplet_host: DropletHost) -> None:
    site = site_file(tmp_path)
    async with FakeDigitalOcean(public_ipv4=droplet_host.addr) as fake, \
            FakeTelegramAPI() as api, cloud_init(fake, droplet_host):
        env = bot_env(cli_env, fake, api)
        fake.stuck_in_new = True
        apply = await asyncio.create_subprocess_exec(
            exe(), "site", "apply", str(site), "--yes", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        # waiting for 'active'
        await until(lambda: fake.count("GET", "/v2/droplets/") >= 1, "the apply never got that far")
        bot = await asyncio.create_subprocess_exec(
            exe(), "run", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            await api.wait_for_polling(timeout=30)
            await asyncio.sleep(5)  # start-up check plus two periodic lease checks
            fake.stuck_in_new = False
            _, err = await asyncio.wait_for(apply.communicate(), 120)
            assert apply.returncode == 0, err.decode()
        finally:
            bot.send_signal(signal.SIGTERM)
            await asyncio.wait_for(bot.communicate(), 30)
        assert not [c for c in api.calls("sendMessage")
                    if c.params["chat_id"] == ADMIN_ID and "Retry" in json.dumps(c.params)]
        code, out, _ = await run(env, "op", "show", "1", "--json")
        assert code == 0 and json.loads(out)["state"] == "succeeded"


async def test_bot_announces_a_cli_operation_killed_while_it_runs(
        cli_env: dict[str, str], tmp_path: Path, droplet_host: DropletHost) -> None:
    site = site_file(tmp_path)
    async with FakeDigitalOcean(public_ipv4=droplet_host.addr) as fake, \
            FakeTelegramAPI() as api, cloud_init(fake, droplet_host):
        env = bot_env(cli_env, fake, api)
        bot = await asyncio.create_subprocess_exec(
            exe(), "run", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            await api.wait_for_polling(timeout=30)
            fake.stuck_in_new = True
            apply = await asyncio.create_subprocess_exec(
                exe(), "site", "apply", str(site), "--yes", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            await until(lambda: fake.count("GET", "/v2/droplets/") >= 1,
                        "the apply never got that far")
            apply.send_signal(signal.SIGKILL)
            await apply.wait()
            # The bot's periodic lease check finds it (no restart of the bot needed).
            note = await api.wait_for("sendMessage", lambda c: "operation #1" in c.params["text"],
                                      timeout=20)
            assert note.params["chat_id"] == ADMIN_ID and "Retry" in json.dumps(note.params)
        finally:
            bot.send_signal(signal.SIGTERM)
            await asyncio.wait_for(bot.communicate(), 30)
