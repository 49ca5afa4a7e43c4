"""`camreach site apply|destroy` and `camreach peer ...` as real subprocesses, end to end."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import yaml

from tests.cloudsim import cloud_init
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.infra.droplet_host import DropletHost

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "site.yaml"


async def camreach(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    exe = shutil.which("camreach", path=str(Path(sys.executable).parent)) or "camreach"
    proc = await asyncio.create_subprocess_exec(
        exe, *args, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_apply_peers_destroy(cli_env: dict[str, str], droplet_host: DropletHost,
                                   tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["droplet"]["region"] = "fra1"
    site.write_text(yaml.safe_dump(doc))
    async with FakeDigitalOcean(public_ipv4=droplet_host.addr) as fake:
        env = dict(cli_env, DIGITALOCEAN_TOKEN=fake.token, DIGITALOCEAN_END_POINT=fake.endpoint)
        async with cloud_init(fake, droplet_host):
            # Asks first (the diff and the price on stdout), the answer piped on stdin.
            code, out, err = await camreach(env, "site", "apply", str(site), stdin="y\n")
            assert code == 0, err
            assert "farmhouse: would create" in out and "  vpn.port: (none) → 51820" in out
            assert "create the droplet ($4/month)? [y/N]: y" in err
            assert "farmhouse: created" in out and "$4/month" in out
            assert "step 6/6" in err and "is ready" in err
            # Nothing to change and the droplet exists: no question, stdin is not read.
            code, out, err = await camreach(env, "site", "apply", str(site))
            assert code == 0, err
            assert "farmhouse: unchanged" in out and "[y/N]" not in err
        assert len(fake.droplets) == 1 and fake.count("POST", "/v2/droplets") == 1
        assert fake.token not in out + err

        code, out, err = await camreach(env, "peer", "add", "farmhouse", "anna",
                                        "--qr", str(tmp_path / "qr.png"))
        assert code == 0, err
        assert "[Interface]" in out and "Address = 10.8.0.3/32" in out
        assert (tmp_path / "qr.png").read_bytes().startswith(b"\x89PNG")
        code, out, err = await camreach(env, "peer", "list", "farmhouse", "--json")
        peers = {p["name"]: p for p in json.loads(out)}
        assert peers["anna"]["address"] == "10.8.0.3" and peers["router"]["kind"] == "router"
        code, out, err = await camreach(env, "peer", "remove", "farmhouse", "anna")
        assert code == 2 and "Add --yes to run without asking." in err  # stdin ended
        assert "anna" in droplet_host.run("cat /etc/wireguard/wg0.conf").stdout
        code, out, err = await camreach(env, "peer", "remove", "farmhouse", "anna", stdin="y\n")
        assert code == 0, err
        assert "anna" not in droplet_host.run("cat /etc/wireguard/wg0.conf").stdout
        code, out, err = await camreach(env, "peer", "list", "farmhouse", "--json")
        assert "anna" not in {p["name"] for p in json.loads(out)}

        code, out, err = await camreach(env, "site", "destroy", "farmhouse", stdin="farm\n")
        assert code == 1 and "nothing was deleted" in err
        assert "$4/month" in out
        assert len(fake.droplets) == 1
        code, out, err = await camreach(env, "site", "destroy", "farmhouse",
                                        "--confirm", "farmhouse")
        assert code == 0, err
        assert not fake.droplets
        code, out, err = await camreach(env, "status", "--json")
        assert json.loads(out)[0]["droplet"] is None


async def test_apply_without_token_stores_only(cli_env: dict[str, str], tmp_path: Path) -> None:
    code, out, err = await camreach(cli_env, "site", "apply", str(EXAMPLE))
    assert code == 0, err
    assert "farmhouse: created" in out and "No DigitalOcean token" in err


async def test_wrong_token_exit_code(cli_env: dict[str, str], tmp_path: Path) -> None:
    async with FakeDigitalOcean() as fake:
        env = dict(cli_env, DIGITALOCEAN_TOKEN="dop_v1_" + "0" * 64,
                   DIGITALOCEAN_END_POINT=fake.endpoint)
        code, _out, err = await camreach(env, "site", "apply", str(EXAMPLE))
    assert code == 1
    assert "DigitalOcean rejected the API token" in err and "0" * 64 not in err
    assert "Traceback" not in err
