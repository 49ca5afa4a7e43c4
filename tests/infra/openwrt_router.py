"""A real OpenWrt 23.05 router userland for tests, and the pytest plugin that provides it.

Each router is the OpenWrt rootfs (see ``shared/openwrt/README.md``) copied into a tmpfs of
its own (``router.root`` on the host) and run in a chroot, inside a network namespace of its
own (``cr-owrt-<n>``, LAN on ``eth0`` = 10.199.<n>.2/24, host end of the veth = 10.199.<n>.1)
and its own PID, mount and UTS namespaces, so that ``reboot`` or ``killall`` typed on the
router cannot reach this machine (``reboot`` stops the router for good).
Started in it: ubusd, procd (as a plain service manager, not PID 1: it answers
``ubus call service ...``/``system ...`` so init scripts and ``reload_config`` work), and,
through their own init scripts, logd, rpcd, netifd and dropbear.

Use it as a plugin (``pytest_plugins = ["tests.infra.openwrt_router"]``) and ask for the
``openwrt_router`` fixture, or ``openwrt_router_factory`` for several routers in one test.

Run as a script (``python openwrt_router.py nfqueue-delay QUEUE MS``) this file is the
userspace packet delayer behind :meth:`OpenWrtRouter.add_latency`: this machine's kernel has
no netem, so packets are held in an NFQUEUE for the requested time instead.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOTFS_ENV = "CAMREACH_OPENWRT_ROOTFS"
# <repo>/../shared/openwrt/...: CI checks shared/ out beside the repo, as /work/shared is here.
DEFAULT_ROOTFS = (
    Path(__file__).resolve().parents[3] / "shared/openwrt/openwrt-23.05-x86_64-rootfs.tar.xz"
)
DEFAULT_ROOT_PASSWORD = "router-pw-1"
# Started through their /etc/init.d scripts (after ubusd and procd), in this order.
DEFAULT_SERVICES: tuple[str, ...] = ("log", "rpcd", "network", "dropbear")
NETNS_PREFIX = "cr-owrt-"
# Slot n owns netns cr-owrt-<n>, veth cr-owrt-<n>h and 10.199.<n>.0/24; owner files live here so
# parallel sessions share the slot space and a crashed session's leftovers can be reclaimed.
REGISTRY_DIR = Path("/run/camreach-openwrt")
REQUIRED_TOOLS = ("ip", "unshare", "nsenter", "chroot", "mount", "umount", "tar", "xz", "cp")
BOOT_TIMEOUT = 30.0
# Environment of commands run "as the router would": nothing leaks in from the host.
ROUTER_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/ash",
    "TERM": "dumb",
}
# Character devices of the router's private /dev: (name, major, minor).
DEV_NODES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)

_PR_SET_PDEATHSIG = 1

# PID 1 of the router's PID namespace. It stays outside the chroot, mounts devpts, prints its
# PID as this machine sees it (for nsenter), then only reaps orphans (daemons that fork, such as
# wireguard-go, are re-parented to it). When it dies the kernel kills everything in the router.
_INIT_SCRIPT = r"""
import os, signal, subprocess, sys
root = sys.argv[1]
subprocess.run(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620",
                "devpts", root + "/dev/pts"], check=True)
def reap(*_):
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
signal.signal(signal.SIGCHLD, reap)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
reap()
with open("/proc/self/status") as status:
    host_pid = next(line.split()[1] for line in status if line.startswith("Pid:"))
print(host_pid, flush=True)
os.dup2(os.open(os.devnull, os.O_RDWR), 1)
while True:
    signal.pause()
"""

# First half of what OpenWrt's /etc/init.d/boot does; the rest needs procd as PID 1, a kernel
# of the router's own, or would touch this machine (hwclock, sysctl, kmodloader).
_BOOT_SCRIPT = r"""
mkdir -p /var/lock /var/log /var/run /var/state /var/tmp /tmp/.uci /tmp/resolv.conf.d
chmod 1777 /var/lock
chmod 0700 /tmp/.uci
touch /var/log/wtmp /var/log/lastlog /tmp/resolv.conf.d/resolv.conf.auto
ln -sf /tmp/resolv.conf.d/resolv.conf.auto /tmp/resolv.conf
echo "$(uci -q get system.@system[0].hostname || echo OpenWrt)" > /proc/sys/kernel/hostname
echo "$(uci -q get system.@system[0].timezone || echo UTC)" > /tmp/TZ
/sbin/ubusd </dev/null >/dev/null 2>&1 &
"""


def rootfs_tarball() -> Path:
    """Where the OpenWrt rootfs tarball is: $CAMREACH_OPENWRT_ROOTFS or <repo>/../shared/."""
    override = os.environ.get(ROOTFS_ENV)
    return Path(override) if override else DEFAULT_ROOTFS


def preflight_problem() -> str | None:
    """Why routers cannot run on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "OpenWrt router tests need root (network namespaces, chroot, mounts)"
    tarball = rootfs_tarball()
    if not tarball.is_file():
        return f"OpenWrt rootfs tarball not found at {tarball} (set {ROOTFS_ENV})"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"tools needed for OpenWrt router tests are missing: {', '.join(missing)}"
    return None


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally, but fail under CI=true: CI must never silently skip router tests."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_tool(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        skip_or_fail(f"`{tool}` is missing (apt-get install {package})")
    return path


def prepare_rootfs(tarball: Path, dest: Path) -> Path:
    """Extract the tarball into ``dest`` and make the changes every test router needs."""
    dest.mkdir(parents=True)
    _check(["tar", "--numeric-owner", "-xJf", str(tarball), "-C", str(dest)])
    # On OpenWrt /var is a symlink to /tmp (base-files); the snapshot holds an empty directory.
    if (dest / "var").is_dir() and not (dest / "var").is_symlink():
        shutil.rmtree(dest / "var")
        (dest / "var").symlink_to("tmp")
    for name in ("dev", "proc", "sys", "tmp", "root"):
        (dest / name).mkdir(exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    return dest


def _check(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a host command; on failure raise with its output in the message."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
        )
    return proc


def _quiet(argv: Sequence[str]) -> bool:
    """Run a host command whose failure is expected at times (cleanup); True if it worked."""
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _set_pdeathsig() -> None:
    # SIGKILL the child if this pytest process dies, so a killed session leaves no router behind.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _popen_tied(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
    # PDEATHSIG fires when the *thread* that forked exits, so only use it from the main thread.
    tied = threading.current_thread() is threading.main_thread()
    return subprocess.Popen(
        argv, text=True, preexec_fn=_set_pdeathsig if tied else None, **kwargs
    )


def _read_line(proc: subprocess.Popen[str], timeout: float, what: str) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.strip():
        raise RuntimeError(f"{what} did not start (exit status {proc.poll()})")
    return line.strip()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return sorted((p for p in points if p.startswith(prefix)), reverse=True)


def _unmount_all_under(path: Path) -> None:
    for point in _mounts_under(path):
        if not _quiet(["umount", point]):
            _quiet(["umount", "-l", point])


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    REGISTRY_DIR.mkdir(mode=0o700, exist_ok=True)
    with open(REGISTRY_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _slot_names(slot: int) -> tuple[str, str, str]:
    """netns, host-side veth, nft table of a slot."""
    return f"{NETNS_PREFIX}{slot}", f"{NETNS_PREFIX}{slot}h", f"cr_owrt_{slot}"


def _teardown_slot_network(slot: int) -> None:
    netns, veth, table = _slot_names(slot)
    _quiet(["nft", "delete", "table", "netdev", table])
    # Deleting the host end removes the pair at once; netns deletion alone is asynchronous.
    _quiet(["ip", "link", "del", veth])
    _quiet(["ip", "netns", "del", netns])


def _reclaim_stale_slot(slot: int, owner_file: Path) -> None:
    """Remove what a dead session left in ``slot`` (processes, netns, mounts, files)."""
    netns = _slot_names(slot)[0]
    try:
        owner = json.loads(owner_file.read_text())
    except (OSError, ValueError):
        owner = {}
    pids = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _teardown_slot_network(slot)
    workdir = owner.get("workdir")
    if workdir:
        _unmount_all_under(Path(workdir))
        shutil.rmtree(workdir, ignore_errors=True)
    owner_file.unlink(missing_ok=True)


def _subnet_in_use(slot: int) -> bool:
    """True if this machine already routes or holds addresses in 10.199.<slot>.0/24."""
    prefix = f"10.199.{slot}.0/24"
    routes = subprocess.run(
        ["ip", "-4", "-o", "route", "show", "match", prefix],
        capture_output=True, text=True, check=False,
    ).stdout.splitlines()
    addrs = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "to", prefix],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    return bool(addrs) or any(not r.startswith("default") for r in routes if r.strip())


def _allocate_slot(workdir: Path) -> int:
    """Claim a free slot by creating its netns (atomic: `ip netns add` fails if it exists)."""
    with _registry_lock():
        for slot in range(1, 255):
            netns, veth, _ = _slot_names(slot)
            owner_file = REGISTRY_DIR / f"{slot}.json"
            if owner_file.exists():
                try:
                    owner_pid = int(json.loads(owner_file.read_text())["pid"])
                except (OSError, ValueError, KeyError):
                    owner_pid = 0
                if owner_pid and _pid_alive(owner_pid):
                    continue
                _reclaim_stale_slot(slot, owner_file)
            # Anything else under our names without an owner file is not ours to touch.
            if Path("/run/netns", netns).exists() or Path("/sys/class/net", veth).exists():
                continue
            if _subnet_in_use(slot):
                continue
            if not _quiet(["ip", "netns", "add", netns]):
                continue
            owner_file.write_text(json.dumps({"pid": os.getpid(), "workdir": str(workdir)}))
            return slot
    raise RuntimeError("no free OpenWrt router slot (cr-owrt-1..254 all in use)")


def _release_slot(slot: int) -> None:
    with _registry_lock():
        (REGISTRY_DIR / f"{slot}.json").unlink(missing_ok=True)


def _network_config(addr: str) -> str:
    # The snapshot's br-lan cannot come up here (no bridge VLAN filtering): LAN is eth0 itself.
    return f"""config interface 'loopback'
\toption device 'lo'
\toption proto 'static'
\toption ipaddr '127.0.0.1'
\toption netmask '255.0.0.0'

config globals 'globals'
\toption ula_prefix 'fd12:3456:789a::/48'

config interface 'lan'
\toption device 'eth0'
\toption proto 'static'
\toption ipaddr '{addr}'
\toption netmask '255.255.255.0'
\toption ip6assign '60'
"""


def _populate_dev(dev: Path) -> None:
    for name, major, minor in DEV_NODES:
        os.mknod(dev / name, 0o666 | 0o020000, os.makedev(major, minor))
        (dev / name).chmod(0o666)  # mknod's mode is filtered by the umask
    (dev / "pts").mkdir()
    (dev / "shm").mkdir(mode=0o1777)
    (dev / "ptmx").symlink_to("pts/ptmx")
    (dev / "fd").symlink_to("/proc/self/fd")
    for num, name in enumerate(("stdin", "stdout", "stderr")):
        (dev / name).symlink_to(f"/proc/self/fd/{num}")


@dataclass(eq=False)
class OpenWrtRouter:
    """A running OpenWrt userland; see the module docstring. Create with :meth:`start`."""

    root: Path
    netns: str
    host_veth: str
    host_addr: str
    addr: str
    ssh_port: int
    root_password: str
    startup_seconds: float = 0.0
    _slot: int = field(default=0, repr=False)
    _workdir: Path = field(default=Path(), repr=False)
    _init_pid: int = field(default=0, repr=False)
    _unshare: subprocess.Popen[str] | None = field(default=None, repr=False)
    _delayer: subprocess.Popen[str] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @classmethod
    def start(
        cls,
        rootfs: Path,
        workdir: Path,
        *,
        root_password: str = DEFAULT_ROOT_PASSWORD,
        services: Sequence[str] = DEFAULT_SERVICES,
    ) -> OpenWrtRouter:
        """Copy ``rootfs`` (from :func:`prepare_rootfs`) into ``workdir`` and boot it."""
        began = time.monotonic()
        slot = _allocate_slot(workdir)
        netns, veth, _ = _slot_names(slot)
        router = cls(
            root=workdir / "root",
            netns=netns,
            host_veth=veth,
            host_addr=f"10.199.{slot}.1",
            addr=f"10.199.{slot}.2",
            ssh_port=22,
            root_password=root_password,
            _slot=slot,
            _workdir=workdir,
        )
        try:
            router._create(rootfs, services)
        except BaseException:
            with contextlib.suppress(Exception):
                router.stop()
            raise
        router.startup_seconds = time.monotonic() - began
        return router

    def _create(self, rootfs: Path, services: Sequence[str]) -> None:
        self.root.mkdir(parents=True)
        # The copy lives in RAM: cp -a of these ~2900 files takes ~0.1 s into tmpfs but ~2 s
        # onto this machine's ext4, and unmounting is the whole cleanup.
        _check(["mount", "-t", "tmpfs", "-o", "mode=0755,size=512m", "cr-owrt-root",
                str(self.root)])
        _check(["cp", "-a", f"{rootfs}/.", str(self.root)])
        (self.root / "etc/config/network").write_text(_network_config(self.addr))
        # Private /dev, visible from the host too, so tests can drop fake device nodes in it.
        _check(["mount", "-t", "tmpfs", "-o", "mode=0755,size=4m", "cr-owrt-dev",
                str(self.root / "dev")])
        _populate_dev(self.root / "dev")

        _check(["ip", "link", "add", self.host_veth, "type", "veth",
                "peer", "name", "eth0", "netns", self.netns])
        _check(["ip", "addr", "add", f"{self.host_addr}/24", "dev", self.host_veth])
        _check(["ip", "link", "set", self.host_veth, "up"])
        _check(["ip", "-n", self.netns, "link", "set", "lo", "up"])

        with open(self._workdir / "init.log", "w") as log:
            self._unshare = _popen_tied(
                ["ip", "netns", "exec", self.netns,
                 "unshare", "--pid", "--mount", "--uts", "--fork", "--kill-child",
                 f"--mount-proc={self.root / 'proc'}",
                 sys.executable, "-c", _INIT_SCRIPT, str(self.root)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            )
        try:
            self._init_pid = int(_read_line(self._unshare, BOOT_TIMEOUT, "router PID 1"))
        except RuntimeError as exc:
            exc.add_note((self._workdir / "init.log").read_text())
            raise
        assert self._unshare.stdout is not None
        self._unshare.stdout.close()

        self.run(_BOOT_SCRIPT)
        self._wait_for(lambda: (self.root / "var/run/ubus/ubus.sock").exists(), "ubusd")
        self.run("/sbin/procd </dev/null >/dev/null 2>&1 &")
        self.run("ubus -t 10 wait_for service system")
        # dropbear refuses empty passwords; set one the way a user would on a fresh router.
        self.run("passwd root >/dev/null", input=f"{self.root_password}\n{self.root_password}\n")
        for service in services:
            self.run(f"/etc/init.d/{service} start")
        if "network" in services:
            self.run("ubus -t 15 wait_for network.interface.lan")
        if "dropbear" in services:
            self._wait_for(self._ssh_banner_seen, f"dropbear on {self.addr}:{self.ssh_port}")

    def _wait_for(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not ready():
            if self._unshare is not None and self._unshare.poll() is not None:
                raise RuntimeError(f"router {self.netns} died while waiting for {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"router {self.netns}: {what} not ready in {BOOT_TIMEOUT}s")
            time.sleep(0.02)

    def _ssh_banner_seen(self) -> bool:
        try:
            with socket.create_connection((self.addr, self.ssh_port), timeout=1) as sock:
                sock.settimeout(2)
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    # -- running things on the router ------------------------------------------------------

    def _command(self, cmd: str) -> list[str]:
        if self._stopped or not self._init_pid:
            raise RuntimeError(f"router {self.netns} is not running")
        return ["nsenter", f"--target={self._init_pid}", "--net", "--mount", "--uts", "--pid",
                "--", "chroot", str(self.root), "/bin/sh", "-c", cmd]

    def run(
        self, cmd: str, check: bool = True, *, timeout: float = 60.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``/bin/sh -c cmd`` on the router (busybox ash, as root, in its namespaces).

        For test setup and assertions only: the code under test must go through SSH.
        """
        proc = subprocess.run(
            self._command(cmd), input=input, capture_output=True, text=True, errors="replace",
            env=ROUTER_ENV, timeout=timeout, check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check:
            self._raise_if_failed(proc)
        return proc

    async def arun(
        self, cmd: str, check: bool = True, *, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """:meth:`run` without blocking the event loop (e.g. while an SSH session is open)."""
        import asyncio

        proc = await asyncio.create_subprocess_exec(
            *self._command(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=ROUTER_ENV,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        result = subprocess.CompletedProcess(
            cmd, proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
        )
        if check:
            self._raise_if_failed(result)
        return result

    def _raise_if_failed(self, proc: subprocess.CompletedProcess[str]) -> None:
        if proc.returncode != 0:
            cmd = proc.args[-1] if isinstance(proc.args, list) else proc.args
            error = subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
            error.add_note(f"on router {self.netns}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
            raise error

    def is_running(self) -> bool:
        return not self._stopped and self._unshare is not None and self._unshare.poll() is None

    def diagnostics(self) -> str:
        """Recent router log, processes and addresses, for failure reports."""
        if not self.is_running():
            return f"router {self.netns} is not running"
        try:
            return self.run(
                "logread | tail -n 80; echo; ps w; echo; ip addr", check=False, timeout=10
            ).stdout
        except Exception as exc:  # diagnostics must never mask the real failure
            return f"could not collect diagnostics: {exc!r}"

    # -- SSH host keys ---------------------------------------------------------------------

    def host_public_keys(self) -> dict[str, str]:
        """Dropbear's host keys as OpenSSH public key lines, by key type.

        Generated per router by dropbear's init script: ``ssh-ed25519`` and ``ssh-rsa`` (this
        dropbear has no ECDSA). Which one a client sees depends on its algorithm preferences
        (asyncssh's defaults pick ``ssh-rsa`` here).
        """
        out = self.run(
            'for f in /etc/dropbear/dropbear_*_host_key; do dropbearkey -y -f "$f"; done'
        ).stdout
        keys: dict[str, str] = {}
        for line in out.splitlines():
            if line.startswith(("ssh-", "ecdsa-")):
                key_type, blob = line.split()[:2]
                keys[key_type] = f"{key_type} {blob}"
        return keys

    def host_key_fingerprint(self, key_type: str = "ssh-ed25519") -> str:
        """OpenSSH-style ``SHA256:...`` fingerprint (as asyncssh's ``get_fingerprint()``)."""
        blob = base64.b64decode(self.host_public_keys()[key_type].split()[1])
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode()
        return f"SHA256:{digest.rstrip('=')}"

    def known_hosts(self) -> str:
        """known_hosts lines for all host keys (for ``asyncssh.import_known_hosts``)."""
        return "".join(f"{self.addr} {key}\n" for key in self.host_public_keys().values())

    # -- link impairment -------------------------------------------------------------------

    def add_latency(self, ms: int) -> None:
        """Delay every packet from this machine to the router by ``ms`` (RTT grows by ``ms``).

        Like ``tc qdisc add dev <host veth> root netem delay <ms>ms``; this kernel has no
        netem, so packets entering the router's eth0 wait in an NFQUEUE (rule in the router's
        own netns, legacy iptables so the router's fw4 cannot flush it) for a delayer process.
        """
        iptables = require_tool("iptables-legacy", "iptables")
        self.clear_latency()
        with open(self._workdir / "delayer.log", "a") as log:
            self._delayer = _popen_tied(
                ["ip", "netns", "exec", self.netns, sys.executable, __file__, "nfqueue-delay",
                 "0", str(ms)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            )
        _read_line(self._delayer, 10, "NFQUEUE delayer")
        _check(["ip", "netns", "exec", self.netns, iptables, "-w", "-t", "mangle", "-A",
                "PREROUTING", "-i", "eth0", "-j", "NFQUEUE", "--queue-num", "0",
                "--queue-bypass"])

    def clear_latency(self) -> None:
        if self._delayer is None:
            return
        iptables = shutil.which("iptables-legacy") or "iptables-legacy"
        _quiet(["ip", "netns", "exec", self.netns, iptables, "-w", "-t", "mangle", "-F",
                "PREROUTING"])
        self._delayer.terminate()  # it lets the packets it still holds through first
        try:
            self._delayer.wait(5)
        except subprocess.TimeoutExpired:
            self._delayer.kill()
            self._delayer.wait()
        self._delayer = None

    def cut_link(self) -> None:
        """Silently drop all IP traffic on the link: open TCP connections stall, new ones time
        out (ARP still passes, so nothing fails fast with "no route to host")."""
        require_tool("nft", "nftables")
        table = _slot_names(self._slot)[2]
        dev = self.host_veth
        drop = "meta protocol { ip, ip6 } drop"
        ruleset = f"""table netdev {table} {{
  chain egress {{ type filter hook egress device "{dev}" priority 0; {drop}; }}
  chain ingress {{ type filter hook ingress device "{dev}" priority 0; {drop}; }}
}}
"""
        self.restore_link()
        _check(["nft", "-f", "-"], input=ruleset)

    def restore_link(self) -> None:
        _quiet(["nft", "delete", "table", "netdev", _slot_names(self._slot)[2]])

    # -- WireGuard -------------------------------------------------------------------------

    def enable_userspace_wireguard(self) -> None:
        """Let netifd's ``wireguard`` proto work without the kernel module.

        Copies Debian's wireguard-go (and the glibc it needs) into the router, adds
        /dev/net/tun, and makes /lib/netifd/proto/wireguard.sh fall back to wireguard-go
        when ``ip link add ... type wireguard`` fails. ``wg`` then talks to it through
        /var/run/wireguard/<iface>.sock.
        """
        wireguard_go = Path(require_tool("wireguard-go", "wireguard-go"))
        ldd = _check(["ldd", str(wireguard_go)]).stdout
        libs = [word for word in ldd.split() if word.startswith("/")]
        for lib in libs:
            target = self.root / lib.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(lib).resolve(), target)
            target.chmod(0o755)
        shutil.copyfile(wireguard_go, self.root / "usr/bin/wireguard-go")
        (self.root / "usr/bin/wireguard-go").chmod(0o755)
        tun = self.root / "dev/net/tun"
        if not tun.exists():
            tun.parent.mkdir(exist_ok=True)
            os.mknod(tun, 0o666 | 0o020000, os.makedev(10, 200))
            tun.chmod(0o666)
        proto = self.root / "lib/netifd/proto/wireguard.sh"
        original = '\tip link add dev "${config}" type wireguard\n'
        patched = (
            '\tip link add dev "${config}" type wireguard 2>/dev/null ||'
            ' wireguard-go "${config}" 2>/dev/null\n'
        )
        text = proto.read_text()
        if patched not in text:
            if original not in text:
                raise RuntimeError(f"{proto} no longer has the line to patch: {original!r}")
            proto.write_text(text.replace(original, patched))

    # -- teardown --------------------------------------------------------------------------

    def stop(self) -> None:
        """Kill everything in the router, remove its namespaces, link, mounts and files."""
        if self._stopped:
            return
        self._stopped = True
        errors: list[str] = []

        def step(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except Exception as exc:
                errors.append(f"{what}: {exc!r}")

        step("stop delayer", self._stop_delayer)
        step("kill router processes", self._kill_pid_namespace)
        step("remove network", lambda: _teardown_slot_network(self._slot))
        step("unmount", lambda: _unmount_all_under(self._workdir))
        step("check mounts", self._assert_unmounted)
        step("remove files", lambda: shutil.rmtree(self._workdir, ignore_errors=True))
        step("release slot", lambda: _release_slot(self._slot))
        if errors:
            raise RuntimeError(f"router {self.netns} teardown: " + "; ".join(errors))

    def _stop_delayer(self) -> None:
        if self._delayer is not None:
            self._delayer.kill()
            self._delayer.wait(10)
            self._delayer = None

    def _kill_pid_namespace(self) -> None:
        unshare = self._unshare
        if unshare is None:
            return
        if unshare.poll() is None and self._init_pid:
            # The init is unshare's child until unshare reaps it: check before signalling so
            # a recycled PID is never hit. Its death makes the kernel kill the whole namespace.
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                pidfd = os.pidfd_open(self._init_pid)
                try:
                    status = Path(f"/proc/{self._init_pid}/status").read_text()
                    if f"\nPPid:\t{unshare.pid}\n" in status:
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                finally:
                    os.close(pidfd)
        try:
            unshare.wait(15)
        except subprocess.TimeoutExpired:
            unshare.kill()
            unshare.wait(5)

    def _assert_unmounted(self) -> None:
        left = _mounts_under(self._workdir)
        if left:
            raise RuntimeError(f"still mounted: {left}")


# -- NFQUEUE delayer (runs as a separate process, see add_latency) ---------------------------

_NFNL_SUBSYS_QUEUE = 3
_NFQNL_MSG_PACKET, _NFQNL_MSG_VERDICT, _NFQNL_MSG_CONFIG = 0, 1, 2
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLMSG_ERROR = 2
_NF_ACCEPT = 1


def _nla(attr_type: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, attr_type) + payload + b"\0" * (-length % 4)


def _nfq_message(msg_type: int, queue: int, attrs: Sequence[bytes], flags: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    nl_type = (_NFNL_SUBSYS_QUEUE << 8) | msg_type
    return struct.pack("=IHHII", 16 + len(body), nl_type, flags, 0, 0) + body


def nfqueue_delay(queue: int, delay_ms: float) -> None:
    """Hold every packet of NFQUEUE ``queue`` for ``delay_ms``, then accept it, in order."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(270, 5, 1)  # SOL_NETLINK, NETLINK_NO_ENOBUFS

    def request(attrs: Sequence[bytes]) -> None:
        sock.send(_nfq_message(_NFQNL_MSG_CONFIG, queue, attrs, _NLM_F_REQUEST | _NLM_F_ACK))
        reply = sock.recv(65536)
        if struct.unpack_from("=H", reply, 4)[0] == _NLMSG_ERROR:
            errno = -struct.unpack_from("=i", reply, 16)[0]
            if errno:
                raise OSError(errno, os.strerror(errno))

    request([_nla(1, struct.pack("!BxH", 1, 0))])  # NFQA_CFG_CMD: BIND
    request([
        _nla(2, struct.pack("!IB", 0, 1)),  # NFQA_CFG_PARAMS: copy metadata only
        _nla(3, struct.pack("!I", 65536)),  # NFQA_CFG_QUEUE_MAXLEN
        _nla(5, struct.pack("!I", 1)),  # NFQA_CFG_MASK: FAIL_OPEN
        _nla(4, struct.pack("!I", 1)),  # NFQA_CFG_FLAGS: FAIL_OPEN (accept if the queue fills)
    ])
    pending: deque[tuple[float, int]] = deque()
    stopping = False

    def on_term(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)

    def accept(packet_id: int) -> None:
        verdict = _nla(2, struct.pack("!II", _NF_ACCEPT, packet_id))  # NFQA_VERDICT_HDR
        sock.send(_nfq_message(_NFQNL_MSG_VERDICT, queue, [verdict], _NLM_F_REQUEST))

    print("ready", flush=True)
    while not stopping:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else 1.0
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if readable:
            data = sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, msg_type = struct.unpack_from("=IH", data, offset)
                if msg_type == (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_PACKET:
                    attr = offset + 20
                    while attr + 4 <= offset + length:
                        attr_len, attr_type = struct.unpack_from("=HH", data, attr)
                        if attr_type & 0x7FFF == 1:  # NFQA_PACKET_HDR: packet id first
                            packet_id = struct.unpack_from("!I", data, attr + 4)[0]
                            pending.append((time.monotonic() + delay_ms / 1000, packet_id))
                        attr += max(4, (attr_len + 3) & ~3)
                offset += max(16, (length + 3) & ~3)
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            accept(pending.popleft()[1])
    while pending:
        accept(pending.popleft()[1])


# -- pytest plugin ---------------------------------------------------------------------------

_ROUTERS_KEY = pytest.StashKey[list[OpenWrtRouter]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    # Routers are still up when the call report is made: attach their logs to a failure.
    if report.when == "call" and report.failed:
        for router in item.stash.get(_ROUTERS_KEY, []):
            report.sections.append((f"OpenWrt router {router.netns}", router.diagnostics()))
    return report


@pytest.fixture(scope="session")
def openwrt_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The rootfs, extracted and prepared once per session; routers run on copies of it."""
    problem = preflight_problem()
    if problem:
        skip_or_fail(problem)
    base = tmp_path_factory.mktemp("openwrt-rootfs")
    yield prepare_rootfs(rootfs_tarball(), base / "root")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def openwrt_router_factory(
    openwrt_rootfs: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OpenWrtRouter]]:
    """Start routers on demand (``factory(root_password=..., services=...)``); all are
    stopped when the test ends."""
    routers = request.node.stash.setdefault(_ROUTERS_KEY, [])

    def start(**kwargs: Any) -> OpenWrtRouter:
        workdir = Path(tempfile.mkdtemp(prefix="openwrt-", dir=tmp_path_factory.getbasetemp()))
        router = OpenWrtRouter.start(openwrt_rootfs, workdir, **kwargs)
        routers.append(router)
        return router

    yield start
    errors: list[str] = []
    for router in reversed(routers):
        try:
            router.stop()
        except Exception as exc:
            errors.append(str(exc))
    routers.clear()
    if errors:
        pytest.fail("; ".join(errors), pytrace=False)


@pytest.fixture
def openwrt_router(openwrt_router_factory: Callable[..., OpenWrtRouter]) -> OpenWrtRouter:
    """A freshly booted router (fresh copy of the rootfs), stopped after the test."""
    return openwrt_router_factory()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "nfqueue-delay":
        nfqueue_delay(int(sys.argv[2]), float(sys.argv[3]))
    else:
        sys.exit(f"usage: {sys.argv[0]} nfqueue-delay QUEUE MS")
