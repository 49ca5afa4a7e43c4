"""A real crash: `camreach site apply` is SIGKILLed mid-provisioning; `camreach run` then
reports the interrupted operation with a Retry button, the retry finishes without a second
droplet, and SIGTERM stops the bot cleanly."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.cloudsim import cloud_init
from tests.conftest import ADMIN_ID
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.infra.droplet_host import DropletHost

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "site.yaml"


async def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Wait for ``condition``; fail (never hang) when it does not come true in time."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(what)


def exe() -> str:
    return shutil.which("camreach", path=str(Path(sys.executable).parent)) or "camreach"


async def test_sigkill_then_restart_offers_retry(cli_env: dict[str, str], tmp_path: Path,
                                                 droplet_host: DropletHost) -> None:
    site = tmp_path / "site.yaml"
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["droplet"]["region"] = "fra1"
    site.write_text(yaml.safe_dump(doc))
    async with FakeDigitalOcean(public_ipv4=droplet_host.addr) as fake, \
            FakeTelegramAPI() as api, cloud_init(fake, droplet_host):
        env = dict(cli_env, DIGITALOCEAN_TOKEN=fake.token, DIGITALOCEAN_END_POINT=fake.endpoint,
                   TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_BASE_URL=api.base_url)
        fake.stuck_in_new = True
        apply = await asyncio.create_subprocess_exec(
            exe(), "site", "apply", str(site), "--yes", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        # waiting for 'active'
        try:
            await until(lambda: fake.count("GET", "/v2/droplets/") >= 1,
                        "the apply never got that far")
        except AssertionError:
            apply.kill()
            print((await apply.communicate())[1].decode())
            raise
        apply.send_signal(signal.SIGKILL)
        await apply.wait()

        fake.stuck_in_new = False
        bot = await asyncio.create_subprocess_exec(
            exe(), "run", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            note = await api.wait_for("sendMessage", lambda c: "restarted" in c.params["text"],
                                      timeout=30)
            assert note.params["chat_id"] == ADMIN_ID
            assert "operation #1" in note.params["text"] and "farmhouse" in note.params["text"]
            msg_id = note.result["message_id"]
            assert api.message(ADMIN_ID, msg_id).button_data() == ["op:retry:1"]
            api.inject_callback(ADMIN_ID, "op:retry:1", msg_id)
            done = await api.wait_for("editMessageText",
                                      lambda c: "is ready" in c.params["text"], timeout=60)
            assert "#2" in done.params["text"]
        finally:
            bot.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(bot.communicate(), 30)
        assert bot.returncode == 0, err.decode()
        assert "Traceback" not in err.decode()
        assert len(fake.droplets) == 1 and fake.count("POST", "/v2/droplets") == 1

    status = await asyncio.create_subprocess_exec(
        exe(), "status", "--json", env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await status.communicate()
    data = yaml.safe_load(out)
    assert data[0]["last_operation"]["state"] == "succeeded"
    assert data[0]["droplet"]["status"] == "active"


async def test_run_with_a_token_telegram_rejects(cli_env: dict[str, str]) -> None:
    async with FakeTelegramAPI() as api:
        env = dict(cli_env, TELEGRAM_BOT_TOKEN="999:wrong-token-from-somewhere-else",
                   TELEGRAM_API_BASE_URL=api.base_url)
        proc = await asyncio.create_subprocess_exec(
            exe(), "run", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == 1
    assert "Telegram rejected TELEGRAM_BOT_TOKEN" in text and "@BotFather" in text
    assert "Traceback" not in text and "wrong-token-from-somewhere-else" not in text
