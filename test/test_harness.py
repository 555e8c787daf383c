"""Smoke tests of the test harness itself, with PyMongo's synchronous client.

They prove that each server the fixtures hand out really answers (and really enforces TLS or
authentication), that MockupDB scripts replies PyMongo 4.20 accepts, and that the launcher
leaves no server behind.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mockupdb import MockupDB, OpMsg, go
from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

import motor
from test import server as test_server

REPO = Path(__file__).resolve().parent.parent


def _client(uri: str, **kwargs: Any) -> MongoClient[dict[str, Any]]:
    kwargs.setdefault("serverSelectionTimeoutMS", 5000)
    return MongoClient(uri, **kwargs)


@pytest.fixture
def db_name(server: test_server.Server) -> Iterator[str]:
    name = f"motor_harness_{uuid.uuid4().hex[:12]}"
    yield name
    with _client(server.uri) as client:
        client.drop_database(name)


def _wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --------------------------------------------------------------------------- package metadata


def test_version_metadata() -> None:
    from motor._version import __version__

    assert __version__ == "3.8.0.dev0"
    # Above Motor 3.7.1 and within 3.x: pip keeps this Motor for a library that requires
    # Motor 3 (Beanie: motor>=2.5.0,<4.0.0) and for ``pip install -U motor``.
    assert (3, 7, 1) < motor.version_tuple[:3] < (4,)
    assert importlib.metadata.version("motor") == __version__
    requires = importlib.metadata.requires("motor") or []
    assert any(r.replace(" ", "").startswith("pymongo<4.21,>=4.20") for r in requires), requires
    assert (Path(motor.__path__[0]) / "py.typed").is_file()


# --------------------------------------------------------------------------- main server


def test_server_fixture(server: test_server.Server) -> None:
    assert server.kind in ("ferretdb", "mongod", "uri")
    assert server.flavor in ("ferretdb", "mongodb")
    assert server.version and server.version[0].isdigit()
    assert server.uri.startswith("mongodb://")
    assert isinstance(server.port, int) and server.port > 0
    with _client(server.uri) as client:
        assert client.admin.command("ping")["ok"] == 1
        assert client.address == (server.host, server.port)
    if server.kind != "uri":
        # Launched servers listen on loopback only.
        assert server.host == "127.0.0.1"
    if server.kind == "ferretdb":
        assert server.version == test_server.FERRETDB_VERSION


def test_crud_indexes_aggregate(server: test_server.Server, db_name: str) -> None:
    with _client(server.uri) as client:
        coll = client[db_name].things
        result = coll.insert_many([{"_id": i, "n": i, "parity": i % 2} for i in range(10)])
        assert result.inserted_ids == list(range(10))
        assert coll.count_documents({}) == 10

        found = list(coll.find({"n": {"$gte": 7}}, {"_id": 0, "n": 1}).sort("n", DESCENDING))
        assert found == [{"n": 9}, {"n": 8}, {"n": 7}]
        assert coll.find_one({"_id": 3}) == {"_id": 3, "n": 3, "parity": 1}

        name = coll.create_index([("parity", ASCENDING), ("n", DESCENDING)])
        assert name == "parity_1_n_-1"
        indexes = {ix["name"]: dict(ix["key"]) for ix in coll.list_indexes()}
        assert indexes == {"_id_": {"_id": 1}, "parity_1_n_-1": {"parity": 1, "n": -1}}

        # One accumulator per $group: FerretDB 1.24 computes only the first (doc/testing.rst).
        pipeline: list[dict[str, Any]] = [
            {"$match": {"n": {"$lt": 8}}},
            {"$group": {"_id": "$parity", "total": {"$sum": "$n"}}},
            {"$sort": {"_id": 1}},
        ]
        assert list(coll.aggregate(pipeline)) == [
            {"_id": 0, "total": 0 + 2 + 4 + 6},
            {"_id": 1, "total": 1 + 3 + 5 + 7},
        ]
        counted = coll.aggregate([{"$match": {"parity": 1}}, {"$count": "odd"}])
        assert list(counted) == [{"odd": 5}]

        assert coll.update_one({"_id": 1}, {"$inc": {"n": 100}}).modified_count == 1
        assert coll.find_one({"_id": 1}, {"_id": 0, "n": 1}) == {"n": 101}
        assert coll.delete_many({"parity": 0}).deleted_count == 5
        assert sorted(coll.distinct("_id")) == [1, 3, 5, 7, 9]


# --------------------------------------------------------------------------- TLS


def test_tls_server(tls_server: test_server.Server, db_name: str) -> None:
    assert tls_server.ca_file is not None and os.path.isfile(tls_server.ca_file)
    assert tls_server.uri == f"mongodb://127.0.0.1:{tls_server.port}"
    assert tls_server.client_options == {"tls": True, "tlsCAFile": tls_server.ca_file}
    # Hostname verification: the certificate names both 127.0.0.1 and localhost.
    for host in ("127.0.0.1", "localhost"):
        with _client(
            f"mongodb://{host}:{tls_server.port}/", tls=True, tlsCAFile=tls_server.ca_file
        ) as client:
            coll = client[db_name].secure
            coll.insert_one({"_id": host})
            assert coll.find_one({"_id": host}) == {"_id": host}
            client.drop_database(db_name)
    # The fixture's URI with its client options, and its self-contained form.
    with _client(tls_server.uri, **tls_server.client_options) as client:
        assert client.admin.command("ping")["ok"] == 1
    with _client(tls_server.full_uri) as client:
        assert client.admin.command("ping")["ok"] == 1


def test_tls_server_rejects_untrusting_and_plaintext_clients(
    tls_server: test_server.Server,
) -> None:
    base = f"mongodb://{tls_server.host}:{tls_server.port}/"
    # Without the CA the server's certificate does not verify.
    with _client(base, tls=True, serverSelectionTimeoutMS=1000) as client:
        with pytest.raises(ServerSelectionTimeoutError, match="CERTIFICATE_VERIFY_FAILED"):
            client.admin.command("ping")
    # A plaintext client gets no MongoDB answer from the TLS port.
    with _client(base, serverSelectionTimeoutMS=1000) as client:
        with pytest.raises(ServerSelectionTimeoutError):
            client.admin.command("ping")


def test_mutual_tls_server(mtls_server: test_server.Server) -> None:
    assert mtls_server.client_cert_file is not None
    base = f"mongodb://localhost:{mtls_server.port}/"
    with _client(
        base,
        tls=True,
        tlsCAFile=mtls_server.ca_file,
        tlsCertificateKeyFile=mtls_server.client_cert_file,
    ) as client:
        assert client.admin.command("ping")["ok"] == 1
    with _client(mtls_server.full_uri) as client:
        assert client.admin.command("ping")["ok"] == 1
    # Without a client certificate the handshake is refused.
    with _client(
        base, tls=True, tlsCAFile=mtls_server.ca_file, serverSelectionTimeoutMS=1000
    ) as client:
        with pytest.raises(ServerSelectionTimeoutError):
            client.admin.command("ping")


# --------------------------------------------------------------------------- authentication


def test_auth_server_accepts_the_right_password(auth_server: test_server.Server) -> None:
    assert auth_server.username and auth_server.password
    assert f"{auth_server.username}:" in auth_server.uri
    with _client(auth_server.uri) as client:
        coll = client.motor_harness_auth.items
        coll.insert_one({"_id": 1})
        assert coll.find_one() == {"_id": 1}
        status = client.admin.command("connectionStatus")
        assert status["authInfo"]["authenticatedUsers"] == [
            {"user": auth_server.username, "db": "admin"}
        ]
        client.drop_database("motor_harness_auth")
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
        with _client(
            f"mongodb://{auth_server.host}:{auth_server.port}/",
            username=auth_server.username,
            password=auth_server.password,
            authSource="admin",
            authMechanism=mechanism,
        ) as client:
            assert client.admin.command("listDatabases")["ok"] == 1


def test_auth_server_refuses_unauthenticated_clients(auth_server: test_server.Server) -> None:
    with _client(f"mongodb://{auth_server.host}:{auth_server.port}/") as client:
        assert client.admin.command("ping")["ok"] == 1  # allowed without credentials
        with pytest.raises(OperationFailure) as info:
            client.motor_harness_auth.items.find_one()
        assert info.value.code == 13  # Unauthorized
        with pytest.raises(OperationFailure) as info:
            client.motor_harness_auth.items.insert_one({})
        assert info.value.code == 13


@pytest.mark.parametrize("user_ok", [True, False], ids=["bad-password", "unknown-user"])
def test_auth_server_refuses_bad_credentials(
    auth_server: test_server.Server, user_ok: bool
) -> None:
    assert auth_server.username is not None
    with _client(
        f"mongodb://{auth_server.host}:{auth_server.port}/",
        username=auth_server.username if user_ok else "nobody",
        password="wrong-password",
        authSource="admin",
    ) as client:
        with pytest.raises(OperationFailure) as info:
            client.motor_harness_auth.items.find_one()
        assert info.value.code == 18  # AuthenticationFailed


# --------------------------------------------------------------------------- MockupDB


def test_mockupdb_scripted_find(mockup: Callable[..., MockupDB]) -> None:
    mock = mockup()
    with _client(mock.uri, serverSelectionTimeoutMS=5000) as client:
        future = go(client.db.coll.find_one, {"x": 1})
        # OpMsg("find", "coll") means {"find": "coll"}; OpMsg("find") would wait for {"find": 1}.
        request = mock.receives(OpMsg("find", "coll"), timeout=10)
        assert request["$db"] == "db"
        assert request["filter"] == {"x": 1}
        assert request["limit"] == 1
        request.ok(cursor={"id": 0, "ns": "db.coll", "firstBatch": [{"_id": 7, "x": 1}]})
        assert future() == {"_id": 7, "x": 1}


def test_mockupdb_command_error(mockup: Callable[..., MockupDB]) -> None:
    mock = mockup()
    with _client(mock.uri, serverSelectionTimeoutMS=5000) as client:
        future = go(client.db.coll.count_documents, {})
        mock.receives(OpMsg("aggregate", "coll"), timeout=10).command_err(
            code=2, errmsg="bad value from the mock"
        )
        with pytest.raises(OperationFailure, match="bad value from the mock"):
            future()


# --------------------------------------------------------------------------- launcher


@pytest.fixture
def isolated_state(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for launcher subprocesses with their own state directory."""
    state = tmp_path / "state"
    env = dict(os.environ, MOTOR_TEST_STATE_DIR=str(state), PYTHONPATH=str(REPO))
    env.pop("MOTOR_TEST_URI", None)
    yield env
    test_server.cleanup_stale(state)  # never leave a server behind, even on failure
    for record in test_server.list_records(state):
        test_server.stop(test_server.Server(**record["server"]))


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "test.server", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_cli_start_uri_status_stop(isolated_state: dict[str, str]) -> None:
    started = _cli(isolated_state, "start", "--json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    assert test_server._is_our_server(info["pid"], info["data_dir"])
    with _client(info["uri"]) as client:
        assert client.admin.command("ping")["ok"] == 1

    uri = _cli(isolated_state, "uri")
    assert uri.returncode == 0 and uri.stdout.strip() == info["uri"]
    status = _cli(isolated_state, "status")
    assert f"pid {info['pid']} alive, detached" in status.stdout

    stopped = _cli(isolated_state, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert _wait_until(lambda: not test_server._pid_alive(info["pid"]))
    assert not os.path.exists(info["data_dir"])
    assert _cli(isolated_state, "uri").returncode == 1


def test_cli_stop_stops_only_the_servers_it_names(isolated_state: dict[str, str]) -> None:
    first, second = (json.loads(_cli(isolated_state, "start", "--json").stdout) for _ in "12")
    assert first["pid"] != second["pid"]

    unknown = _cli(isolated_state, "stop", "mongodb://127.0.0.1:1")
    assert unknown.returncode == 2 and "no detached server is" in unknown.stderr
    assert test_server._pid_alive(first["pid"]) and test_server._pid_alive(second["pid"])

    stopped = _cli(isolated_state, "stop", first["full_uri"])
    assert stopped.returncode == 0, stopped.stderr
    assert _wait_until(lambda: not test_server._pid_alive(first["pid"]))
    assert test_server._pid_alive(second["pid"])
    with _client(second["uri"]) as client:
        assert client.admin.command("ping")["ok"] == 1

    by_port = _cli(isolated_state, "stop", str(second["port"]))
    assert by_port.returncode == 0, by_port.stderr
    assert _wait_until(lambda: not test_server._pid_alive(second["pid"]))
    assert not os.path.exists(second["data_dir"])


def test_stop_takes_a_number_for_a_port_before_a_pid() -> None:
    def record(name: str, port: int, pid: int) -> dict[str, Any]:
        uri = f"mongodb://127.0.0.1:{port}"
        server = test_server.Server(uri, "ferretdb", "1", "127.0.0.1", port, "ferretdb")
        return {"name": name, "pid": pid, "server": dataclasses.asdict(server)}

    mine, other = record("mine", 40001, 1234), record("other", 40002, 40001)
    records = [other, mine]
    assert test_server._named(records, "40001") is mine  # the port, not the other's PID
    assert test_server._named(records, "1234") is mine
    assert test_server._named(records, "mongodb://127.0.0.1:40002") is other
    assert test_server._named(records, "other") is other
    assert test_server._named(records, "40003") is None


def test_stale_server_of_a_dead_run_is_killed(isolated_state: dict[str, str]) -> None:
    """The cleanup path for servers that outlived their run (no PR_SET_PDEATHSIG)."""
    started = _cli(isolated_state, "start", "--json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    state = Path(isolated_state["MOTOR_TEST_STATE_DIR"])
    record_path = state / f"{info['name']}.json"
    record = json.loads(record_path.read_text())
    record.update(detached=False, owner_pid=_dead_pid(), owner_start=None)
    record_path.write_text(json.dumps(record))
    leftover = state / "orphan-dir-without-record"
    leftover.mkdir()

    cleaned = test_server.cleanup_stale(state)

    assert any(str(info["pid"]) in line for line in cleaned), cleaned
    assert _wait_until(lambda: not test_server._pid_alive(info["pid"]))
    assert not os.path.exists(info["data_dir"])
    assert not record_path.exists()
    assert not leftover.exists()


def test_kill_9_of_the_owner_leaves_nothing_behind(isolated_state: dict[str, str]) -> None:
    code = (
        "import json, time\n"
        "from test import server\n"
        "s = server.launch('plain')\n"
        "print(json.dumps({'pid': s.pid, 'data_dir': s.data_dir, 'name': s.name}), flush=True)\n"
        "time.sleep(300)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=isolated_state,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        info = json.loads(owner.stdout.readline())
        assert test_server._is_our_server(info["pid"], info["data_dir"])
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    state = Path(isolated_state["MOTOR_TEST_STATE_DIR"])
    if sys.platform.startswith("linux"):
        # PR_SET_PDEATHSIG: the server goes down with its owner.
        assert _wait_until(lambda: not test_server._pid_alive(info["pid"]))
    # The next launch (or run) removes what the dead run left on disk.
    test_server.cleanup_stale(state)
    assert not test_server._pid_alive(info["pid"])
    assert not os.path.exists(info["data_dir"])
    assert not (state / f"{info['name']}.json").exists()


def test_cleanup_spares_servers_of_live_runs(server: test_server.Server) -> None:
    test_server.cleanup_stale()
    with _client(server.uri) as client:
        assert client.admin.command("ping")["ok"] == 1


def test_no_go_and_no_binary_fails_with_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTOR_TEST_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MOTOR_TEST_LAUNCHER", "ferretdb")
    monkeypatch.setattr(test_server, "find_go", lambda: None)
    with pytest.raises(test_server.ServerUnavailable, match="Go is not installed") as info:
        test_server.launch("plain")
    assert "MOTOR_TEST_URI" in str(info.value)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def run_pytest(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A pytest session of its own (no cache), in ``cwd``, with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_session_fails_when_motor_test_uri_is_unreachable(tmp_path: Path) -> None:
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0));"
            "print(s.getsockname()[1], flush=True); import sys; sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:  # a bound port that nobody listens on
        assert holder.stdout is not None and holder.stdin is not None
        port = int(holder.stdout.readline())
        env = dict(
            os.environ,
            MOTOR_TEST_URI=f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=300",
        )
        run = run_pytest(["test/test_harness.py", "-k", "test_version_metadata"], REPO, env)
        holder.stdin.close()
    assert run.returncode == 6, run.stdout + run.stderr
    assert "does not answer ping" in run.stderr + run.stdout


STALL_RERUN_TESTS = """
from pathlib import Path

from test.framework import assert_no_stall

HERE = Path(__file__).parent


def run_number(name: str) -> int:
    count = HERE / name
    runs = int(count.read_text()) + 1 if count.exists() else 1
    count.write_text(str(runs))
    return runs


def test_stall_once() -> None:  # a machine's glitch: the rerun passes
    assert_no_stall(0.020 if run_number("once") == 1 else 0.001, 0.010)


def test_stall_every_time() -> None:  # the driver's stall: fails twice
    run_number("every")
    assert_no_stall(0.020, 0.010)


def test_other_failure() -> None:  # never rerun
    run_number("other")
    assert False, "not a stall"
"""


def test_only_a_stall_bound_is_rerun_and_a_second_stall_fails(tmp_path: Path) -> None:
    """The session's configuration (pyproject.toml): a test that fails a loop-stall bound
    runs once more and fails if it exceeds it again; any other failure is final."""
    (tmp_path / "test_stalls.py").write_text(STALL_RERUN_TESTS)
    run = run_pytest(
        ["-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path), "test_stalls.py"],
        tmp_path,
        dict(os.environ, PYTHONPATH=str(REPO)),
    )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "2 failed, 1 passed, 2 rerun" in output, output
    runs = {name: int((tmp_path / name).read_text()) for name in ("once", "every", "other")}
    assert runs == {"once": 2, "every": 2, "other": 1}, (runs, output)


def _collected(frameworks: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        MOTOR_TEST_URI=os.environ["MOTOR_TEST_SERVER_URI"],
        MOTOR_TEST_FRAMEWORKS=frameworks,
    )
    return run_pytest(
        ["--collect-only", "-q", "test/test_cancel_storm.py", "test/test_green_misuse.py"],
        REPO,
        env,
    )


@pytest.mark.parametrize("kept", ["asyncio", "tornado"], ids=["asyncio_kept", "tornado_kept"])
def test_motor_test_frameworks_deselects_the_other_framework_s_variants(kept: str) -> None:
    both = _collected("asyncio, tornado")
    assert both.returncode == 0, both.stdout + both.stderr
    every = {line for line in both.stdout.splitlines() if "::" in line}
    other = {"asyncio": "tornado", "tornado": "asyncio"}[kept]
    storm = "test/test_cancel_storm.py::test_cancellation_storm"
    assert {f"{storm}[{fw}-maxPoolSize=5]" for fw in (kept, other)} <= every

    one = _collected(kept)
    assert one.returncode == 0, one.stdout + one.stderr
    chosen = {line for line in one.stdout.splitlines() if "::" in line}
    dropped = every - chosen
    assert chosen < every
    assert f"{storm}[{kept}-maxPoolSize=5]" in chosen
    assert f"{storm}[{other}-maxPoolSize=5]" in dropped
    assert all(other in line.rpartition("[")[2].split("]")[0].split("-") for line in dropped)
    assert f"({len(dropped)} deselected)" in one.stdout, one.stdout


def test_motor_test_frameworks_refuses_an_unknown_name() -> None:
    run = _collected("asyncio,trio")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert "unknown framework(s) ['trio']" in run.stdout + run.stderr
