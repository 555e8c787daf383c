"""Servers for Motor's benchmarks: the Go canned server and a FerretDB to compare with.

:func:`build_canned_server` compiles ``bench/cannedserver`` with the local Go toolchain
into ``~/.cache/motor-bench/`` (once per source version); :class:`CannedServer` runs
it on a free ``127.0.0.1`` port for the life of a ``with`` block.  The server exits by
itself when this process dies, because it watches its stdin pipe.

:func:`ferretdb_server` finds a real MongoDB-compatible server: ``--ferretdb-uri``,
then ``MOTOR_BENCH_FERRETDB_URI``, then a server launched through the test suite's
``test.server.launch()`` if that module exists; otherwise it says why there is none.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
CANNED_SOURCE = Path(__file__).resolve().parent / "cannedserver"
FERRETDB_URI_ENV = "MOTOR_BENCH_FERRETDB_URI"


def git(*args: str) -> str | None:
    """Run ``git`` in the repository; its output, or None if git cannot run."""
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


class BenchSetupError(RuntimeError):
    """A benchmark server could not be built or started; the message says why."""


def cache_dir() -> Path:
    """Where built benchmark binaries live (``~/.cache/motor-bench``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "motor-bench"


def _source_digest() -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in CANNED_SOURCE.iterdir() if p.name == "go.mod" or p.suffix == ".go")
    for path in files:
        if path.name.endswith("_test.go"):
            continue
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def go_version(go: str | None = None) -> str | None:
    """``go version`` output, or None without a Go toolchain."""
    go = go or shutil.which("go")
    if go is None:
        return None
    try:
        out = subprocess.run(
            [go, "version"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip()


def build_canned_server(go: str | None = None) -> Path:
    """Compile the canned server if this source version is not built yet; return its path."""
    go = go or shutil.which("go")
    if go is None:
        raise BenchSetupError(
            "the canned server needs a Go toolchain (go on PATH) to be built; "
            "install Go 1.22 or newer"
        )
    binary = cache_dir() / f"cannedserver-{_source_digest()}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f"{binary.name}.tmp{os.getpid()}")
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    result = subprocess.run(
        [go, "build", "-trimpath", "-o", str(tmp), "."],
        cwd=CANNED_SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BenchSetupError(f"go build of {CANNED_SOURCE} failed:\n{result.stderr}")
    os.replace(tmp, binary)
    return binary


def _cpu_times(pid: int) -> tuple[float, float] | None:
    """User and system CPU seconds of a process, from /proc (Linux only)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


@dataclass
class CannedServer:
    """A running canned server; use as a context manager.

    ``gomaxprocs`` limits the Go scheduler (1 keeps one core free for the Python
    client on a small machine); ``args`` are extra command-line flags.
    """

    binary: Path
    gomaxprocs: int = 1
    args: tuple[str, ...] = ()
    #: CPUs to confine the server to (Linux), or None for wherever the kernel puts it.
    cpus: frozenset[int] | None = None
    port: int = 0
    summary: str = ""
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        """A URI for the server; ``directConnection`` since it is a standalone."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self._proc is None else self._proc.pid

    def cpu_times(self) -> tuple[float, float] | None:
        """User and system CPU seconds the server has used so far (Linux), or None."""
        return None if self._proc is None else _cpu_times(self._proc.pid)

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and read its port from the first line of its stdout."""
        self._log = tempfile.TemporaryFile()
        env = {**os.environ, "GOMAXPROCS": str(self.gomaxprocs)}
        self._proc = subprocess.Popen(
            [str(self.binary), "-addr", "127.0.0.1:0", "-exit-on-stdin-eof", *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            self.stop()
            raise BenchSetupError(
                f"canned server did not print its port within {timeout:.0f} s: "
                f"{line!r} {self.summary}"
            )
        self.port = int(line)
        if self.cpus:
            self._pin(self.cpus)

    def _pin(self, cpus: frozenset[int]) -> None:
        # Every thread the server has now; threads it starts later inherit the mask.
        assert self._proc is not None
        pid = self._proc.pid
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), cpus)

    def stop(self) -> None:
        """Close the server's stdin (it exits) and keep its request summary."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if self._log is not None:
            self._log.seek(0)
            lines = self._log.read().decode(errors="replace").splitlines()
            self._log.close()
            self._log = None
            exits = [line for line in lines if "exiting" in line]
            self.summary = (exits or lines or [""])[-1]

    def __enter__(self) -> CannedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ExternalServer:
    """A MongoDB-compatible server to benchmark against (FerretDB, usually)."""

    uri: str
    description: str
    stop: Callable[[], None] = lambda: None
    #: The server's process, when this script launched it (it can then be pinned).
    pid: int | None = None

    def pin(self, cpus: set[int] | frozenset[int]) -> None:
        """Confine every thread of the server's process to ``cpus`` (threads it starts
        later inherit the mask)."""
        if self.pid is None:
            return
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except FileNotFoundError:  # the server has exited: its error is what matters
            return
        for tid in tids:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), cpus)


def _print_progress(message: str) -> None:
    print(f"  [test.server] {message}", file=sys.stderr, flush=True)


def ferretdb_server(cli_uri: str | None) -> tuple[ExternalServer | None, str]:
    """Find the FerretDB (or other real) server to benchmark against.

    Returns the server (or None) and a note saying where it came from or why there is
    none.  A server launched here belongs to this process: call its ``stop``.
    """
    if cli_uri:
        return ExternalServer(cli_uri, f"--ferretdb-uri {cli_uri}"), "from --ferretdb-uri"
    env_uri = os.environ.get(FERRETDB_URI_ENV, "").strip()
    if env_uri:
        return ExternalServer(env_uri, f"{FERRETDB_URI_ENV}={env_uri}"), f"from {FERRETDB_URI_ENV}"
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from test import server as test_server  # the repository's test launcher
    except ImportError as exc:
        return None, (
            f"skipped: no --ferretdb-uri, no {FERRETDB_URI_ENV}, and the test launcher "
            f"test.server cannot be imported ({exc})"
        )
    launch: Any = getattr(test_server, "launch", None)
    stop: Any = getattr(test_server, "stop", None)
    if launch is None or stop is None:
        return None, (
            f"skipped: no --ferretdb-uri, no {FERRETDB_URI_ENV}, and test.server has no "
            "launch()/stop() API"
        )
    print("  starting a server with test.server.launch() (may build FerretDB once)", flush=True)
    try:
        launched = launch("plain", progress=_print_progress)
    except Exception as exc:
        return None, f"skipped: test.server.launch() failed: {exc}"
    describe = getattr(launched, "describe", None)
    description = describe() if callable(describe) else str(launched.uri)
    return (
        ExternalServer(
            launched.uri, description, lambda: stop(launched), getattr(launched, "pid", None)
        ),
        "launched with test.server",
    )


def server_cpus() -> frozenset[int] | None:
    """The CPU to confine a local benchmark server to: the last one this process may use.

    With the server on a CPU of its own, every request crosses to another core, as it
    would to a server on another core or host, whatever the scheduler decides from one
    run to the next.  Left to the scheduler, a sequential client and the server sometimes
    share a core, where a round trip costs no wake-up of an idle core and sequential
    latency becomes the two processes' CPU time alone; the mix changes between runs.
    None on a single CPU, or where affinity cannot be set.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    mine = sorted(os.sched_getaffinity(0))
    return frozenset(mine[-1:]) if len(mine) > 1 else None


@contextlib.contextmanager
def canned_server(
    gomaxprocs: int = 1, args: tuple[str, ...] = (), cpus: frozenset[int] | None = None
) -> Iterator[CannedServer]:
    """Build (if needed) and run the canned server for the ``with`` block."""
    server = CannedServer(build_canned_server(), gomaxprocs=gomaxprocs, args=args, cpus=cpus)
    with server:
        yield server
