"""`camreach flash` end to end: the real command as a subprocess on loopback, real TFTP clients.

Every test listens on 127.0.0.1 with a free high port. The only non-loopback address used is
the TL-MR3020 v3's 192.168.0.225, and only where the pre-flight must refuse it before any
socket is bound, so no packet is ever sent to it.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tftpy

REPO = Path(__file__).resolve().parents[1]
MODEL = "tl-mr3020-v3"
IMAGE_NAME = "openwrt-23.05.5-ramips-mt76x8-tplink_tl-mr3020-v3-squashfs-tftp-recovery.bin"
MAX_IMAGE = 8126464  # 128 KiB + 7808 KiB, the TL-MR3020 v3's largest recovery image
WAIT = 15.0  # generous upper bound for any awaited line; tests finish far sooner


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_state(path: Path) -> tuple[str, int, list[str]]:
    return sha256(path.read_bytes()), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FlashProcess:
    """`python -m bot.flash.cli ...`, with its stdout readable line by line as it runs."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.flash.cli", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out, True)),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err, False)),
        ]
        for t in self._readers:
            t.start()

    def _pump(self, stream: io.TextIOBase, sink: list[str], lines: bool) -> None:
        for line in stream:
            sink.append(line)
            if lines:
                self._lines.put(line)
        if lines:
            self._lines.put(None)

    def wait_for(self, text: str, timeout: float = WAIT) -> str:
        """The first stdout line containing ``text``; fails if the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} in time:\n{self.stdout}") from None
            if line is None:
                self.proc.wait(WAIT)
                raise AssertionError(
                    f"exited ({self.proc.returncode}) before {text!r}:\n{self.stdout}{self.stderr}"
                )
            if text in line:
                return line

    def finish(self, timeout: float = WAIT) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        for t in self._readers:
            t.join(WAIT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    (tmp_path / "downloads").mkdir()
    path = tmp_path / "downloads" / IMAGE_NAME
    # Not a multiple of any block size, so the last block is a short one.
    path.write_bytes(os.urandom(1_500_000 + 123))
    return path


@pytest.fixture
def port() -> int:
    return free_udp_port()


@pytest.fixture
def spawn() -> Iterator[Callable[..., FlashProcess]]:
    """Start the command; whatever a failing test leaves running is killed afterwards."""
    procs: list[FlashProcess] = []

    def run(*args: str) -> FlashProcess:
        procs.append(FlashProcess(*args))
        return procs[-1]

    yield run
    for p in procs:
        p.close()


@pytest.fixture
def start(spawn: Callable[..., FlashProcess]) -> Callable[..., FlashProcess]:
    """Serve the image on loopback and wait until it is ready for a client."""

    def run(image: Path, port: int, *extra: str, timeout: float = 30) -> FlashProcess:
        opts = f"--model {MODEL} --listen 127.0.0.1 --port {port} --timeout {timeout}".split()
        p = spawn(*opts, "--image", str(image), *extra)
        p.wait_for("Waiting up to")
        return p

    return run


def curl(port: int, name: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    url = f"tftp://127.0.0.1:{port}/{name}"
    cmd = ["curl", "-sS", "--max-time", "20", *extra, "-o", str(out), url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def assert_next_steps(stdout: str) -> None:
    for text in (
        "Do not power the router off",
        "back to DHCP",
        "http://192.168.1.1",
        "ssh root@192.168.1.1",
        "/setup",
    ):
        assert text in stdout


@pytest.mark.parametrize("blksize", [None, 1468])
def test_curl_fetches_the_identical_image_and_the_command_exits_0(
    start: Callable[..., FlashProcess], image: Path, port: int, tmp_path: Path, blksize: int | None
) -> None:
    p = start(image, port)
    extra = ["--tftp-blksize", str(blksize)] if blksize else []
    got = tmp_path / "fetched.bin"

    r = curl(port, "tp_recovery.bin", got, *extra)

    assert r.returncode == 0, r.stderr
    assert sha256(got.read_bytes()) == sha256(image.read_bytes())
    assert p.finish() == 0, p.stderr
    assert "Router 127.0.0.1:" in p.stdout
    if blksize:
        assert f"block size {blksize}" in p.stdout
    assert "100%" in p.stdout
    assert "Transfer complete: 1.4 MiB" in p.stdout
    assert_next_steps(p.stdout)
    assert p.stderr == ""


@pytest.mark.parametrize("options", [{}, {"blksize": 1468, "tsize": 0}])
def test_tftpy_client_fetches_the_identical_image_with_negotiated_options(
    start: Callable[..., FlashProcess], image: Path, port: int, options: dict[str, int]
) -> None:
    p = start(image, port)
    client = tftpy.TftpClient("127.0.0.1", port, options=dict(options))
    buf = io.BytesIO()

    client.download("tp_recovery.bin", buf, timeout=5)

    assert sha256(buf.getvalue()) == sha256(image.read_bytes())
    if options:
        negotiated = client.context.options
        assert int(negotiated["blksize"]) == 1468
        assert int(negotiated["tsize"]) == image.stat().st_size
    assert p.finish() == 0, p.stderr
    assert "Transfer complete" in p.stdout


def test_other_names_paths_and_uploads_are_refused_and_the_image_is_never_written(
    start: Callable[..., FlashProcess], image: Path, port: int, tmp_path: Path
) -> None:
    before = file_state(image)
    p = start(image, port)
    refused = tmp_path / "refused"
    refused.mkdir()

    wrong = curl(port, "openwrt.bin", refused / "a")
    assert wrong.returncode == 68  # curl: TFTP "file not found"
    p.wait_for("Refused 'openwrt.bin'")

    up = curl(port, "../etc/passwd", refused / "b", "--path-as-is")
    assert up.returncode == 69  # curl: TFTP "access violation"
    p.wait_for("Refused '../etc/passwd'")

    absolute = curl(port, "%2Fetc%2Fpasswd", refused / "c")
    assert absolute.returncode == 69
    p.wait_for("Refused '/etc/passwd'")

    with pytest.raises(tftpy.TftpException):
        tftpy.TftpClient("127.0.0.1", port, flock=False).upload(
            "tp_recovery.bin", io.BytesIO(b"not firmware"), timeout=5
        )
    p.wait_for("uploads are not accepted")

    assert not any(f.stat().st_size for f in refused.iterdir())
    assert file_state(image) == before
    # Still serving the one file after all that.
    ok = curl(port, "tp_recovery.bin", tmp_path / "ok.bin")
    assert ok.returncode == 0, ok.stderr
    assert p.finish() == 0
    assert file_state(image) == before


def _preflight_case(case: str, request: pytest.FixtureRequest, image: Path, port: int) -> list[str]:
    """Arguments for one failing pre-flight; may prepare files or occupy the port."""
    args = ["--model", MODEL, "--image", str(image), "--listen", "127.0.0.1", "--port", str(port)]
    if case == "missing image":
        image.unlink()
    elif case == "oversize image":
        image.write_bytes(b"\0" * (MAX_IMAGE + 1))
    elif case == "--sha256 mismatch":
        args += ["--sha256", "0" * 64]
    elif case == "sha256sums mismatch":
        (image.parent / "sha256sums").write_text(f"{'ab' * 32} *{image.name}\n")
    elif case == "address not configured":
        args[args.index("127.0.0.1")] = "192.168.0.225"
    elif case == "port not bindable":
        blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        blocker.bind(("127.0.0.1", port))
        request.addfinalizer(blocker.close)
    return args


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing image", ["does not exist"]),
        ("oversize image", ["too big", "at most 8126464 bytes", "tftp-recovery"]),
        ("--sha256 mismatch", ["SHA-256", "--sha256 says", "do not flash"]),
        ("sha256sums mismatch", ["SHA-256", "sha256sums says", "do not flash"]),
        (
            "address not configured",
            [
                "No interface of this PC has the address 192.168.0.225",
                "sudo ip addr add 192.168.0.225/24 dev",
                "networksetup -setmanual",
                "netsh interface ipv4 set address",
                "not 255",
            ],
        ),
        ("port not bindable", ["UDP port", "is taken by another program", "ss -ulpn"]),
    ],
)
def test_failed_preflight_exits_3_with_what_to_do_and_serves_nothing(
    spawn: Callable[..., FlashProcess],
    request: pytest.FixtureRequest,
    image: Path,
    port: int,
    case: str,
    expected: list[str],
) -> None:
    if case == "address not configured" and _is_local("192.168.0.225"):
        pytest.skip("this machine has 192.168.0.225")
    p = spawn(*_preflight_case(case, request, image, port))

    assert p.finish() == 3
    for text in expected:
        assert text in p.stderr
    assert p.stderr.startswith("Error: ")
    assert "served:" not in p.stdout  # printed only once the port is bound
    assert "Waiting" not in p.stdout


def _is_local(ip: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            return False
        return True


def test_no_router_within_timeout_exits_4_with_the_troubleshooting_list(
    start: Callable[..., FlashProcess], image: Path, port: int
) -> None:
    began = time.monotonic()
    p = start(image, port, timeout=1)

    assert p.finish() == 4
    assert time.monotonic() - began < 10
    for text in (
        "did not fetch the image within 1 s",
        "Cable:",
        "Address:",
        "Recovery mode:",
        "Firewall:",
        "not 255",
    ):
        assert text in p.stderr
    assert "Transfer complete" not in p.stdout


def _rrq(name: str) -> bytes:
    return struct.pack("!H", 1) + name.encode() + b"\0octet\0"


def _ack(block: int) -> bytes:
    return struct.pack("!HH", 4, block)


def test_a_client_that_stops_midway_is_reported_and_a_retry_is_served(
    start: Callable[..., FlashProcess], image: Path, port: int, tmp_path: Path
) -> None:
    p = start(image, port, "--retransmit-timeout", "0.2", "--retries", "1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quitter:
        quitter.settimeout(WAIT)
        quitter.sendto(_rrq("tp_recovery.bin"), ("127.0.0.1", port))
        data, tid = quitter.recvfrom(2048)
        assert struct.unpack("!HH", data[:4]) == (3, 1)
        quitter.sendto(_ack(1), tid)
        data, _ = quitter.recvfrom(2048)
        assert struct.unpack("!HH", data[:4]) == (3, 2)
        # ...and never acknowledges block 2.
        line = p.wait_for("stopped at")
    assert "the client stopped answering" in line
    assert "Still waiting" in line

    r = curl(port, "tp_recovery.bin", tmp_path / "retry.bin")

    assert r.returncode == 0, r.stderr
    assert sha256((tmp_path / "retry.bin").read_bytes()) == sha256(image.read_bytes())
    assert p.finish() == 0
    assert "Transfer complete" in p.stdout


def test_list_models_runs_standalone(spawn: Callable[..., FlashProcess]) -> None:
    p = spawn("--list-models")

    assert p.finish() == 0
    for key in ("tl-mr3020-v3", "tl-mr6400-v5", "tl-wr902ac-v3"):
        assert key in p.stdout
    assert "192.168.0.225" in p.stdout
    assert "https://openwrt.org/toh/tp-link/tl-mr3020_v3" in p.stdout
