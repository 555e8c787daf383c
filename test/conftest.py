"""Session-wide test servers and the MockupDB factory.

The main server starts with the session (so the report header can name it) and stops at its end;
the TLS, mutual-TLS and authenticated servers start the first time a test asks for them. When
no server can be had the run fails at once with instructions: tests are never skipped for want
of a server. See :mod:`test.server` and ``doc/testing.rst``.
"""

from __future__ import annotations

import atexit
import gc
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mockupdb import MockupDB

from test import server as test_server

# Exit status of a run that could not get a test server (pytest uses 0-5 itself).
NO_SERVER_EXIT_STATUS = 6

_pool: test_server.ServerPool | None = None
_config: pytest.Config | None = None


def _progress(message: str) -> None:
    """Show ``message`` on the terminal even while pytest captures output."""
    if _config is None:
        return
    capture = _config.pluginmanager.getplugin("capturemanager")
    reporter = _config.pluginmanager.getplugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"motor test server: {message}")


def _get_pool() -> test_server.ServerPool:
    global _pool
    if _pool is None:
        _pool = test_server.ServerPool(progress=_progress)
        atexit.register(_pool.stop_all)
    return _pool


def pytest_sessionstart(session: pytest.Session) -> None:
    global _config
    _config = session.config
    try:
        main = _get_pool().main()
    except (test_server.ServerUnavailable, test_server.ServerStartError) as exc:
        pytest.exit(
            f"Motor's tests need a MongoDB server and none could be had.\n{exc}",
            returncode=NO_SERVER_EXIT_STATUS,
        )
    # For subprocesses and tools that want the session's server.
    os.environ["MOTOR_TEST_SERVER_URI"] = main.uri
    os.environ["MOTOR_TEST_SERVER_KIND"] = main.kind


def pytest_report_header(config: pytest.Config) -> list[str]:
    if _pool is None or "main" not in _pool.started:
        return []
    return [f"motor test server: {_pool.main().describe()}"]


FRAMEWORKS = ("asyncio", "tornado")


def _frameworks() -> set[str]:
    """The frameworks whose test variants run: ``MOTOR_TEST_FRAMEWORKS`` (a comma-separated
    subset of :data:`FRAMEWORKS`), by default both."""
    wanted = {
        name.strip()
        for name in os.environ.get("MOTOR_TEST_FRAMEWORKS", "").split(",")
        if name.strip()
    }
    unknown = wanted - set(FRAMEWORKS)
    if unknown:
        raise pytest.UsageError(
            f"MOTOR_TEST_FRAMEWORKS: unknown framework(s) {sorted(unknown)}; the choices are"
            f" {', '.join(FRAMEWORKS)}"
        )
    return wanted or set(FRAMEWORKS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the variants of the frameworks ``MOTOR_TEST_FRAMEWORKS`` leaves out: those
    whose parameter id names the framework (``[tornado]``, ``[tornado-maxPoolSize=5]``)."""
    left_out = set(FRAMEWORKS) - _frameworks()
    if not left_out:
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        ids = set(callspec.id.split("-")) if callspec is not None else set()
        (dropped if ids & left_out else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build FerretDB before the first test if a collected test needs a launched server, and
    freeze the harness's heap for the garbage collector.

    Building takes minutes and must not eat a test's timeout; this matters when the main server
    comes from MOTOR_TEST_URI and FerretDB was never built.
    """
    launched = {"tls_server", "mtls_server", "auth_server"}
    if any(launched & set(getattr(item, "fixturenames", ())) for item in session.items):
        try:
            _get_pool().prepare()
        except test_server.ServerUnavailable:
            pass  # the fixtures that need it fail with this message
    # The loop-stall probe measures the driver.  A full collection of the harness's own heap
    # (pytest, its collected items, every imported module: 20-40 ms here) that happens to
    # fall inside a test would show as a stall, so move what exists now out of the
    # collector's reach; objects the tests create are collected as usual.
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _pool is not None:
        _pool.stop_all()


# What the tests that raise an interrupt on purpose put in it (test/test_interrupts.py).
OWN_INTERRUPT = "raised as a signal handler would"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A ``KeyboardInterrupt`` a test raised itself, that came out of the test where it did
    not expect it, fails that test: pytest would take it for Ctrl-C and end the session."""
    try:
        return (yield)
    except KeyboardInterrupt as exc:
        if OWN_INTERRUPT not in str(exc):
            raise
        pytest.fail(f"the test's own KeyboardInterrupt came out of the test: {exc!r}")


def _variant(variant: str) -> test_server.Server:
    try:
        return _get_pool().get(variant)
    except (test_server.ServerUnavailable, test_server.ServerStartError) as exc:
        pytest.fail(f"could not start the {variant} test server:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def server() -> test_server.Server:
    """The main server: ``.uri``, ``.kind``, ``.version``, ``.host``, ``.port``, ``.flavor``."""
    return _get_pool().main()


@pytest.fixture(scope="session")
def tls_server() -> test_server.Server:
    """A TLS-only server: ``.uri`` (has ``tls=true&tlsCAFile=...``), ``.ca_file``."""
    return _variant("tls")


@pytest.fixture(scope="session")
def mtls_server() -> test_server.Server:
    """A TLS server that demands client certificates: adds ``.client_cert_file``."""
    return _variant("mtls")


@pytest.fixture(scope="session")
def auth_server() -> test_server.Server:
    """A server enforcing SCRAM: ``.uri`` with credentials, ``.username``, ``.password``."""
    return _variant("auth")


@pytest.fixture
def mockup() -> Iterator[Callable[..., MockupDB]]:
    """Factory for running MockupDB servers, stopped when the test ends.

    ``mockup(**kwargs)`` passes ``kwargs`` to :class:`mockupdb.MockupDB`; ``auto_ismaster``
    defaults to a hello reply that PyMongo 4.20 accepts (wire versions 0-21).
    """
    servers: list[MockupDB] = []

    def make(**kwargs: Any) -> MockupDB:
        kwargs.setdefault("auto_ismaster", {"maxWireVersion": 21, "minWireVersion": 0})
        mock = MockupDB(**kwargs)
        servers.append(mock)
        mock.run()
        return mock

    yield make
    for mock in reversed(servers):
        _stop_mockup(mock)


def _stop_mockup(mock: MockupDB) -> None:
    """``mock.stop()``, without waiting for its accept loop's one-second poll to end.

    MockupDB's accept loop sleeps in ``select`` for up to a second between checks of its
    stop flag, and ``stop()`` joins it: raise the flag and wake the loop with a connection
    first (the loop sees the flag and serves nothing more).
    """
    mock._stopped = True
    try:
        socket.create_connection(mock.address, timeout=1).close()
    except OSError:
        pass
    mock.stop()


try:
    from test.framework import *  # noqa: F401,F403
except ModuleNotFoundError as exc:
    if exc.name != "test.framework":
        raise
