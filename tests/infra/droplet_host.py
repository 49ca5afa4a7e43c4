"""A real "droplet stand-in" for tests: this machine's sshd + wireguard-go in a netns.

Each :class:`DropletHost` gets its own network namespace (reached from the host
over a veth pair) and its own private mount namespace in which ``/etc/wireguard``,
``/run`` (hence ``/var/run/wireguard`` and sshd's ``/run/sshd``) and
``/var/lib/cloud`` are temp directories. Code under test talks to it exactly as
it talks to a DigitalOcean droplet: SSH as root to ``addr:22``.

Also a pytest plugin: ``pytest_plugins = ("tests.infra.droplet_host",)`` provides
the ``droplet_host`` and ``droplet_host_factory`` fixtures. Needs root,
openssh-server, wireguard-tools, wireguard-go, iproute2 and util-linux.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

NETNS_PREFIX = "cr-drop-"
# 10.198.<n>.0/24 per instance; picked as unlikely to clash with real networks.
SUBNET_PREFIX = "10.198"
REQUIRED_TOOLS = (
    *("sshd", "ssh-keygen"),  # openssh-server, openssh-client
    *("wg", "wg-quick", "wireguard-go"),  # wireguard-tools, wireguard-go
    *("ip", "unshare", "nsenter"),  # iproute2, util-linux
)
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# sbin is often missing from non-root PATHs; sshd/ip live there.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), _SYSTEM_PATH])
_CHILD_ENV = {
    "PATH": _SYSTEM_PATH,
    "LANG": "C.UTF-8",
    "HOME": "/root",
}
START_TIMEOUT = 15.0
# While "not booted" (see DropletHost.close_ssh) sshd listens here instead of on ssh_port:
# port 22 refuses connections, as on a droplet whose sshd has not started yet, while the
# stand-in itself can still tell when its sshd is ready.
CLOSED_SSH_PORT = 2200


class DropletHostUnavailable(RuntimeError):
    """This machine cannot host a droplet stand-in (tools, privileges, kernel)."""


def _tool(name: str) -> str:
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        raise DropletHostUnavailable(f"{name} not found")
    return path


def unavailable_reason() -> str | None:
    """Why a DropletHost cannot start here, or None if it should."""
    if os.geteuid() != 0:
        return "droplet stand-in needs root (netns, mounts, sshd)"
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t, path=_SEARCH_PATH) is None]
    if missing:
        return f"droplet stand-in needs missing tools: {', '.join(missing)}"
    if not os.path.exists("/dev/net/tun"):
        return "droplet stand-in needs /dev/net/tun for wireguard-go"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip locally, but never let CI silently skip the real-droplet tests."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must not skip: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(
    argv: list[str], *, check: bool = True, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, input=input, capture_output=True, text=True, env=_CHILD_ENV, cwd="/", timeout=timeout
    )
    if check and proc.returncode != 0:
        output = proc.stderr.strip() or proc.stdout.strip()
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}): {output}")
    return proc


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):  # ended meanwhile
        return ""


def wg_keypair() -> tuple[str, str]:
    """(private, public) WireGuard keys, base64, from ``wg genkey``/``wg pubkey``."""
    wg = _tool("wg")
    private = _run([wg, "genkey"]).stdout.strip()
    public = _run([wg, "pubkey"], input=private + "\n").stdout.strip()
    return private, public


def _interface_settings(conf_text: str) -> tuple[list[str], int]:
    """Address list and MTU from a wg-quick config's [Interface] section."""
    addresses: list[str] = []
    mtu = 1420  # wg-quick's fallback when it cannot derive one from the route
    section = ""
    for raw in conf_text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.lower()
            continue
        if section != "[interface]" or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key.lower() == "address":
            addresses += [a.strip() for a in value.split(",") if a.strip()]
        elif key.lower() == "mtu":
            mtu = int(value)
    return addresses, mtu


class DropletHost:
    """One droplet stand-in. Use as a context manager or call start()/stop()."""

    def __init__(self) -> None:
        self.netns = ""
        self.addr = ""
        self.host_addr = ""
        self.ssh_port = 22
        self.host_public_key = ""
        self._listen_port = self.ssh_port
        self._index: int | None = None
        self._veth = ""
        self._tmp: Path | None = None
        self._sshd: subprocess.Popen[bytes] | None = None
        self._sshd_log: Path | None = None
        self.startup_seconds = 0.0

    # -- paths (host side of what the droplet sees) --------------------------------

    @property
    def root(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("DropletHost not started")
        return self._tmp

    @property
    def wg_dir(self) -> Path:
        """Host directory the droplet sees as /etc/wireguard."""
        return self.root / "etc-wireguard"

    @property
    def run_dir(self) -> Path:
        """Host directory the droplet sees as /run (= /var/run)."""
        return self.root / "run"

    @property
    def cloud_dir(self) -> Path:
        """Host directory the droplet sees as /var/lib/cloud."""
        return self.root / "var-lib-cloud"

    @property
    def host_key_path(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def authorized_keys_path(self) -> Path:
        return self.root / "authorized_keys"

    @property
    def sshd_log(self) -> str:
        return self._sshd_log.read_text(errors="replace") if self._sshd_log else ""

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> DropletHost:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise DropletHostUnavailable(reason)
        began = time.monotonic()
        try:
            self._tmp = Path(tempfile.mkdtemp(prefix="camreach-droplet-"))
            self._create_netns()
            self._prepare_dirs()
            self._start_sshd()
            self._wait_for_sshd(began + START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Kill everything in the netns, drop it, delete temp dirs. Idempotent."""
        if self.netns:
            self._kill_netns_processes()
        if self._sshd is not None:
            with contextlib.suppress(ProcessLookupError):
                self._sshd.kill()
            self._sshd.wait(timeout=10)
            self._sshd = None
        if self.netns:
            # The veth pair dies with the namespace; delete explicitly in case a
            # straggler process keeps the namespace itself alive.
            _run(["ip", "link", "del", self._veth], check=False)
            _run(["ip", "netns", "del", self.netns], check=False)
            self.netns = ""
        if self._tmp is not None:
            # Mounts lived only in the (now dead) private mount namespace, so
            # this deletes plain host directories, never the bind targets.
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _create_netns(self) -> None:
        # `ip netns add` fails if the name exists, which makes it an atomic
        # allocator across concurrent instances and pytest-xdist workers.
        last_error = ""
        for index in range(1, 255):
            added = _run(["ip", "netns", "add", f"{NETNS_PREFIX}{index}"], check=False)
            if added.returncode:
                if "exists" in added.stderr:
                    continue
                raise DropletHostUnavailable(f"cannot create a netns: {added.stderr.strip()}")
            self.netns = f"{NETNS_PREFIX}{index}"
            subnet = f"{SUBNET_PREFIX}.{index}.0/24"
            if _run(["ip", "-4", "route", "show", "root", subnet]).stdout.strip():
                last_error = f"{subnet} already routed on this host"
                _run(["ip", "netns", "del", self.netns], check=False)
                self.netns = ""
                continue
            self._index = index
            break
        else:
            raise DropletHostUnavailable(f"no free {NETNS_PREFIX}<n> namespace ({last_error})")
        self.host_addr = f"{SUBNET_PREFIX}.{self._index}.1"
        self.addr = f"{SUBNET_PREFIX}.{self._index}.2"
        self._veth = f"crd{self._index}h"
        ns = ["ip", "-n", self.netns]
        _run(["ip", "link", "add", self._veth, "type", "veth",
              "peer", "name", "eth0", "netns", self.netns])  # fmt: skip
        _run(["ip", "addr", "add", f"{self.host_addr}/24", "dev", self._veth])
        _run(["ip", "link", "set", self._veth, "up"])
        _run([*ns, "addr", "add", f"{self.addr}/24", "dev", "eth0"])
        _run([*ns, "link", "set", "eth0", "up"])
        _run([*ns, "link", "set", "lo", "up"])
        _run([*ns, "route", "add", "default", "via", self.host_addr])

    def _prepare_dirs(self) -> None:
        self.wg_dir.mkdir(mode=0o700)
        self.cloud_dir.mkdir(mode=0o755)
        # Real /run is 0755; sshd insists its privsep dir is root-owned, not writable by others.
        self.run_dir.mkdir(mode=0o755)
        (self.run_dir / "sshd").mkdir(mode=0o755)
        (self.run_dir / "wireguard").mkdir(mode=0o755)
        self.authorized_keys_path.touch(mode=0o600)
        keygen = [_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", self.netns]
        _run([*keygen, "-f", str(self.host_key_path)])
        # "type base64" without the comment: what known_hosts lines and pins use.
        self.host_public_key = " ".join(Path(f"{self.host_key_path}.pub").read_text().split()[:2])
        self._write_sshd_config()

    def _write_sshd_config(self) -> None:
        (self.root / "sshd_config").write_text(
            "\n".join(
                [
                    f"ListenAddress {self.addr}:{self._listen_port}",
                    f"HostKey {self.host_key_path}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys_path}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "UseDNS no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "X11Forwarding no",
                    # Code under test may open several connections/channels at once.
                    "MaxStartups 100",
                    "MaxSessions 64",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )

    def _mount_script(self) -> str:
        """Shell run inside the new mount namespace before exec'ing sshd."""
        lines = ["set -e"]
        run_targets = dict.fromkeys(["/run", os.path.realpath("/var/run")])
        binds = [(self.run_dir, t) for t in run_targets]
        binds += [(self.wg_dir, "/etc/wireguard"), (self.cloud_dir, "/var/lib/cloud")]
        for i, (source, target) in enumerate(binds):
            if not os.path.isdir(target):
                lines += self._overlay_mountpoint(i, target)
            lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
        return "\n".join(lines)

    def _overlay_mountpoint(self, i: int, target: str) -> list[str]:
        # A missing bind target (e.g. /var/lib/cloud on a non-cloud machine) is
        # created in an overlay over its nearest existing ancestor, so the host
        # filesystem never gains the directory.
        ancestor = os.path.dirname(target)
        while not os.path.isdir(ancestor):
            ancestor = os.path.dirname(ancestor)
        if ancestor == "/":
            raise DropletHostUnavailable(f"refusing to overlay / to create {target}")
        scratch = self.root / f"overlay{i}"
        scratch.mkdir()
        upper, work = scratch / "upper", scratch / "work"
        rel = os.path.relpath(target, ancestor)
        q = shlex.quote
        return [
            # tmpfs: overlay's upperdir may not live on overlay (Docker roots).
            f"mount -t tmpfs tmpfs {q(str(scratch))}",
            f"mkdir -p {q(str(upper / rel))} {q(str(work))}",
            f"mount -t overlay overlay -o lowerdir={ancestor},upperdir={upper},workdir={work} "
            f"{q(ancestor)}",
        ]

    def _start_sshd(self) -> None:
        self._sshd_log = self.root / "sshd.log"
        sshd = shlex.join([_tool("sshd"), "-D", "-e", "-f", str(self.root / "sshd_config")])
        script = f"{self._mount_script()}\nexec {sshd}"
        # ip netns exec, unshare (no --fork) and `exec` all exec in place, so
        # the Popen pid *is* sshd: run() enters its namespaces via nsenter.
        with self._sshd_log.open("wb") as log:
            self._sshd = subprocess.Popen(
                [_tool("ip"), "netns", "exec", self.netns,
                 _tool("unshare"), "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_CHILD_ENV, cwd="/",
            )  # fmt: skip

    def _wait_for_sshd(self, deadline: float) -> None:
        """Until sshd answers with its banner (it is in its accept loop, signals handled)."""
        assert self._sshd is not None
        while time.monotonic() < deadline:
            if self._sshd.poll() is not None:
                raise RuntimeError(f"sshd exited ({self._sshd.returncode}):\n{self.sshd_log}")
            with socket.socket() as sock:
                sock.settimeout(0.5)
                try:
                    sock.connect((self.addr, self._listen_port))
                    banner = sock.recv(64)
                except OSError:
                    time.sleep(0.02)
                    continue
            if banner.startswith(b"SSH-"):
                return
        raise RuntimeError(f"sshd not ready after {START_TIMEOUT}s:\n{self.sshd_log}")

    def _kill_netns_processes(self) -> None:
        deadline = time.monotonic() + 5
        sig = signal.SIGTERM
        while True:
            listed = _run(["ip", "netns", "pids", self.netns], check=False).stdout
            pids = [int(p) for p in listed.split()]
            if not pids:
                return
            if time.monotonic() > deadline:
                if sig == signal.SIGKILL:
                    return  # unkillable (D state); netns del still unnames it
                sig, deadline = signal.SIGKILL, time.monotonic() + 5
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if self._sshd is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._sshd.wait(timeout=0.05)
            time.sleep(0.05)

    def _restart_sshd(self) -> None:
        """SIGHUP: sshd re-executes itself in place (same pid and namespaces), rereading its
        config and host keys; returns once the new sshd answers on its listen port."""
        if self._sshd is None:
            raise RuntimeError("DropletHost not started")
        listening = self.sshd_log.count("Server listening on")
        os.kill(self._sshd.pid, signal.SIGHUP)
        deadline = time.monotonic() + START_TIMEOUT
        # The old sshd may still answer for a moment: wait for the new one's log line first.
        while self.sshd_log.count("Server listening on") <= listening:
            if self._sshd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not restart:\n{self.sshd_log}")
            time.sleep(0.01)
        self._wait_for_sshd(deadline)

    # -- droplet-side operations ------------------------------------------------------

    @property
    def ssh_open(self) -> bool:
        """Whether sshd listens on ``addr:ssh_port`` (see :meth:`close_ssh`)."""
        return self._listen_port == self.ssh_port

    def close_ssh(self) -> None:
        """Refuse SSH on ``addr:ssh_port``, like a droplet that has not booted yet (its sshd
        starts after cloud-init wrote its host key). sshd keeps running, so :meth:`run`
        works; it listens on ``CLOSED_SSH_PORT`` meanwhile."""
        if self.ssh_open:
            self._listen_port = CLOSED_SSH_PORT
            self._write_sshd_config()
            self._restart_sshd()

    def open_ssh(self) -> None:
        """Accept SSH on ``addr:ssh_port`` again (presenting the current host key)."""
        if not self.ssh_open:
            self._listen_port = self.ssh_port
            self._write_sshd_config()
            self._restart_sshd()

    def set_host_key(self, private_openssh: str, public: str) -> None:
        """Install this ed25519 host key pair as sshd's (what cloud-init's ``ssh_keys`` does)
        and make sshd present it from now on; ``host_public_key`` follows."""
        key = self.host_key_path
        key.write_text(private_openssh if private_openssh.endswith("\n")
                       else private_openssh + "\n")
        key.chmod(0o600)
        Path(f"{key}.pub").write_text(public.strip() + "\n")
        derived = _run([_tool("ssh-keygen"), "-y", "-f", str(key)]).stdout
        if derived.split()[:2] != public.split()[:2]:
            raise ValueError("the public host key does not belong to the private one")
        self.host_public_key = " ".join(public.split()[:2])
        self._restart_sshd()

    def take_down_wg0(self) -> None:
        """Remove wg0 and stop its wireguard-go, if it runs (a machine replaced in place)."""
        self.run("ip link del wg0 2>/dev/null || true", check=True)
        deadline = time.monotonic() + 10
        while True:
            listed = _run(["ip", "netns", "pids", self.netns], check=False).stdout.split()
            alive = [int(p) for p in listed if _comm(p) == "wireguard-go"]
            if not alive:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("wireguard-go did not exit")
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            time.sleep(0.05)
        (self.run_dir / "wireguard" / "wg0.sock").unlink(missing_ok=True)

    def authorize(self, public_key_openssh: str) -> None:
        """Let this OpenSSH-format public key log in as root."""
        with self.authorized_keys_path.open("a") as f:
            f.write(public_key_openssh.strip() + "\n")

    def run(
        self, cmd: str, *, check: bool = False, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command as root on the droplet (its netns and mount view)."""
        if self._sshd is None:
            raise RuntimeError("DropletHost not started")
        # root's login shell, as sshd would use (bash on Ubuntu: `<(...)` works).
        shell = pwd.getpwuid(0).pw_shell or "/bin/sh"
        argv = [_tool("nsenter"), "--target", str(self._sshd.pid), "--mount", "--net", "--",
                shell, "-c", cmd]  # fmt: skip
        return _run(argv, check=check, input=input, timeout=timeout)

    def bring_up_wg0(self, conf_text: str) -> None:
        """Install /etc/wireguard/wg0.conf and bring wg0 up on wireguard-go.

        Done by hand rather than with ``wg-quick up`` because wg-quick prefers the
        kernel module where one exists (e.g. Ubuntu CI runners), and the stand-in
        should behave the same everywhere. Like ``wg-quick up`` minus
        PostUp/PreUp hooks, DNS and AllowedIPs routes.
        """
        conf = self.wg_dir / "wg0.conf"
        conf.write_text(conf_text)
        conf.chmod(0o600)
        addresses, mtu = _interface_settings(conf_text)
        script = [
            "set -e",
            "wireguard-go wg0",
            'stripped="$(wg-quick strip wg0)"',
            'printf "%s\\n" "$stripped" | wg setconf wg0 /dev/stdin',
            *(f"ip address add {shlex.quote(a)} dev wg0" for a in addresses),
            f"ip link set dev wg0 mtu {mtu} up",
        ]
        self.run("\n".join(script), check=True)

    def mark_first_boot_done(self) -> None:
        """Create /var/lib/cloud/instance/boot-finished as cloud-init would."""
        instance = self.cloud_dir / "instance"
        instance.mkdir(parents=True, exist_ok=True)
        (instance / "boot-finished").write_text(f"{time.time():.2f} - camreach droplet stand-in\n")

    def __repr__(self) -> str:
        return f"DropletHost(netns={self.netns!r}, addr={self.addr!r})"


@pytest.fixture
def droplet_host_factory() -> Iterator[Callable[[], DropletHost]]:
    """Start any number of DropletHosts; all are stopped at teardown."""
    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)
    hosts: list[DropletHost] = []

    def make() -> DropletHost:
        host = DropletHost()
        hosts.append(host)
        try:
            host.start()
        except DropletHostUnavailable as exc:
            skip_or_fail(str(exc))
        return host

    try:
        yield make
    finally:
        for host in reversed(hosts):
            host.stop()


@pytest.fixture
def droplet_host(droplet_host_factory: Callable[[], DropletHost]) -> DropletHost:
    """A started droplet stand-in (sshd on ``addr:22``, root login by key)."""
    return droplet_host_factory()
