"""The rendered UCI text against OpenWrt 23.05's real ``uci``, ``fw4`` and proto scripts.

The rootfs tarball (see /work/shared/openwrt/README.md) is extracted once per session and
used through ``chroot``. Each test gets its own config and delta directories inside it
(``uci -c DIR -t DIR``), so tests do not see each other's changes. Needs root; skipped
without it or without the tarball, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from bot.render.model import ModemConfig, RouterConfig, RouterWireguard
from bot.render.modem import modem_sections
from bot.render.router import render_router_batch, render_router_sections
from bot.render.router_wireguard import router_wireguard_sections
from bot.render.uci import (
    UciSection,
    diff_sections,
    parse_uci_show,
    render_batch,
    render_uci_config,
)
from tests.golden import ROUTER_PRIVATE, SERVER_PUBLIC

TARBALL = Path(
    os.environ.get(
        "CAMREACH_OPENWRT_ROOTFS", "/work/shared/openwrt/openwrt-23.05-x86_64-rootfs.tar.xz"
    )
)
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"real OpenWrt tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def openwrt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        _unavailable("needs root for chroot")
    if not TARBALL.is_file():
        _unavailable(f"{TARBALL} is missing")
    for tool in ("tar", "chroot", "unshare", "mount"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed")
    root = tmp_path_factory.mktemp("openwrt")
    subprocess.run(
        ["tar", "--numeric-owner", "-xJf", str(TARBALL), "-C", str(root)],
        check=True,
        capture_output=True,
    )
    for d in ("tmp", "proc", "dev", "sys"):
        (root / d).mkdir(exist_ok=True)
    return root


@dataclass
class Uci:
    """``uci`` in the chroot with a private config dir and delta dir."""

    root: Path
    confdir: str  # path inside the chroot

    @property
    def host_confdir(self) -> Path:
        return self.root / self.confdir.lstrip("/")

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
        cmd = ["chroot", str(self.root), "/sbin/uci", "-c", self.confdir]
        cmd += ["-t", f"{self.confdir}.delta", *args]
        return subprocess.run(
            cmd,
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            env=CHROOT_ENV,
            check=False,
        )

    def batch(self, text: str) -> None:
        res = self.run("batch", stdin=text)
        # uci batch exits 0 even when a command fails; silence is the success signal.
        assert res.returncode == 0
        assert res.stderr == b"", res.stderr.decode(errors="replace")
        assert res.stdout == b"", res.stdout.decode(errors="replace")

    def commit(self, package: str) -> None:
        res = self.run("commit", package)
        assert res.returncode == 0 and res.stderr == b"", res.stderr

    def get(self, path: str) -> bytes:
        res = self.run("get", path)
        assert res.returncode == 0, res.stderr
        assert res.stdout.endswith(b"\n")
        return res.stdout[:-1]  # uci get adds one newline

    def text(self, *args: str) -> str:
        res = self.run(*args)
        assert res.returncode == 0, res.stderr
        return res.stdout.decode()


@pytest.fixture
def uci(openwrt_root: Path) -> Uci:
    confdir = f"/tmp/uci-{uuid.uuid4().hex[:10]}"
    host = openwrt_root / confdir.lstrip("/")
    host.mkdir()
    (openwrt_root / f"{confdir.lstrip('/')}.delta").mkdir()
    for pkg in ("network", "firewall", "camtest"):
        (host / pkg).write_text("")
    return Uci(openwrt_root, confdir)


# --- hostile values --------------------------------------------------------------------------

HOSTILE = {
    "squote": "it's",
    "only_quotes": "'''",
    "escaped_form": "'\\''",
    "semicolon": "a; reboot; b",
    "subshell": "$(touch /tmp/camreach-pwned-subshell)",
    "backticks": "`touch /tmp/camreach-pwned-backtick`",
    "breakout": "'; touch /tmp/camreach-pwned-breakout; echo '",
    "dquote": 'say "hi" \\"there\\"',
    "backslashes": "\\ \\\\ \\n \\' \\",
    "trailing_backslash": "abc\\",
    "newline": "line1\nline2\n'; touch /tmp/camreach-pwned-newline; '\nline4",
    "crlf": "a\r\nb",
    "tab": "a\tb",
    "hash": "# not a comment",
    "blanks": "  lead and trail  ",
    "dollar_vars": "$HOME ${PATH} $1",
    "glob": "* ? [a-z]",
    "utf8": "héllo ✓ 😀 пароль",
    "long": "x" * 4000 + "'end",
    "option_like": "x\n\toption injected 'yes'",
    "config_like": "x\nconfig interface 'evil'",
}


def _pwned(root: Path) -> list[Path]:
    return [p for d in (root / "tmp", Path("/tmp")) for p in d.glob("camreach-pwned-*")]


def hostile_section() -> UciSection:
    opts: dict[str, str | list[str]] = dict(HOSTILE)
    opts["as_list"] = list(HOSTILE.values())
    return UciSection("camtest", "thing", "evil", opts)


def test_hostile_values_are_stored_literally_and_nothing_runs(uci: Uci) -> None:
    section = hostile_section()
    uci.batch(render_batch([section]))
    uci.commit("camtest")

    for opt, value in HOSTILE.items():
        assert uci.get(f"camtest.evil.{opt}") == value.encode(), opt

    # The committed file is exactly what render_uci_config writes (minus uci's header).
    file_text = (uci.host_confdir / "camtest").read_bytes().decode()  # keep the CR
    assert "package camtest\n" + file_text == render_uci_config([section])
    assert uci.text("export", "camtest") == render_uci_config([section])

    # uci show prints it back in a form parse_uci_show reads exactly.
    parsed = parse_uci_show(uci.text("show", "camtest"))
    assert parsed["camtest.evil"] == {".type": "thing", **section.values()}
    assert diff_sections(parsed, [section]) == []
    assert _pwned(uci.root) == []


def test_openwrt_shell_config_load_reads_hostile_values_without_running_them(uci: Uci) -> None:
    # netifd proto scripts (wireguard.sh) read options with config_load/config_get, which
    # eval the `uci export` text: the quoting has to hold there too.
    section = hostile_section()
    uci.batch(render_batch([section]))
    uci.commit("camtest")
    for opt in ("squote", "breakout", "newline", "subshell", "backticks", "long"):
        script = (
            f'. /lib/functions.sh; config_load camtest; config_get v evil {opt}; printf %s "$v"'
        )
        res = subprocess.run(
            ["chroot", str(uci.root), "/bin/sh", "-c", script],
            capture_output=True,
            env={**CHROOT_ENV, "UCI_CONFIG_DIR": uci.confdir},
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout == HOSTILE[opt].encode(), opt
    assert _pwned(uci.root) == []


@pytest.mark.parametrize("char", ["\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f"])
def test_uci_cannot_store_other_control_characters(uci: Uci, char: str) -> None:
    # Why UciSection refuses them: uci's own parser rejects the line, and (rc 0) goes on.
    res = uci.run("batch", stdin=f"set camtest.s=thing\nset camtest.s.v='a{char}b'\n")
    assert res.returncode == 0
    assert b"Parse error" in res.stderr
    assert uci.run("get", "camtest.s.v").returncode != 0


def test_an_empty_value_deletes_the_option(uci: Uci) -> None:
    # Why UciSection refuses "" (and why merge mode clears lists with it).
    uci.batch("set camtest.s=thing\nset camtest.s.v='x'\nadd_list camtest.s.l='a'\n")
    uci.batch("set camtest.s.v=''\nset camtest.s.l=''\nset camtest.s.absent=''\n")
    uci.commit("camtest")
    assert parse_uci_show(uci.text("show", "camtest")) == {"camtest.s": {".type": "thing"}}


def test_batch_reports_errors_only_on_stderr(uci: Uci) -> None:
    # The exit status says nothing; callers must treat stderr output as failure.
    res = uci.run("batch", stdin="delete camtest.nosuch\nset camtest.nosuch.x='1'\n")
    assert res.returncode == 0
    assert b"Entry not found" in res.stderr
    assert b"Invalid argument" in res.stderr


# --- the router batch ------------------------------------------------------------------------


def router_config(**overrides: object) -> RouterConfig:
    modem = ModemConfig("ncm", "/dev/cdc-wdm0", apn="airtelgprs.com", pin="1234", mode="prefer-lte")
    wg = RouterWireguard(
        private_key=ROUTER_PRIVATE,
        address=IPv4Interface("10.8.0.2/24"),
        server_public_key=SERVER_PUBLIC,
        endpoint_host="203.0.113.10",
    )
    fields: dict[str, object] = {
        "modem": modem,
        "wg": wg,
        "lan_subnet": IPv4Network("192.168.1.0/24"),
    }
    fields.update(overrides)
    return RouterConfig(**fields)  # type: ignore[arg-type]


def seed_defaults(uci: Uci) -> None:
    for pkg in ("network", "firewall"):
        shutil.copy(uci.root / "etc/config" / pkg, uci.host_confdir / pkg)


def test_router_batch_applies_silently_and_is_idempotent(uci: Uci) -> None:
    seed_defaults(uci)
    cfg = router_config()
    sections = render_router_sections(cfg)
    before = parse_uci_show(uci.text("show", "network") + uci.text("show", "firewall"))
    assert diff_sections(before, sections) != []

    uci.batch(render_router_batch(cfg))
    uci.commit("network")
    uci.commit("firewall")
    first = [(uci.host_confdir / p).read_bytes() for p in ("network", "firewall")]
    after = parse_uci_show(uci.text("show", "network") + uci.text("show", "firewall"))
    assert diff_sections(after, sections) == []
    # OpenWrt's own sections are untouched.
    assert after["network.lan"] == before["network.lan"]
    assert after["firewall.@zone[1]"] == before["firewall.@zone[1]"]

    uci.batch(render_router_batch(cfg))  # re-apply: silent, same result
    uci.commit("network")
    uci.commit("firewall")
    second = [(uci.host_confdir / p).read_bytes() for p in ("network", "firewall")]
    assert second == first


def test_reapply_replaces_stale_options_and_list_items(uci: Uci) -> None:
    uci.batch(
        "set network.wwan=interface\nset network.wwan.proto='qmi'\n"
        "set network.wwan.leftover='x'\nadd_list network.wwan.dns='9.9.9.9'\n"
    )
    uci.commit("network")
    wanted = modem_sections(router_config().modem)
    assert "- network.wwan.leftover: 'x'" in diff_sections(
        parse_uci_show(uci.text("show", "network")), wanted
    )
    uci.batch(render_batch(wanted))
    uci.commit("network")
    parsed = parse_uci_show(uci.text("show", "network"))
    assert parsed["network.wwan"] == {".type": "interface", **wanted[0].values()}


def test_merge_mode_keeps_other_options_and_replaces_lists(uci: Uci) -> None:
    uci.batch(
        "set network.wg0=interface\nset network.wg0.keepme='1'\n"
        "add_list network.wg0.addresses='10.9.9.9/24'\n"
    )
    uci.commit("network")
    wanted = router_wireguard_sections(router_config().wg)
    uci.batch(render_batch(wanted, replace_sections=False))
    uci.commit("network")
    parsed = parse_uci_show(uci.text("show", "network"))
    assert parsed["network.wg0"]["keepme"] == "1"
    assert parsed["network.wg0"]["addresses"] == "10.8.0.2/24"
    assert diff_sections(parsed, wanted, replace_sections=False) == []


# --- what OpenWrt's programs make of it --------------------------------------------------------


def _declared_options(script: str) -> set[str]:
    """Options a netifd proto script reads: proto_config_add_* and config_get names."""
    names = set(re.findall(r'proto_config_add_\w+\s+["\']?(\w+)', script))
    names |= set(re.findall(r'config_get(?:_bool)?\s+\w+\s+"\$\{?\w+\}?"\s+"(\w+)"', script))
    return names


@pytest.mark.parametrize(
    "modem",
    [
        ModemConfig(
            "ncm",
            "/dev/cdc-wdm0",
            apn="a.b",
            pin="1234",
            username="u",
            password="p",
            auth="chap",
            pdptype="ipv4v6",
            mode="lte",
            delay=10,
            metric=5,
        ),
        ModemConfig(
            "qmi",
            "/dev/cdc-wdm0",
            apn="a.b",
            pin="1234",
            username="u",
            password="p",
            auth="both",
            mode="lte",
            delay=10,
            metric=5,
        ),
        ModemConfig(
            "mbim",
            "/dev/cdc-wdm0",
            apn="a.b",
            pin="1234",
            username="u",
            password="p",
            auth="pap",
            delay=10,
            metric=5,
        ),
        ModemConfig(
            "3g",
            "/dev/ttyUSB0",
            apn="a.b",
            pin="1234",
            username="u",
            password="p",
            mode="umts",
            delay=10,
            metric=5,
        ),
        ModemConfig("dhcp", "eth1", metric=5),
    ],
    ids=lambda m: m.protocol,
)
def test_modem_options_are_ones_the_proto_script_reads(
    openwrt_root: Path, modem: ModemConfig
) -> None:
    proto_dir = openwrt_root / "lib/netifd/proto"
    script = (proto_dir / f"{modem.protocol}.sh").read_text()
    if modem.protocol == "3g":
        script += (proto_dir / "ppp.sh").read_text()  # username/password: ppp_generic
    # metric: proto_config_add_defaults; device: netifd's own interface option (dhcp).
    declared = _declared_options(script) | {"proto", "metric", "device"}
    (section,) = modem_sections(modem)
    assert set(section.options) <= declared


def test_wireguard_options_are_ones_wireguard_sh_reads(openwrt_root: Path) -> None:
    script = (openwrt_root / "lib/netifd/proto/wireguard.sh").read_text()
    declared = _declared_options(script) | {"proto", "description"}  # description: LuCI's
    iface, peer = router_wireguard_sections(
        RouterWireguard(
            ROUTER_PRIVATE,
            IPv4Interface("10.8.0.2/24"),
            SERVER_PUBLIC,
            "203.0.113.10",
            preshared_key=SERVER_PUBLIC,
            listen_port=51821,
        )
    )
    assert set(iface.options) <= declared
    assert set(peer.options) <= declared
    assert peer.type == "wireguard_wg0"  # config_foreach ... "wireguard_${config}"


@pytest.fixture
def etc_config(openwrt_root: Path) -> Iterator[Path]:
    """The chroot's real /etc/config (fw4 reads only that), restored afterwards."""
    conf = openwrt_root / "etc/config"
    saved = {p: (conf / p).read_bytes() for p in ("network", "firewall")}
    yield conf
    for name, data in saved.items():
        (conf / name).write_bytes(data)


def _fw4(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # fw4 needs /proc (kernel version, nft); mount it in a private mount namespace.
    script = f'mount -t proc proc "{root}/proc" && exec chroot "{root}" fw4 {" ".join(args)}'
    return subprocess.run(
        ["unshare", "--mount", "--fork", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=CHROOT_ENV,
        check=False,
    )


@pytest.mark.parametrize("masq", [False, True])
def test_fw4_accepts_the_firewall_and_builds_the_intended_rules(
    openwrt_root: Path, etc_config: Path, masq: bool
) -> None:
    cfg = router_config(masquerade_to_lan=masq, ssh_from=IPv4Network("10.8.0.1/32"))
    res = subprocess.run(
        ["chroot", str(openwrt_root), "/bin/sh", "-c", "uci batch && uci commit"],
        input=render_router_batch(cfg),
        capture_output=True,
        text=True,
        env=CHROOT_ENV,
        check=False,
    )
    assert res.returncode == 0 and res.stderr == "", res.stderr

    check = _fw4(openwrt_root, "check")
    assert check.returncode == 0, check.stderr
    printed = _fw4(openwrt_root, "print")
    assert printed.returncode == 0, printed.stderr
    warnings = [line for line in printed.stderr.splitlines() if "camreach" in line]
    assert warnings == []
    rules = printed.stdout
    assert 'ip saddr 10.8.0.1 tcp dport 22 counter accept comment "!fw4: camreach: SSH' in rules
    assert "icmp type 8 counter accept" in rules
    assert 'jump accept_to_lan comment "!fw4: Accept camvpn to lan forwarding"' in rules
    assert 'jump accept_to_camwan comment "!fw4: Accept lan to camwan forwarding"' in rules
    assert "Masquerade IPv4 camwan traffic" in rules
    # From the tunnel only the droplet's SSH and ping reach the router; phones get nothing
    # else of it (no SSH, no LuCI, no DNS): the rest of the zone's input is rejected.
    input_camvpn = rules.split("chain input_camvpn {", 1)[1].split("}", 1)[0]
    accepts = [line.split(" counter ")[0].strip() for line in input_camvpn.splitlines()
               if " accept " in line]
    assert accepts == ["ip saddr 10.8.0.1 tcp dport 22", "meta nfproto ipv4 icmp type 8"]
    assert input_camvpn.split()[-2:] == ["jump", "reject_from_camvpn"]
    # Nothing from the modem side reaches the router or the LAN.
    input_camwan = rules.split("chain input_camwan {", 1)[1].split("}", 1)[0]
    assert input_camwan.split() == ["jump", "reject_from_camwan"]
    forward_camwan = rules.split("chain forward_camwan {", 1)[1].split("}", 1)[0]
    assert forward_camwan.split() == ["jump", "reject_to_camwan"]
    # Nothing forwards from the tunnel to the modem (no exit to the Internet).
    forward_camvpn = rules.split("chain forward_camvpn {", 1)[1].split("}", 1)[0]
    assert "accept_to_camwan" not in forward_camvpn
    nat = "ip saddr 10.8.0.0/24 ip daddr 192.168.1.0/24 counter masquerade"
    assert (nat in rules) is masq
