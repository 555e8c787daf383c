"""Run the code of Motor 3.7.1's published tutorials, unchanged, against this driver.

Used by ``test/test_tutorials.py``. Three parts:

Fetching
    :func:`motor_sdist` downloads the Motor 3.7.1 sdist from PyPI with ``pip download`` into
    ``<cache>/motor-sdist/`` (see :func:`test.server.cache_dir`) and checks it against the pinned
    sha256 (the one PyPI publishes for ``motor-3.7.1.tar.gz``). The tutorials are read from the
    tarball; nothing of Motor's is copied into the repository.

Extracting
    :func:`parse_rst` finds the ``sphinx.ext.doctest`` directives of a reST document
    (``testsetup``, ``doctest``, ``testcleanup``) in document order; ``:hide:`` blocks are
    included, ``>>>`` text that is not inside such a directive (doctest blocks, ``::`` literal
    blocks) is not. :func:`build_groups` then groups them the way ``sphinx.ext.doctest`` does
    (a ``*`` block goes to every group; the global setup is prepended to every group's setup),
    and :func:`global_setup_imports` takes the import statements of ``doctest_global_setup``
    from Motor's ``doc/conf.py`` (the rest of it checks the server version of Motor's own CI).

Running (in a child process: ``python -m test.tutorial_doctest doctest|aiohttp ...``)
    Each group runs as ``sphinx.ext.doctest`` runs it: a fresh namespace, the setup code (as one
    ``exec`` example), then each doctest block with Python's :mod:`doctest` (examples compiled in
    ``single`` mode, Sphinx's default flags ``ELLIPSIS | IGNORE_EXCEPTION_DETAIL |
    DONT_ACCEPT_TRUE_FOR_1``), then the cleanup code; if the setup fails, the group's tests and
    cleanup are not run. Every warning is an error, except the ones in :data:`ALLOWED_WARNINGS`
    (each caused by the tutorial's own code, see there). The child writes one JSON line per event
    to a results file, so a parent sees how far a run got even if it hangs and has to be killed.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import doctest
import gc
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent

MOTOR_VERSION = "3.7.1"
SDIST_NAME = f"motor-{MOTOR_VERSION}.tar.gz"
# The sha256 PyPI publishes for motor-3.7.1.tar.gz (https://pypi.org/simple/motor/).
SDIST_SHA256 = "27b4d46625c87928f331a6ca9d7c51c2f518ba0e270939d395bc1ddc89d64526"
SDIST_ROOT = f"motor-{MOTOR_VERSION}"

# sphinx.ext.doctest's default for ``doctest_default_flags``; Motor's conf.py keeps it.
SPHINX_FLAGS = doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL | doctest.DONT_ACCEPT_TRUE_FOR_1

# Where the tutorials expect MongoDB: ``MotorClient()``, ``pymongo.MongoClient()``,
# "localhost:27017".
TUTORIAL_HOST = "127.0.0.1"
TUTORIAL_PORT = 27017


class FetchError(RuntimeError):
    """An sdist (Motor 3.7.1's) could not be had."""


# --------------------------------------------------------------------------- fetching


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def motor_sdist(cache: Path, timeout: float = 90.0) -> Path:
    """The verified Motor 3.7.1 sdist in ``cache``, downloaded from PyPI on first use.

    Raises :class:`FetchError` (with pip's output) if it cannot be downloaded or if its sha256
    is not the pinned one.
    """
    return pypi_sdist(cache, "motor", MOTOR_VERSION, SDIST_SHA256, timeout)


def pypi_sdist(cache: Path, project: str, version: str, sha256: str, timeout: float = 90.0) -> Path:
    """The sdist of ``project`` ``version`` in ``cache``, downloaded from PyPI on first use
    and checked against ``sha256``; :class:`FetchError` if it cannot be had or differs."""
    import fcntl

    cache.mkdir(parents=True, exist_ok=True)
    name = f"{project}-{version}.tar.gz"
    target = cache / name
    with open(cache / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file() and _sha256(target) == sha256:
            return target
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            command = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                "--dest",
                scratch,
                f"{project}=={version}",
            ]
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise FetchError(
                    f"`{' '.join(command)}` did not finish within {timeout:.0f} s"
                ) from exc
            downloaded = Path(scratch) / name
            if done.returncode != 0 or not downloaded.is_file():
                raise FetchError(
                    f"`{' '.join(command)}` exited with {done.returncode}.\n"
                    f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
                )
            actual = _sha256(downloaded)
            if actual != sha256:
                raise FetchError(
                    f"{name} from PyPI has sha256 {actual}, expected the pinned "
                    f"{sha256}; refusing to run its code"
                )
            os.replace(downloaded, target)
    return target


def read_member(sdist: Path, relative: str) -> str:
    """The text of ``motor-3.7.1/<relative>`` in the sdist."""
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.extractfile(f"{SDIST_ROOT}/{relative}")
        if member is None:
            raise FetchError(f"{SDIST_ROOT}/{relative} is not a regular file in {sdist}")
        return member.read().decode("utf-8")


def extract_package(sdist: Path, cache: Path) -> Path:
    """Unpack the sdist under ``cache`` (for the oracle run); return its root directory."""
    root = cache / f"{SDIST_ROOT}-{SDIST_SHA256[:12]}"
    if (root / SDIST_ROOT / "motor" / "__init__.py").is_file():
        return root / SDIST_ROOT
    scratch = Path(tempfile.mkdtemp(dir=cache))
    with tarfile.open(sdist, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(scratch, filter="data")
        else:  # pragma: no cover - Python without extraction filters
            tar.extractall(scratch)
    try:
        os.replace(scratch, root)
    except OSError:  # extracted concurrently
        shutil.rmtree(scratch, ignore_errors=True)
    return root / SDIST_ROOT


# --------------------------------------------------------------------------- extracting

TEST_DIRECTIVES = ("testsetup", "doctest", "testcleanup")
# sphinx.ext.doctest directives the tutorials do not use; met in a document, they stop the run
# rather than being silently ignored.
UNSUPPORTED_DIRECTIVES = ("testcode", "testoutput")
# Directives whose body is not reST (so no directive can hide inside it).
LITERAL_DIRECTIVES = ("code-block", "code", "sourcecode", "parsed-literal", "raw", "math")

_DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. +(?P<name>[\w:+.-]+?) ?::(?: +(?P<arg>.*?))? *$")
_EXPLICIT = re.compile(r"^ *\.\.(?: |$)")
_OPTION = re.compile(r"^ +:(?P<name>[\w-]+):(?: +(?P<value>.*?))? *$")


@dataclasses.dataclass
class Block:
    """One ``testsetup``/``doctest``/``testcleanup`` directive."""

    kind: str
    groups: list[str]
    code: str
    line: int  # 1-based line of the first line of code in the document
    hidden: bool = False
    flags: dict[int, bool] = dataclasses.field(default_factory=dict)
    origin: str = ""  # where the code comes from if not the document (the global setup)


@dataclasses.dataclass
class Group:
    name: str
    setup: list[Block] = dataclasses.field(default_factory=list)
    tests: list[Block] = dataclasses.field(default_factory=list)
    cleanup: list[Block] = dataclasses.field(default_factory=list)

    def add(self, block: Block, prepend: bool = False) -> None:
        if block.kind == "testsetup":
            if prepend:
                self.setup.insert(0, block)
            else:
                self.setup.append(block)
        elif block.kind == "testcleanup":
            self.cleanup.append(block)
        else:
            self.tests.append(block)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _parse_flags(value: str, where: str) -> dict[int, bool]:
    flags: dict[int, bool] = {}
    for option in value.replace(",", " ").split():
        name = option[1:]
        if option[:1] not in "+-" or name not in doctest.OPTIONFLAGS_BY_NAME:
            raise ValueError(f"{where}: invalid doctest option {option!r}")
        flags[doctest.OPTIONFLAGS_BY_NAME[name]] = option[0] == "+"
    return flags


def parse_rst(text: str, source: str = "<rst>") -> list[Block]:
    """The doctest directives of a reST document, in document order.

    A line-based scanner for the reST that Sphinx doctest directives live in: it skips ``::``
    literal blocks, comments and the bodies of code directives, descends into other directives
    (admonitions), and rejects what it does not model (``testcode``, ``:skipif:``...) instead of
    guessing.
    """
    if "\t" in text:
        raise ValueError(f"{source}: tabs are not supported by this reST scanner")
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    n = len(lines)

    def skip_body(start: int, indent: int) -> int:
        j = start
        while j < n and (not lines[j].strip() or _indent(lines[j]) > indent):
            j += 1
        return j

    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        indent = _indent(line)
        match = _DIRECTIVE.match(line)
        if match:
            name = match["name"]
            where = f"{source}:{i + 1}"
            if name in UNSUPPORTED_DIRECTIVES:
                raise ValueError(f"{where}: the {name} directive is not supported by this harness")
            if name in TEST_DIRECTIVES:
                block, i = _parse_test_directive(lines, i, match, where)
                blocks.append(block)
                continue
            if name in LITERAL_DIRECTIVES:
                i = skip_body(i + 1, indent)
                continue
            i += 1  # other directives: their options do not matter, their body is reST
            continue
        if _EXPLICIT.match(line):
            # A comment, hyperlink target or footnote: its indented body is not reST.
            i = skip_body(i + 1, indent)
            continue
        if line.rstrip().endswith("::"):
            # "paragraph::" starts a literal block if the next non-blank line is indented more.
            j = i + 1
            while j < n and not lines[j].strip():
                j += 1
            if j < n and _indent(lines[j]) > indent:
                i = skip_body(j, indent)
                continue
        i += 1
    return blocks


def _parse_test_directive(
    lines: list[str], i: int, match: re.Match[str], where: str
) -> tuple[Block, int]:
    n = len(lines)
    indent = len(match["indent"])
    kind = match["name"]
    arg = (match["arg"] or "").strip()
    groups = [g.strip() for g in arg.split(",")] if arg else ["default"]
    hidden = kind != "doctest"  # sphinx renders setup and cleanup code as comments
    flags: dict[int, bool] = {}
    j = i + 1
    while j < n and lines[j].strip() and _indent(lines[j]) > indent:
        option = _OPTION.match(lines[j])
        if option is None:
            raise ValueError(f"{where}: {kind} content must follow its options after a blank line")
        name, value = option["name"], option["value"] or ""
        if name == "hide" and kind == "doctest":
            hidden = True
        elif name == "options" and kind == "doctest":
            flags.update(_parse_flags(value, where))
        elif name in ("trim-doctest-flags", "no-trim-doctest-flags"):
            pass  # presentation only
        else:
            raise ValueError(f"{where}: option :{name}: of {kind} is not supported")
        j += 1
    start = j
    while j < n and (not lines[j].strip() or _indent(lines[j]) > indent):
        j += 1
    body = lines[start:j]
    first = 0
    while first < len(body) and not body[first].strip():
        first += 1
    code = textwrap.dedent("\n".join(body[first:])).strip("\n")
    if not code:
        raise ValueError(f"{where}: empty {kind} directive")
    return Block(kind, groups, code + "\n", start + first + 1, hidden, flags), j


def build_groups(blocks: Sequence[Block], global_setup: Block | None) -> list[Group]:
    """Group the blocks as ``sphinx.ext.doctest`` does, in order of first appearance."""
    groups: dict[str, Group] = {}
    to_all: list[Block] = []
    for block in blocks:
        if "*" in block.groups:
            to_all.append(block)
            continue
        for name in block.groups:
            groups.setdefault(name, Group(name)).add(block)
    for block in to_all:
        for group in groups.values():
            group.add(block)
    if global_setup is not None:
        for group in groups.values():
            group.add(global_setup, prepend=True)
    return list(groups.values())


def global_setup_imports(conf_py: str) -> str:
    """The import statements of ``doctest_global_setup`` in Motor's ``doc/conf.py``.

    Also checks that conf.py leaves the other doctest settings this harness hard-codes at
    Sphinx's defaults (flags, no global cleanup) and turns off testing of plain ``>>>`` blocks.
    """
    tree = ast.parse(conf_py)
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.startswith("doctest_"):
                values[target.id] = node.value
    unexpected = set(values) - {
        "doctest_global_setup",
        "doctest_path",
        "doctest_test_doctest_blocks",
    }
    if unexpected:
        raise ValueError(f"conf.py sets doctest options this harness does not model: {unexpected}")
    # doctest_path only puts Motor's checkout on sys.path; here the driver under test is there.
    blocks = values.get("doctest_test_doctest_blocks")
    if blocks is None or ast.literal_eval(blocks) != "":
        raise ValueError("conf.py no longer disables doctest_test_doctest_blocks")
    setup = ast.parse(ast.literal_eval(values["doctest_global_setup"]))
    imports = [n for n in setup.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "\n".join(ast.unparse(n) for n in imports) + "\n"


# --------------------------------------------------------------------------- the test server


@contextlib.contextmanager
def _flock(path: Path, timeout: float, what: str) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise TimeoutError(
                        f"{what}: {path} is still locked after {timeout:.0f} s by {holder}"
                    ) from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


class PortTaken(RuntimeError):
    """Port 27017 is in use by something that is not a MongoDB-compatible server."""


def _accepts(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect((host, port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def default_port_server(progress: Callable[[str], None] | None = None) -> Iterator[Any]:
    """A MongoDB-compatible server on 127.0.0.1:27017 for the tutorials, for the ``with`` body.

    Holds ``<cache>/tutorial-27017.lock`` meanwhile, so two test sessions on one machine take
    turns. If the port is free, a plain server is started there with :func:`test.server.launch`
    and stopped at the end. If a MongoDB-compatible server already listens there (a ``mongod`` of
    yours, or ``MOTOR_TEST_URI=mongodb://127.0.0.1:27017``), it is used and left running.
    Anything else on the port raises :class:`PortTaken`.
    """
    from test import server as test_server

    with _flock(test_server.cache_dir() / "tutorial-27017.lock", 60.0, "tutorial server"):
        test_server.cleanup_stale()  # a tutorial server of a run that died
        for *_, address in socket.getaddrinfo("localhost", TUTORIAL_PORT):
            host = address[0]
            assert isinstance(host, str)  # an IPv4 or IPv6 address
            if host != TUTORIAL_HOST and _accepts(host, TUTORIAL_PORT):
                raise PortTaken(
                    f"'localhost' resolves to {host}, where something listens on port "
                    f"{TUTORIAL_PORT}; the tutorials' MotorClient() would talk to it instead "
                    f"of the test server on {TUTORIAL_HOST}"
                )
        if _accepts(TUTORIAL_HOST, TUTORIAL_PORT):
            from pymongo import MongoClient

            try:
                with MongoClient(
                    TUTORIAL_HOST,
                    TUTORIAL_PORT,
                    directConnection=True,
                    serverSelectionTimeoutMS=5000,
                ) as probe:  # type: MongoClient[dict[str, Any]]
                    probe.admin.command("ping")
            except Exception as exc:
                raise PortTaken(
                    f"port {TUTORIAL_PORT} on {TUTORIAL_HOST} is taken by something that is not a "
                    f"MongoDB-compatible server: it does not answer ping ({type(exc).__name__}: "
                    f"{str(exc)[:300]}). The tutorials connect to localhost:27017 and cannot be "
                    "pointed elsewhere: free the port, or run a mongod there."
                ) from None
            yield test_server.from_uri(f"mongodb://{TUTORIAL_HOST}:{TUTORIAL_PORT}")
            return
        try:
            launched = test_server.launch("plain", progress=progress, port=TUTORIAL_PORT)
        except test_server.ServerStartError as exc:
            raise PortTaken(
                f"could not start a test server on {TUTORIAL_HOST}:{TUTORIAL_PORT}: {exc}"
            ) from exc
        try:
            yield launched
        finally:
            test_server.stop(launched)


# --------------------------------------------------------------------------- the child process

# Warnings that may happen without failing a run, as (category name, module regex, message
# regex, reason). Everything else is an error. Each of these is caused by the tutorial's own code:
ALLOWED_WARNINGS: list[tuple[str, str, str, str]] = [
    (
        "aiohttp.web_exceptions.NotAppKeyWarning",
        r"aiohttp_example\Z",
        r"It is recommended to use web\.AppKey instances for keys",
        "aiohttp_example.py's init_connection() does app['db'] = db with a str key; "
        "aiohttp >= 3.9 recommends web.AppKey (aiohttp itself ignores this warning by default)",
    ),
    (
        "DeprecationWarning",
        r"aiohttp\.web_protocol\Z",
        r"returning HTTPException object is deprecated",
        "aiohttp_example.py's page_handler() returns web.HTTPNotFound(...) instead of raising "
        "it; aiohttp warns when a handler returns an HTTPException",
    ),
    (
        "DeprecationWarning",
        r"tornado\.ioloop\Z",
        r"There is no current event loop",
        "tutorial-tornado.rst calls IOLoop.current() outside a running loop; from Python 3.12 "
        "the asyncio.get_event_loop() it calls warns when it has to make the thread's loop",
    ),
]
# On Python 3.11 the Tornado one never fires: the tutorials call IOLoop.current() and
# loop.run_until_complete() outside a running loop, and 3.11 warns on neither. Add one here,
# with its reason, if a newer Python or Tornado deprecates something else they do.

# An unclosed client's ResourceWarning (PyMongo's MongoClient.__del__) is the tutorial's own when
# the client was created by tutorial code: the tutorials make clients and never close them.
_UNCLOSED = re.compile(r"Unclosed (?P<cls>\w+) opened at:\n(?P<stack>.*)Call \w+\.close\(\)", re.S)
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line \d+, in ', re.M)


class _Recorder:
    """Appends JSON lines to the results file."""

    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "a", buffering=1)
        self.phase = "startup"

    def emit(self, event: str, **fields: Any) -> None:
        fields = {"event": event, "phase": self.phase, **fields}
        self._file.write(json.dumps(fields, default=repr) + "\n")
        self._file.flush()


_LIBRARIES: list[str] = []


def _library_dirs() -> list[str]:
    """The directories of the imported PyMongo and Motor (filled in before the run)."""
    if not _LIBRARIES:
        import pymongo

        import motor

        _LIBRARIES.extend(
            os.path.dirname(os.path.abspath(m.__file__ or "")) for m in (pymongo, motor)
        )
    return _LIBRARIES


def _tutorial_frame(stack: str, tutorial_files: Sequence[str]) -> str | None:
    """The innermost frame of ``stack`` outside PyMongo and Motor, if it is tutorial code."""
    libraries = _library_dirs()
    files: list[str] = _FRAME.findall(stack)
    for filename in reversed(files):
        if any(os.path.abspath(filename).startswith(lib + os.sep) for lib in libraries):
            continue
        if filename.startswith("<doctest ") or filename in tutorial_files:
            return filename
        return None
    return None


def _install_hooks(recorder: _Recorder, tutorial_files: Sequence[str]) -> None:
    import logging
    import threading
    import warnings

    def showwarning(
        message: Any,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        # Warnings that matched a filter other than "error" get here: the allowed ones, or
        # one that a library's own filter lets through, which counts as unexpected.
        name = f"{category.__module__}.{category.__qualname__}".replace("builtins.", "")
        reason = next(
            (
                r
                for c, _m, msg, r in ALLOWED_WARNINGS
                if c == name and re.match(msg, str(message), re.I)
            ),
            None,
        )
        recorder.emit(
            "warning",
            category=name,
            message=str(message),
            filename=filename,
            lineno=lineno,
            allowed=reason is not None,
            reason=reason or "",
        )

    warnings.showwarning = showwarning

    def unraisablehook(unraisable: Any) -> None:
        text = "".join(
            traceback.format_exception(
                unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback
            )
        )
        allowed, reason = False, ""
        match = _UNCLOSED.search(str(unraisable.exc_value))
        if isinstance(unraisable.exc_value, ResourceWarning) and match:
            frame = _tutorial_frame(match["stack"], tutorial_files)
            if frame is not None:
                allowed = True
                reason = (
                    f"{match['cls']} created by the tutorial's own code ({frame}), which never "
                    "closes it"
                )
        recorder.emit(
            "unraisable",
            message=unraisable.err_msg or "Exception ignored in",
            object=repr(unraisable.object),
            error=f"{unraisable.exc_type.__name__}: {unraisable.exc_value}",
            traceback=text,
            allowed=allowed,
            reason=reason,
            # A socket of a client the tutorial never closes is collected with it, before
            # or after it (see Outcome.problems).
            leaked_socket=isinstance(unraisable.exc_value, ResourceWarning)
            and str(unraisable.exc_value).startswith("unclosed <socket.socket"),
        )

    sys.unraisablehook = unraisablehook

    def excepthook(args: Any) -> None:
        text = "".join(
            traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
        )
        recorder.emit("thread-exception", thread=str(args.thread), traceback=text, allowed=False)

    threading.excepthook = excepthook

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            recorder.emit(
                "log",
                logger=record.name,
                level=record.levelname,
                message=self.format(record),
                allowed=False,
            )

    handler = Handler(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def _set_warning_filters() -> None:
    """Every warning is an error, except the allowed ones (recorded by ``showwarning``).

    The filters match by message and module only, so that aiohttp need not be imported first;
    ``showwarning`` checks the category.
    """
    import warnings

    warnings.resetwarnings()
    warnings.simplefilter("error")
    for _category, module, message, _reason in ALLOWED_WARNINGS:
        warnings.filterwarnings("always", message=message, category=Warning, module=module)


class _Compile:
    """sphinx.ext.doctest compiles setup and cleanup code in ``exec`` mode and tests in
    ``single`` mode by patching the ``compile`` that :mod:`doctest` uses; so do we."""

    mode = "single"

    def __call__(
        self, source: str, filename: str, mode: str, flags: int = 0, dont_inherit: bool = False
    ) -> Any:
        return compile(source, filename, self.mode, flags, dont_inherit)


_COMPILE = _Compile()


class _Runner(doctest.DocTestRunner):
    """A DocTestRunner that records the outcome of every example."""

    def __init__(
        self,
        recorder: _Recorder,
        kind: str,
        group: str,
        hidden: bool = False,
        origins: dict[int, str] | None = None,
    ) -> None:
        super().__init__(verbose=False, optionflags=SPHINX_FLAGS)
        self.recorder = recorder
        self.kind = kind
        self.group = group
        self.hidden = hidden
        self.origins = origins or {}

    def _line(self, test: doctest.DocTest, example: doctest.Example) -> int:
        return (test.lineno or 0) + example.lineno + 1

    def report_start(self, out: Any, test: doctest.DocTest, example: doctest.Example) -> None:
        line = self._line(test, example)
        self.recorder.phase = f"{self.group} {self.kind} line {line}"
        self.recorder.emit("start", group=self.group, kind=self.kind, line=line)

    def _record(
        self, test: doctest.DocTest, example: doctest.Example, status: str, report: str
    ) -> None:
        self.recorder.emit(
            "example",
            group=self.group,
            kind=self.kind,
            line=self._line(test, example),
            origin=self.origins.get(id(example), ""),
            source=example.source,
            hidden=self.hidden,
            status=status,
            report=report,
        )

    def report_success(
        self, out: Any, test: doctest.DocTest, example: doctest.Example, got: str
    ) -> None:
        self._record(test, example, "passed", "")

    def report_failure(
        self, out: Any, test: doctest.DocTest, example: doctest.Example, got: str
    ) -> None:
        chunks: list[str] = []
        super().report_failure(chunks.append, test, example, got)
        self._record(test, example, "failed", "".join(chunks))

    def report_unexpected_exception(
        self, out: Any, test: doctest.DocTest, example: doctest.Example, exc_info: Any
    ) -> None:
        chunks: list[str] = []
        super().report_unexpected_exception(chunks.append, test, example, exc_info)
        self._record(test, example, "error", "".join(chunks))


def _discard(_text: str) -> None:
    """doctest's report text is recorded per example by :class:`_Runner` instead."""


def _run_code(
    group: Group, blocks: list[Block], ns: dict[str, Any], what: str, filename: str, rec: _Recorder
) -> bool:
    """Setup or cleanup code: one ``exec`` example per block, as sphinx.ext.doctest does."""
    if not blocks:
        return True
    examples = [doctest.Example(b.code, "", lineno=b.line - 1) for b in blocks]
    origins = {id(e): b.origin for e, b in zip(examples, blocks) if b.origin}
    sim = doctest.DocTest(examples, {}, f"{group.name} ({what} code)", filename, 0, None)
    sim.globs = ns
    runner = _Runner(rec, what, group.name, hidden=True, origins=origins)
    _COMPILE.mode = "exec"
    try:
        result = runner.run(sim, out=_discard, clear_globs=False)
    finally:
        _COMPILE.mode = "single"
    return result.failed == 0


def _run_group(group: Group, filename: str, rec: _Recorder) -> None:
    """sphinx.ext.doctest's ``test_group``: setup, then the tests, then cleanup; one namespace."""
    parser = doctest.DocTestParser()
    ns: dict[str, Any] = {}
    rec.phase = f"{group.name} setup"
    if not _run_code(group, group.setup, ns, "setup", filename, rec):
        for block in group.tests:
            for example in parser.get_examples(block.code):
                rec.emit(
                    "example",
                    group=group.name,
                    kind="doctest",
                    line=block.line + example.lineno,
                    origin="",
                    source=example.source,
                    hidden=block.hidden,
                    status="not run",
                    report="",
                )
        return
    for block in group.tests:
        test = parser.get_doctest(block.code, {}, group.name, filename, block.line - 1)
        for example in test.examples:
            options = dict(block.flags)
            options.update(example.options)
            example.options = options
        test.globs = ns  # shared by the whole group, never cleared
        runner = _Runner(rec, "doctest", group.name, hidden=block.hidden)
        runner.run(test, out=_discard, clear_globs=False)
    rec.phase = f"{group.name} cleanup"
    _run_code(group, group.cleanup, ns, "cleanup", filename, rec)


def _run_groups(groups: list[Group], filename: str, recorder: _Recorder) -> None:
    doctest.compile = _COMPILE  # type: ignore[attr-defined]
    for group in groups:
        _run_group(group, filename, recorder)
        # The group's namespace is gone; let what it held be finalized now, so that any
        # warning from a finalizer is charged to this group.
        recorder.phase = f"{group.name} after cleanup"
        gc.collect()


def _expected_motor(motor_path: str | None) -> None:
    import motor

    where = os.path.abspath(motor.__file__)
    expected = os.path.join(os.path.abspath(motor_path or str(REPO)), "motor") + os.sep
    if not where.startswith(expected):
        raise RuntimeError(f"imported motor from {where}, expected it under {expected}")
    _library_dirs()


def _child_doctest(args: Any, recorder: _Recorder) -> None:
    groups_json = json.loads(Path(args.groups).read_text())
    groups = [
        Group(
            g["name"],
            [Block(**b) for b in g["setup"]],
            [Block(**b) for b in g["tests"]],
            [Block(**b) for b in g["cleanup"]],
        )
        for g in groups_json
    ]
    for group in groups:
        for block in group.tests:
            block.flags = {int(k): v for k, v in block.flags.items()}  # JSON keys are str
    _run_groups(groups, args.path, recorder)


def _child_aiohttp(args: Any, recorder: _Recorder) -> None:
    import asyncio
    import importlib.util

    import aiohttp
    from aiohttp import web

    spec = importlib.util.spec_from_file_location("aiohttp_example", args.path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    recorder.phase = "import aiohttp_example.py"
    spec.loader.exec_module(module)

    html = "<html><body>{}</body></html>"
    expected = [
        ("/pages/page-one", 200, "text/html", html.format("Hello!")),
        ("/pages/page-two", 200, "text/html", html.format("Goodbye.")),
        ("/pages/page-three", 404, "text/plain", "No page named 'page-three'"),
    ]

    def record(step: str, report: str | None) -> None:
        """One step of the example: passed if ``report`` is None, else failed with it."""
        recorder.emit(
            "example",
            group="aiohttp_example",
            kind="step",
            line=0,
            source=step,
            hidden=False,
            status="passed" if report is None else "failed",
            report=report or "",
        )

    async def main() -> None:
        # What main() does minus web.run_app(): that would serve on port 8080 until interrupted.
        step = "app = await init_connection()  # runs setup_db()"
        recorder.phase = "init_connection()"
        try:
            app = await module.init_connection()
        except Exception:
            record(step, traceback.format_exc())
            return
        record(step, None)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                for path, *want in expected:
                    recorder.phase = f"GET {path}"
                    step = f"GET {path} -> {want[0]} {want[1]} {want[2]!r}"
                    try:
                        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                            got = [response.status, response.content_type, await response.text()]
                    except Exception:
                        record(step, traceback.format_exc())
                        continue
                    diff = f"Expected:\n    {want!r}\nGot:\n    {got!r}\n"
                    record(step, None if got == want else diff)
        finally:
            await runner.cleanup()

    asyncio.run(main())
    recorder.phase = "after the example"
    gc.collect()


def child_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the child process; see the module docstring."""
    import argparse
    import faulthandler

    _set_warning_filters()
    parser = argparse.ArgumentParser(prog="python -m test.tutorial_doctest")
    parser.add_argument("mode", choices=("doctest", "aiohttp"))
    parser.add_argument("path", help="the .rst or .py file, for error messages and imports")
    parser.add_argument("--groups", help="JSON file of the doctest groups (doctest mode)")
    parser.add_argument("--results", required=True)
    parser.add_argument("--timeout", type=float, default=45.0)
    parser.add_argument("--motor-path", help="import motor from this directory (oracle run)")
    args = parser.parse_args(argv)

    faulthandler.dump_traceback_later(args.timeout, exit=True)
    if args.motor_path:
        sys.path.insert(0, os.path.abspath(args.motor_path))
    recorder = _Recorder(args.results)
    tutorial_files = [os.path.abspath(args.path), args.path]
    _install_hooks(recorder, tutorial_files)
    try:
        _expected_motor(args.motor_path)
        if args.mode == "doctest":
            _child_doctest(args, recorder)
        else:
            _child_aiohttp(args, recorder)
    except BaseException:
        recorder.emit("crash", traceback=traceback.format_exc(), allowed=False)
        raise
    finally:
        faulthandler.cancel_dump_traceback_later()
    import pymongo

    import motor

    recorder.phase = "done"
    recorder.emit(
        "done",
        motor_file=motor.__file__,
        motor_version=getattr(motor, "version", "?"),
        pymongo_version=pymongo.version,
        python=sys.version.split()[0],
    )
    return 0


# --------------------------------------------------------------------------- the parent side


@dataclasses.dataclass
class Outcome:
    """What a child run reported."""

    events: list[dict[str, Any]]
    returncode: int | None  # None: killed after the timeout
    stderr: str
    elapsed: float

    @property
    def examples(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "example"]

    @property
    def problems(self) -> list[dict[str, Any]]:
        # An unclosed socket counts only when no client the tutorial leaked can own it.
        leaked_client = any(
            e["event"] == "unraisable" and e.get("allowed") and not e.get("leaked_socket")
            for e in self.events
        )
        return [
            e
            for e in self.events
            if e["event"] in ("unraisable", "thread-exception", "log", "crash", "warning")
            and not e.get("allowed")
            and not (leaked_client and e.get("leaked_socket"))
        ]

    @property
    def notes(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("allowed")]

    @property
    def done(self) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event"] == "done"), None)

    @property
    def ok(self) -> bool:
        return (
            self.returncode == 0
            and self.done is not None
            and bool(self.examples)
            and all(e["status"] == "passed" for e in self.examples)
            and not self.problems
        )

    def summary(self) -> str:
        """One line per example (PASS/FAIL), then the doctest reports and everything else."""
        lines = []
        for e in self.examples:
            first = e["source"].strip().splitlines()[0] if e["source"].strip() else ""
            more = " ..." if len(e["source"].strip().splitlines()) > 1 else ""
            where = f"({e['origin']})" if e.get("origin") else f"line {e['line']}"
            where = where if e["line"] else ""
            tag = f"{e['kind']}{' (hidden)' if e['hidden'] and e['kind'] == 'doctest' else ''}"
            lines.append(f"{e['status'].upper():8} {e['group']} {tag} {where}: {first[:80]}{more}")
        counts: dict[str, int] = {}
        for e in self.examples:
            counts[e["status"]] = counts.get(e["status"], 0) + 1
        lines.append(
            "totals: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            + f"; {self.elapsed:.1f} s"
        )
        for e in self.examples:
            if e["status"] in ("failed", "error"):
                lines.append(e["report"].rstrip())
        for e in self.problems:
            lines.append(f"{e['event']} during {e['phase']}: " + json.dumps(e, indent=1)[:3000])
        for e in self.notes:
            lines.append(f"allowed {e['event']} during {e['phase']}: {e.get('reason', '')}")
        if self.done is None:
            finished = {(e["group"], e["kind"], e["line"]) for e in self.examples}
            running = [
                e
                for e in self.events
                if e["event"] == "start" and (e["group"], e["kind"], e["line"]) not in finished
            ]
            where = (
                f"{running[-1]['group']} {running[-1]['kind']} line {running[-1]['line']}"
                if running
                else f"'{self.events[-1]['phase'] if self.events else 'startup'}'"
            )
            why = "killed after the timeout" if self.returncode is None else "stopped"
            lines.append(f"INCOMPLETE: the child was {why} while running {where}")
        if self.returncode is not None and self.returncode != 0:
            lines.append(f"child exited with status {self.returncode}")
        if self.done is not None:
            lines.append(
                f"ran with motor {self.done['motor_version']} from {self.done['motor_file']}, "
                f"PyMongo {self.done['pymongo_version']}, Python {self.done['python']}"
            )
        if self.stderr.strip():
            lines.append("child stderr:\n" + self.stderr[-6000:])
        return "\n".join(lines)


def run_child(
    mode: str,
    path: Path,
    workdir: Path,
    groups: list[Group] | None = None,
    timeout: float = 45.0,
    motor_path: Path | None = None,
) -> Outcome:
    """Run one tutorial in a fresh ``python -m test.tutorial_doctest`` process."""
    results = workdir / f"{path.stem}.results.jsonl"
    results.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "test.tutorial_doctest",
        mode,
        str(path),
        "--results",
        str(results),
        "--timeout",
        str(timeout),
    ]
    if groups is not None:
        groups_file = workdir / f"{path.stem}.groups.json"
        groups_file.write_text(json.dumps([dataclasses.asdict(g) for g in groups]))
        command += ["--groups", str(groups_file)]
    if motor_path is not None:
        command += ["--motor-path", str(motor_path)]
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)  # the child sets its own filters
    env["PYTHONFAULTHANDLER"] = "1"
    started = time.monotonic()
    with open(workdir / f"{path.stem}.stderr", "w+") as stderr:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
        try:
            returncode: int | None = proc.wait(timeout + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            returncode = None
        stderr.seek(0)
        err = stderr.read()
    events = []
    if results.exists():
        for line in results.read_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return Outcome(events, returncode, err, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(child_main())
