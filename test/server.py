"""Start and stop the MongoDB-compatible servers that Motor's tests run against.

Where the main test server comes from, in this order:

1. ``MOTOR_TEST_URI``: a server someone else runs. It is pinged, never started or stopped.
2. ``mongod`` on ``PATH``: started on a free loopback port with a fresh data directory.
3. FerretDB |ferretdb_version| with its SQLite backend: built once into
   ``~/.cache/motor-test/ferretdb-1.24.2/bin/ferretdb`` (needs Go 1.24 or newer), then started
   on a free ``127.0.0.1`` port with a fresh data directory.

A launched server's ``Server.uri`` is ``mongodb://[user:password@]127.0.0.1:PORT``: no path and
no options, so a test may append ``/?option=value``. Whatever else a client needs (TLS options)
is in ``Server.client_options``, keyword arguments for ``MongoClient``; ``Server.full_uri``
puts both into one self-contained URI. For ``MOTOR_TEST_URI`` the URI is used verbatim.

If none of these can be had, :class:`ServerUnavailable` is raised with instructions; the test
session turns that into a failed run, never into skipped tests. ``MOTOR_TEST_LAUNCHER=ferretdb``
(or ``mongod``) forces the choice between 2 and 3.

Variants, always launched by us (also when ``MOTOR_TEST_URI`` is set):

``plain``
    No TLS, no authentication.
``tls``
    TLS only, with a CA and a server certificate (SAN ``127.0.0.1`` and ``localhost``)
    generated at launch time into the server's data directory. ``Server.ca_file`` is the CA;
    clients need no certificate of their own.
``mtls``
    Like ``tls``, but the server also demands a client certificate signed by the same CA
    (FerretDB's ``--listen-tls-ca-file``). ``Server.client_cert_file`` holds the client's
    certificate and key in one PEM file (PyMongo's ``tlsCertificateKeyFile``).
``auth``
    SCRAM authentication enforced. ``Server.uri`` carries the credentials (``authSource``
    defaults to ``admin``); ``Server.username`` and ``Server.password`` hold them.
    FerretDB 1.24 enforces authentication only with ``--test-enable-new-auth``;
    ``--setup-username``/``--setup-password``/``--setup-database`` then create the first user
    (FerretDB refuses ``--setup-database`` without ``--test-enable-new-auth``, and with it but
    without a setup user nobody can log in). Measured: without credentials ``ping``, ``hello``
    and ``buildInfo`` still answer and every other command fails with code 13
    (``Unauthorized``, "Command find requires authentication"); a wrong password or an unknown
    user fails the SCRAM conversation with code 18 (``AuthenticationFailed``); SCRAM-SHA-256
    and SCRAM-SHA-1 both work; roles are not enforced (a user with ``roles: []`` may do
    anything). Without ``--test-enable-new-auth`` FerretDB/SQLite enforces nothing: it accepts
    the ``PLAIN`` mechanism with any credentials and rejects both SCRAM mechanisms as
    unsupported. For ``mongod`` the launcher passes ``--auth`` and creates a ``root`` user
    through the localhost exception.

No server outlives the run that started it:

* Each launch writes a JSON record (the PID file: server PID, owner PID and its start time,
  data directory) into the state directory ``~/.cache/motor-test/run/`` and keeps the server's
  data, certificates and log in a directory of the same name beside it.
* On Linux a server started for a test session gets ``PR_SET_PDEATHSIG``: it is sent SIGTERM
  as soon as the process that started it dies, even by ``kill -9``.
* Every launch first cleans up after earlier runs that died: records whose owner is gone have
  their server killed (only if the PID still runs a ``ferretdb``/``mongod`` whose command line
  names that record's data directory) and their data directory removed; directories without a
  record are removed too. Servers of runs that are still alive are left alone.
* Servers started with ``python -m test.server start`` are *detached*: they have no owner and
  run until ``python -m test.server stop`` (which stops them all, or only those it names).

Command line (run from the repository root)::

    python -m test.server start [--variant plain|tls|mtls|auth]   # prints the URI
    python -m test.server uri                                     # URI of the running server
    python -m test.server status                                  # every recorded server
    python -m test.server stop [URI|PORT|NAME|PID ...]            # stop detached servers
    python -m test.server build                                   # build FerretDB only

.. |ferretdb_version| replace:: 1.24.2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

FERRETDB_VERSION = "1.24.2"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
SERVER_PROGRAMS = ("ferretdb", "mongod")
VARIANTS = ("plain", "tls", "mtls", "auth")
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
BUILD_TIMEOUT = 1800.0

HOW_TO_PROVIDE = (
    "Provide a server in one of these ways:\n"
    "  * set MOTOR_TEST_URI=mongodb://127.0.0.1:27017/ to use a server that is already running;\n"
    "  * put mongod on PATH; the tests then start it on a free loopback port;\n"
    f"  * install Go 1.24 or newer; the tests then build FerretDB {FERRETDB_VERSION} once into\n"
    f"    ~/.cache/motor-test/ferretdb-{FERRETDB_VERSION}/ and start it."
)

Progress = Callable[[str], None]


class ServerUnavailable(RuntimeError):
    """No test server can be had on this machine; the message says how to provide one."""


class ServerStartError(RuntimeError):
    """A server was launched but did not come up; the message includes its log."""


@dataclasses.dataclass
class Server:
    """A running test server and how to reach it."""

    uri: str
    kind: str  # "ferretdb" or "mongod" when launched by us, "uri" for MOTOR_TEST_URI
    version: str  # FerretDB's own version for FerretDB, mongod's version otherwise
    host: str
    port: int
    flavor: str  # what answers: "ferretdb" or "mongodb" (detected with buildInfo)
    variant: str = "plain"
    client_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    ca_file: str | None = None
    client_cert_file: str | None = None
    username: str | None = None
    password: str | None = None
    pid: int | None = None
    name: str | None = None
    data_dir: str | None = None
    log_file: str | None = None
    startup_seconds: float | None = None
    compat_version: str | None = None  # the MongoDB version the server claims to be

    @property
    def is_ferretdb(self) -> bool:
        return self.flavor == "ferretdb"

    @property
    def full_uri(self) -> str:
        """``uri`` with ``client_options`` in its query string: usable on its own."""
        if not self.client_options:
            return self.uri
        query = {
            k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in self.client_options.items()
        }
        return f"{self.uri}/?{urllib.parse.urlencode(query, safe='/')}"

    def describe(self) -> str:
        what = f"{self.kind} {self.version}" if self.kind != "uri" else "MOTOR_TEST_URI"
        if self.kind == "uri":
            what += f" ({self.flavor} {self.version})"
        if self.compat_version and self.flavor == "ferretdb":
            what += f", MongoDB {self.compat_version} compatible"
        text = f"{what} at {_redact(self.full_uri)}"
        if self.startup_seconds is not None:
            text += f" (started in {self.startup_seconds:.2f} s)"
        return text


def _redact(uri: str) -> str:
    """``uri`` with the password replaced by ``***``."""
    return re.sub(r"^(mongodb(?:\+srv)?://[^:/@]*:)[^@/]*@", r"\1***@", uri)


# --------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """``~/.cache/motor-test``, or ``$MOTOR_TEST_CACHE_DIR``."""
    override = os.environ.get("MOTOR_TEST_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "motor-test"


def state_dir() -> Path:
    """Where PID records and data directories live: ``<cache>/run`` or ``$MOTOR_TEST_STATE_DIR``."""
    override = os.environ.get("MOTOR_TEST_STATE_DIR")
    return Path(override) if override else cache_dir() / "run"


def ferretdb_home() -> Path:
    return cache_dir() / f"ferretdb-{FERRETDB_VERSION}"


def ferretdb_binary() -> Path:
    return ferretdb_home() / "bin" / "ferretdb"


# --------------------------------------------------------------------------- processes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists"; it is dead for our purposes.
    stat = _proc_stat(pid)
    return not (stat is not None and stat[0] == "Z")


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _proc_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, to tell a reused PID apart."""
    stat = _proc_stat(pid)
    return stat[19] if stat is not None and len(stat) > 19 else None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
    except OSError:
        return None
    else:
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    # No /proc (macOS, BSD): ask ps.
    try:
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except OSError:
        return None
    return out.split() or None


def _is_our_server(pid: int, data_dir: str) -> bool:
    """True if PID runs ferretdb/mongod with ``data_dir`` on its command line."""
    argv = _cmdline(pid)
    if not argv or not _pid_alive(pid):
        return False
    program = os.path.basename(argv[0])
    return program in SERVER_PROGRAMS and any(data_dir in arg for arg in argv[1:])


def _server_pids(data_dir: str, recorded_pid: int | None) -> list[int]:
    """Every live server process of ours that uses ``data_dir``."""
    pids: set[int] = set()
    if recorded_pid and _is_our_server(recorded_pid, data_dir):
        pids.add(recorded_pid)
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if entry.name.isdigit() and _is_our_server(int(entry.name), data_dir):
                pids.add(int(entry.name))
    return sorted(pids)


def _terminate(pids: Sequence[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``timeout`` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in pids:
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies (Linux only).

    Strictly, when the thread that forks dies: launch from a thread that lives as long as the
    server should (pytest's main thread does).
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:  # runs in the child between fork and exec: no imports, no locks
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


# --------------------------------------------------------------------------- state directory


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _owner_alive(record: dict[str, Any]) -> bool:
    pid = record.get("owner_pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return False
    started = record.get("owner_start")
    return started is None or started == _proc_start_time(pid)


def _record_server_alive(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    data_dir = record.get("data_dir")
    return isinstance(pid, int) and isinstance(data_dir, str) and _is_our_server(pid, data_dir)


def cleanup_stale(state: Path | None = None) -> list[str]:
    """Kill servers and remove data directories left behind by runs that died.

    Returns a line per thing cleaned up.
    """
    state = state or state_dir()
    state.mkdir(parents=True, exist_ok=True)
    cleaned: list[str] = []
    with _locked(state / ".lock"):
        for path in sorted(state.glob("*.json")):
            record = _read_record(path)
            data_dir = str(path.with_suffix(""))
            if record is not None:
                # Keep servers of live runs, and detached servers that still run.
                if _owner_alive(record):
                    continue
                if record.get("detached") and _record_server_alive(record):
                    continue
                data_dir = str(record.get("data_dir") or data_dir)
                pids = _server_pids(data_dir, record.get("pid"))
                if pids:
                    _terminate(pids)
                    cleaned.append(f"killed stale server pid {pids} of {path.name}")
            if os.path.isdir(data_dir):
                shutil.rmtree(data_dir, ignore_errors=True)
                cleaned.append(f"removed stale data directory {data_dir}")
            path.unlink(missing_ok=True)
        for entry in state.iterdir():
            if entry.is_dir() and not entry.with_suffix(".json").exists():
                for pid in _server_pids(str(entry), None):
                    _terminate([pid])
                    cleaned.append(f"killed orphaned server pid {pid} in {entry}")
                shutil.rmtree(entry, ignore_errors=True)
                cleaned.append(f"removed orphaned data directory {entry}")
    return cleaned


def list_records(state: Path | None = None) -> list[dict[str, Any]]:
    """Every record in the state directory, each with an ``alive`` flag added."""
    state = state or state_dir()
    records = []
    for path in sorted(state.glob("*.json")) if state.is_dir() else []:
        record = _read_record(path)
        if record is not None:
            record["alive"] = _record_server_alive(record)
            record["record_file"] = str(path)
            records.append(record)
    return records


# --------------------------------------------------------------------------- FerretDB build


def _ferretdb_works(binary: Path) -> bool:
    if not os.access(binary, os.X_OK):
        return False
    try:
        out = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and f"v{FERRETDB_VERSION}" in out.stdout


def find_go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go")):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_ferretdb(progress: Progress | None = None) -> Path:
    """Return the FerretDB binary, building it first if it is missing or broken.

    ``go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`` compiles, but the binary
    panics at startup ("Invalid build/version/version.txt file content"): FerretDB reads its
    version from an embedded ``build/version/version.txt`` that release builds generate and the
    module does not ship. So the module's source is copied out of Go's module cache, that file
    is written, and ``go build`` runs on the copy.
    """
    binary = ferretdb_binary()
    if _ferretdb_works(binary):
        return binary
    go = find_go()
    if go is None:
        raise ServerUnavailable(
            f"FerretDB {FERRETDB_VERSION} is not built yet and Go is not installed, "
            "so it cannot be built.\n" + HOW_TO_PROVIDE
        )
    home = ferretdb_home()
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / "build.lock"):
        if _ferretdb_works(binary):  # built by a concurrent run while we waited
            return binary
        _build_ferretdb(go, home, binary, progress or (lambda _msg: None))
    return binary


def _build_ferretdb(go: str, home: Path, binary: Path, progress: Progress) -> None:
    log_path = home / "build.log"
    src = home / "src"
    env = dict(os.environ, GO111MODULE="on", GOFLAGS="-mod=mod")
    started = time.monotonic()
    progress(f"building FerretDB {FERRETDB_VERSION} with {go} (first run only; log: {log_path})")
    with open(log_path, "w") as log:

        def go_run(args: list[str], cwd: Path) -> str:
            log.write(f"$ {' '.join(args)}\n")
            log.flush()
            try:
                done = subprocess.run(
                    args,
                    cwd=cwd,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    timeout=BUILD_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise ServerUnavailable(
                    f"building FerretDB timed out after {BUILD_TIMEOUT:.0f} s; see {log_path}"
                ) from exc
            log.write(done.stdout)
            log.flush()
            if done.returncode != 0:
                raise ServerUnavailable(
                    f"building FerretDB {FERRETDB_VERSION} failed ({' '.join(args[:3])} "
                    f"exited {done.returncode}). Last lines of {log_path}:\n"
                    + _tail(log_path)
                    + "\n"
                    + HOW_TO_PROVIDE
                )
            return done.stdout

        with tempfile.TemporaryDirectory() as scratch:
            info = json.loads(
                go_run(
                    [go, "mod", "download", "-json", f"{FERRETDB_MODULE}@v{FERRETDB_VERSION}"],
                    Path(scratch),
                )
            )
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(info["Dir"], src)
        for root, dirs, files in os.walk(src):
            for name in dirs + files:
                path = os.path.join(root, name)
                os.chmod(path, os.stat(path).st_mode | 0o200)
        (src / "build" / "version" / "version.txt").write_text(f"v{FERRETDB_VERSION}\n")
        binary.parent.mkdir(parents=True, exist_ok=True)
        tmp_binary = binary.with_name(f".ferretdb-{os.getpid()}.tmp")
        go_run(
            [go, "build", "-trimpath", "-buildvcs=false", "-o", str(tmp_binary), "./cmd/ferretdb"],
            src,
        )
    if not _ferretdb_works(tmp_binary):
        raise ServerUnavailable(f"the FerretDB binary built at {tmp_binary} does not run")
    os.replace(tmp_binary, binary)
    shutil.rmtree(src, ignore_errors=True)
    progress(f"built FerretDB {FERRETDB_VERSION} in {time.monotonic() - started:.0f} s")


# --------------------------------------------------------------------------- certificates


@dataclasses.dataclass
class TLSFiles:
    ca_file: str
    server_cert: str
    server_key: str
    server_pem: str  # certificate and key in one file (mongod's --tlsCertificateKeyFile)
    client_pem: str  # client certificate and key in one file (PyMongo's tlsCertificateKeyFile)


def make_certificates(directory: Path) -> TLSFiles:
    """Generate a throwaway CA, a server certificate for 127.0.0.1/localhost and a client one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Motor test suite"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("Motor test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        common_name: str, usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common_name))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server_cert, server_key = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
        ),
    )
    client_cert, client_key = leaf("motor-test-client", ExtendedKeyUsageOID.CLIENT_AUTH, None)

    def write(filename: str, *chunks: bytes) -> str:
        path = directory / filename
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        return str(path)

    pem = serialization.Encoding.PEM
    server_cert_pem = server_cert.public_bytes(pem)
    return TLSFiles(
        ca_file=write("ca.pem", ca_cert.public_bytes(pem)),
        server_cert=write("server-cert.pem", server_cert_pem),
        server_key=write("server-key.pem", pem_key(server_key)),
        server_pem=write("server.pem", server_cert_pem, pem_key(server_key)),
        client_pem=write("client.pem", client_cert.public_bytes(pem), pem_key(client_key)),
    )


# --------------------------------------------------------------------------- launching


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def choose_launcher() -> str:
    """``mongod`` if it is on PATH, else ``ferretdb``; ``$MOTOR_TEST_LAUNCHER`` overrides."""
    forced = os.environ.get("MOTOR_TEST_LAUNCHER", "auto").strip().lower()
    if forced in SERVER_PROGRAMS:
        return forced
    if forced not in ("", "auto"):
        raise ServerUnavailable(
            f"MOTOR_TEST_LAUNCHER={forced!r}: expected 'auto', 'ferretdb' or 'mongod'"
        )
    return "mongod" if shutil.which("mongod") else "ferretdb"


def _server_info(uri: str, timeout: float, **options: Any) -> dict[str, Any]:
    """Ping ``uri`` and return its buildInfo."""
    from pymongo import MongoClient

    with MongoClient(
        uri, serverSelectionTimeoutMS=int(timeout * 1000), connect=False, **options
    ) as client:
        client.admin.command("ping")
        info: dict[str, Any] = client.admin.command("buildInfo")
        return info


def _apply_build_info(server: Server, info: dict[str, Any]) -> None:
    server.compat_version = str(info.get("version", "unknown"))
    if "ferretdbVersion" in info:
        server.flavor = "ferretdb"
        server.version = str(info["ferretdbVersion"]).lstrip("v")
    else:
        server.flavor = "mongodb"
        server.version = server.compat_version


def _command(
    kind: str, binary: str, variant: str, data_dir: Path, port: int, server: Server
) -> list[str]:
    """The server's argv; fills in the variant's fields of ``server``."""
    tls: TLSFiles | None = None
    if variant in ("tls", "mtls"):
        tls = make_certificates(data_dir / "tls")
        server.ca_file = tls.ca_file
        server.client_options = {"tls": True, "tlsCAFile": tls.ca_file}
        if variant == "mtls":
            server.client_cert_file = tls.client_pem
            server.client_options["tlsCertificateKeyFile"] = tls.client_pem
    if variant == "auth":
        server.username = server.username or "motor-test"
        server.password = server.password or secrets.token_hex(12)
    if kind == "ferretdb":
        args = [
            binary,
            "--handler=sqlite",
            f"--sqlite-url=file:{data_dir}/db/",
            f"--state-dir={data_dir}",
            "--telemetry=disable",
            "--log-level=warn",
            "--debug-addr=-",
        ]
        if tls is not None:
            args += [
                "--listen-addr=",
                f"--listen-tls={HOST}:{port}",
                f"--listen-tls-cert-file={tls.server_cert}",
                f"--listen-tls-key-file={tls.server_key}",
            ]
            if variant == "mtls":
                args.append(f"--listen-tls-ca-file={tls.ca_file}")
        else:
            args.append(f"--listen-addr={HOST}:{port}")
        if variant == "auth":
            args += [
                "--test-enable-new-auth",
                "--setup-database=admin",
                f"--setup-username={server.username}",
                f"--setup-password={server.password}",
            ]
        return args
    args = [
        binary,
        "--dbpath",
        str(data_dir / "db"),
        "--port",
        str(port),
        "--bind_ip",
        HOST,
        "--unixSocketPrefix",
        str(data_dir),
        "--setParameter",
        "enableTestCommands=1",
    ]
    if tls is not None:
        args += ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", tls.server_pem]
        args += ["--tlsCAFile", tls.ca_file]
        if variant == "tls":
            args.append("--tlsAllowConnectionsWithoutCertificates")
    if variant == "auth":
        args.append("--auth")
    return args


def _uri(server: Server) -> str:
    userinfo = ""
    if server.username is not None and server.password is not None:
        userinfo = (
            f"{urllib.parse.quote_plus(server.username)}:"
            f"{urllib.parse.quote_plus(server.password)}@"
        )
    return f"mongodb://{userinfo}{server.host}:{server.port}"


class _PortTaken(Exception):
    pass


def _spawn(args: list[str], data_dir: Path, log: Path, detached: bool) -> subprocess.Popen[bytes]:
    """Start a server process in ``data_dir``, its output appended to ``log``: in a session
    of its own when ``detached``, else (on Linux) killed when this process dies."""
    with open(log, "ab") as log_handle:
        return subprocess.Popen(
            args,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=detached,
            preexec_fn=(
                None if detached or not sys.platform.startswith("linux") else _die_with_parent()
            ),
        )


def _wait_ready(proc: subprocess.Popen[bytes], server: Server, log: Path, timeout: float) -> None:
    """Wait until the server accepts TCP connections and answers ``ping``."""
    deadline = time.monotonic() + timeout

    def check_alive() -> None:
        if proc.poll() is not None:
            text = _tail(log)
            if "address already in use" in text.lower():
                raise _PortTaken
            raise ServerStartError(
                f"{server.kind} exited with code {proc.returncode} during startup. "
                f"Last lines of {log}:\n{text}"
            )

    while True:
        check_alive()
        try:
            socket.create_connection((server.host, server.port), timeout=0.25).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{server.kind} did not listen on {server.host}:{server.port} within "
                    f"{timeout:.0f} s. Last lines of {log}:\n{_tail(log)}"
                ) from None
            time.sleep(0.01)
    bare = f"mongodb://{server.host}:{server.port}/"
    while True:
        check_alive()
        try:
            info = _server_info(bare, 1.0, directConnection=True, **server.client_options)
            _apply_build_info(server, info)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{server.kind} on {server.host}:{server.port} did not answer ping within "
                    f"{timeout:.0f} s ({exc}). Last lines of {log}:\n{_tail(log)}"
                ) from exc
            time.sleep(0.05)


def _create_mongod_user(server: Server) -> None:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]]
    with MongoClient(
        f"mongodb://{server.host}:{server.port}/", serverSelectionTimeoutMS=10000, connect=False
    ) as client:
        client.admin.command("createUser", server.username, pwd=server.password, roles=["root"])


_PROCESSES: dict[int, subprocess.Popen[bytes]] = {}


def launch(
    variant: str = "plain",
    *,
    detached: bool = False,
    progress: Progress | None = None,
    timeout: float = START_TIMEOUT,
    port: int | None = None,
) -> Server:
    """Start a new server of ``variant`` on a free loopback port (or on ``port``) and return it
    once it answers.

    A server that is not ``detached`` belongs to this process: stop it with :func:`stop`; if this
    process dies first, the server is killed (Linux) or cleaned up by the next launch.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    kind = choose_launcher()
    if kind == "ferretdb":
        binary = str(ensure_ferretdb(progress))
    else:
        found = shutil.which("mongod")
        if found is None:
            raise ServerUnavailable("MOTOR_TEST_LAUNCHER=mongod but mongod is not on PATH")
        binary = found
    state = state_dir()
    cleanup_stale(state)
    name = f"{kind}-{variant}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    data_dir = state / name
    record_path = state / f"{name}.json"
    log = data_dir / "server.log"
    record: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "variant": variant,
        "detached": detached,
        # The launching process. A detached server outlives it; any other server dies with it.
        "owner_pid": os.getpid(),
        "owner_start": _proc_start_time(os.getpid()),
        "data_dir": str(data_dir),
        "pid": None,
        "created": time.time(),
    }
    with _locked(state / ".lock"):
        _write_record(record_path, record)
        (data_dir / "db").mkdir(parents=True)
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(1 if port is not None else 5):
            server = Server(
                uri="",
                kind=kind,
                version="",
                host=HOST,
                port=_free_port() if port is None else port,
                flavor="",
                variant=variant,
                name=name,
                data_dir=str(data_dir),
                log_file=str(log),
            )
            args = _command(kind, binary, variant, data_dir, server.port, server)
            started = time.monotonic()
            proc = _spawn(args, data_dir, log, detached)
            server.pid = proc.pid
            record["pid"] = proc.pid
            _write_record(record_path, record)
            try:
                _wait_ready(proc, server, log, timeout)
            except _PortTaken:
                proc.wait()
                continue
            server.startup_seconds = time.monotonic() - started
            break
        else:
            if port is not None:
                raise ServerStartError(f"{kind}: port {port} is taken; see {log}")
            raise ServerStartError(f"{kind}: could not find a free port; see {log}")
        if variant == "auth" and kind == "mongod":
            _create_mongod_user(server)
        server.uri = _uri(server)
        record["server"] = dataclasses.asdict(server)
        _write_record(record_path, record)
        if not detached:
            _PROCESSES[proc.pid] = proc
        return server
    except BaseException:
        if proc is not None:
            _terminate([proc.pid])
            proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
        record_path.unlink(missing_ok=True)
        raise


def stop(server: Server) -> None:
    """Stop a server started by :func:`launch` and remove its data directory and record."""
    if server.kind == "uri" or server.name is None:
        return
    data_dir = server.data_dir or str(state_dir() / server.name)
    pids = _server_pids(data_dir, server.pid)
    if pids:
        _terminate(pids)
    if server.pid is not None:
        proc = _PROCESSES.pop(server.pid, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT)
    shutil.rmtree(data_dir, ignore_errors=True)
    Path(data_dir).with_suffix(".json").unlink(missing_ok=True)


def kill(server: Server) -> None:
    """Kill a server started by :func:`launch` with SIGKILL, as a crash would, and reap it.

    Its data directory, record and port number stay, for :func:`restart`; :func:`stop` still
    cleans up after it.
    """
    if server.kind == "uri" or server.name is None:
        raise ValueError("only a server started by launch() can be killed")
    data_dir = server.data_dir or str(state_dir() / server.name)
    for pid in _server_pids(data_dir, server.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        proc = _PROCESSES.pop(pid, None)
        if proc is not None:
            proc.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)


def restart(
    server: Server, *, progress: Progress | None = None, timeout: float = START_TIMEOUT
) -> Server:
    """Start again a server that :func:`kill` killed (or that died): same program, port, data
    directory and options.  Updates ``server.pid`` (and the record) and returns ``server``.

    The new process, like :func:`launch`'s, gets SIGTERM when the *thread* that called this
    dies: call it from a thread that outlives the server.  The TLS variants are not supported
    (their certificates would be made anew).
    """
    if server.kind == "uri" or server.name is None:
        raise ValueError("only a server started by launch() can be restarted")
    if server.variant in ("tls", "mtls"):
        raise ValueError(f"restart() does not support the {server.variant} variant")
    data_dir = Path(server.data_dir or state_dir() / server.name)
    record_path = data_dir.with_suffix(".json")
    if _server_pids(str(data_dir), server.pid):
        raise ServerStartError(f"{server.name} is still running")
    if server.kind == "ferretdb":
        binary = str(ensure_ferretdb(progress))
    else:
        found = shutil.which("mongod")
        if found is None:
            raise ServerUnavailable("mongod is no longer on PATH")
        binary = found
    args = _command(server.kind, binary, server.variant, data_dir, server.port, server)
    log = Path(server.log_file or data_dir / "server.log")
    detached = False
    with _locked(data_dir.parent / ".lock"):
        record = _read_record(record_path) or {}
        detached = bool(record.get("detached"))
    started = time.monotonic()
    proc = _spawn(args, data_dir, log, detached)
    server.pid = proc.pid
    with _locked(data_dir.parent / ".lock"):
        record = _read_record(record_path) or {}
        record["pid"] = proc.pid
        if "server" in record:
            record["server"] = dataclasses.asdict(server)
        _write_record(record_path, record)
    if not detached:
        _PROCESSES[proc.pid] = proc
    try:
        _wait_ready(proc, server, log, timeout)
    except _PortTaken:
        proc.wait()
        _PROCESSES.pop(proc.pid, None)
        raise ServerStartError(
            f"{server.kind}: port {server.port} was taken while the server was down; see {log}"
        ) from None
    except BaseException:
        _terminate([proc.pid])
        proc.wait()
        _PROCESSES.pop(proc.pid, None)
        raise
    server.startup_seconds = time.monotonic() - started
    return server


def from_uri(uri: str) -> Server:
    """Describe the server at ``uri`` (``MOTOR_TEST_URI``) after checking that it answers.

    It must answer within the URI's ``serverSelectionTimeoutMS``, 10 s by default.
    """
    from pymongo.uri_parser import parse_uri

    try:
        parsed = parse_uri(uri)
    except Exception as exc:
        raise ServerUnavailable(
            f"MOTOR_TEST_URI={uri!r} is not a valid MongoDB URI: {exc}"
        ) from exc
    timeout = float(parsed["options"].get("serverSelectionTimeoutMS", 10000)) / 1000
    host, port = parsed["nodelist"][0] if parsed["nodelist"] else (HOST, 27017)
    server = Server(uri=uri, kind="uri", version="", host=host, port=port, flavor="")
    try:
        _apply_build_info(server, _server_info(uri, timeout))
    except Exception as exc:
        raise ServerUnavailable(
            f"MOTOR_TEST_URI={uri} does not answer ping within {timeout:.0f} s: {exc}\n"
            "Start that server, or unset MOTOR_TEST_URI to let the tests start one."
        ) from exc
    return server


class ServerPool:
    """The servers of one test session: the main one, and variants started on first use."""

    def __init__(self, progress: Progress | None = None) -> None:
        self._progress = progress
        self._servers: dict[str, Server] = {}
        self._errors: dict[str, BaseException] = {}

    def main(self) -> Server:
        """``MOTOR_TEST_URI`` if set, else a launched plain server."""
        if "main" not in self._servers:
            uri = os.environ.get("MOTOR_TEST_URI", "").strip()
            self._servers["main"] = from_uri(uri) if uri else self._launch("plain")
        return self._servers["main"]

    def get(self, variant: str) -> Server:
        """A launched server of ``variant``, started on first call and reused afterwards."""
        if variant not in self._servers:
            if variant in self._errors:  # do not retry a failed launch for every test
                raise self._errors[variant]
            try:
                self._servers[variant] = self._launch(variant)
            except (ServerUnavailable, ServerStartError) as exc:
                self._errors[variant] = exc
                raise
        return self._servers[variant]

    def prepare(self) -> None:
        """Build what launching a server needs (FerretDB) now, outside any test's timeout."""
        if choose_launcher() == "ferretdb":
            ensure_ferretdb(self._progress)

    @property
    def started(self) -> dict[str, Server]:
        return dict(self._servers)

    def _launch(self, variant: str) -> Server:
        return launch(variant, progress=self._progress)

    def stop_all(self) -> None:
        while self._servers:
            _, server = self._servers.popitem()
            stop(server)


# --------------------------------------------------------------------------- command line


def _detached_servers() -> list[dict[str, Any]]:
    return [r for r in list_records() if r.get("detached") and r["alive"] and "server" in r]


def _named(records: list[dict[str, Any]], wanted: str) -> dict[str, Any] | None:
    """The detached server ``wanted`` names, for ``stop``: by URI or record name, else by
    port, else by PID (a port and another server's PID may be the same number)."""
    keys: list[Callable[[dict[str, Any], Server], set[str]]] = [
        lambda record, server: {server.uri, server.full_uri, str(record["name"])},
        lambda record, server: {str(server.port)},
        lambda record, server: {str(record["pid"])},
    ]
    for key in keys:
        for record in records:
            if wanted in key(record, Server(**record["server"])):
                return record
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m test.server",
        description="Start, inspect and stop the servers Motor's tests run against.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start_cmd = sub.add_parser("start", help="start a detached server and print its URI")
    start_cmd.add_argument("--variant", choices=VARIANTS, default="plain")
    start_cmd.add_argument("--json", action="store_true", help="print every detail as JSON")
    stop_cmd = sub.add_parser(
        "stop", help="stop the detached servers named (by URI, port, name or PID), or all"
    )
    stop_cmd.add_argument(
        "servers",
        nargs="*",
        metavar="SERVER",
        help="a server's URI (as `start` printed it), port, record name or PID; "
        "without any, every detached server stops",
    )
    uri_cmd = sub.add_parser("uri", help="print the URI of the server the tests would use")
    uri_cmd.add_argument("--variant", choices=VARIANTS, default="plain")
    sub.add_parser("status", help="list recorded servers and whether they are alive")
    sub.add_parser("build", help=f"build FerretDB {FERRETDB_VERSION} if needed")
    sub.add_parser("cleanup", help="clean up after test runs that died")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        if args.command == "start":
            server = launch(args.variant, detached=True, progress=progress)
            if args.json:
                print(json.dumps(dict(dataclasses.asdict(server), full_uri=server.full_uri)))
            else:
                print(server.full_uri)
            print(f"started {server.describe()}", file=sys.stderr)
        elif args.command == "stop":
            servers = _detached_servers()
            if args.servers:
                chosen: list[dict[str, Any]] = []
                for wanted in args.servers:
                    found = _named(servers, wanted)
                    if found is None:
                        print(
                            f"error: no detached server is {wanted!r}; "
                            "`python -m test.server status` lists them",
                            file=sys.stderr,
                        )
                        return 2
                    if found not in chosen:
                        chosen.append(found)
                servers = chosen
            for record in servers:
                stop(Server(**record["server"]))
                print(f"stopped {record['name']} (pid {record['pid']})")
            for line in cleanup_stale():
                print(line)
            if not servers:
                print("no detached server was running", file=sys.stderr)
        elif args.command == "uri":
            env_uri = os.environ.get("MOTOR_TEST_URI", "").strip()
            if env_uri and args.variant == "plain":
                print(env_uri)
                return 0
            matches = [r for r in _detached_servers() if r.get("variant") == args.variant]
            if not matches:
                print(
                    f"no detached {args.variant} server is running; start one with "
                    f"`python -m test.server start --variant {args.variant}`",
                    file=sys.stderr,
                )
                return 1
            print(Server(**matches[-1]["server"]).full_uri)
        elif args.command == "status":
            env_uri = os.environ.get("MOTOR_TEST_URI", "").strip()
            print(f"MOTOR_TEST_URI: {env_uri or '(not set)'}")
            print(f"launcher: {choose_launcher()}; state directory: {state_dir()}")
            binary = ferretdb_binary()
            print(f"FerretDB binary: {binary} ({'ok' if _ferretdb_works(binary) else 'not built'})")
            records = list_records()
            for record in records:
                owner = "detached" if record.get("detached") else f"owner pid {record['owner_pid']}"
                state = "alive" if record["alive"] else "dead"
                uri = Server(**record["server"]).full_uri if "server" in record else "-"
                print(f"{record['name']}: pid {record['pid']} {state}, {owner}, {uri}")
            if not records:
                print("no recorded servers")
        elif args.command == "build":
            print(ensure_ferretdb(progress))
        elif args.command == "cleanup":
            for line in cleanup_stale() or ["nothing to clean up"]:
                print(line)
    except (ServerUnavailable, ServerStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
