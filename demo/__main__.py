"""Run the media board: ``bash demo/run.sh [--self-test]``, or ``python -m demo`` in ``.venv``.

Without options it serves the app on http://127.0.0.1:8888/ until Ctrl-C. With
``--self-test`` it serves it on a free port, drives it with a scripted HTTP client
(:mod:`demo.selftest`), prints what happened and exits 0 if every check passed.

The database is ``MOTOR_URI`` if that is set (used, never started or stopped). Otherwise
Motor's test harness (``test/server.py``) starts one on a free loopback port: ``mongod``
if it is on ``PATH``, else FerretDB, built once with Go into ``~/.cache/motor-test/``. That
server and its data go away when the demo ends, whether it ends normally, on an error, or
on Ctrl-C (SIGINT) or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
import traceback
import uuid
from typing import Any

import tornado.httpserver
import tornado.netutil

from demo.app import MAX_UPLOAD, make_app
from demo.selftest import SelfTestFailed, self_test
from motor.motor_tornado import MotorClient
from test import server as test_server

DEFAULT_PORT = 8888


def say(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bash demo/run.sh",
        description="Motor's demo: a media board on Tornado, Motor and GridFS.",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="drive the app with a scripted HTTP client, print the results and stop",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port to serve on (default {DEFAULT_PORT}, or a free one if that is taken; "
        "0 for any free port; --self-test uses a free one)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument(
        "--db",
        default=None,
        help="database name (default motor_demo; --self-test uses a new one and drops it)",
    )
    return parser.parse_args(argv)


def start_database() -> test_server.Server:
    uri = os.environ.get("MOTOR_URI", "").strip()
    if uri:
        server = test_server.from_uri(uri)
    else:
        server = test_server.launch(progress=lambda message: say(f"demo: {message}"))
    # describe() names the test suite's variable for a server given by URI.
    say(f"demo: database: {server.describe().replace('MOTOR_TEST_URI', 'MOTOR_URI', 1)}")
    return server


def stop_database(server: test_server.Server) -> None:
    if server.kind == "uri":
        say("demo: stopped; the MOTOR_URI server keeps running")
        return
    test_server.stop(server)
    say(f"demo: stopped; {server.kind} (pid {server.pid}) stopped and its data removed")


def listen(app: Any, host: str, port: int | None) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Start serving ``app``; return the server and its port."""
    try:
        sockets = tornado.netutil.bind_sockets(DEFAULT_PORT if port is None else port, host)
    except OSError as exc:
        if port is not None or exc.errno != errno.EADDRINUSE:
            raise
        say(f"demo: port {DEFAULT_PORT} is taken; using a free port")
        sockets = tornado.netutil.bind_sockets(0, host)
    http_server = tornado.httpserver.HTTPServer(app, max_body_size=MAX_UPLOAD)
    http_server.add_sockets(sockets)
    return http_server, sockets[0].getsockname()[1]


async def run(args: argparse.Namespace, server: test_server.Server) -> int:
    """Serve the app until Ctrl-C, or until the self-test is done. Returns the exit status."""
    db_name = args.db or ("motor_demo" if not args.self_test else f"motor_demo_{uuid.uuid4().hex}")
    client: MotorClient[dict[str, Any]] = MotorClient(server.full_uri)
    db = client[db_name]
    app = make_app(db, log=None if args.self_test else say)
    try:
        http_server, port = listen(app, args.host, 0 if args.self_test else args.port)
    except OSError as exc:
        say(f"demo: cannot serve on {args.host} port {args.port}: {exc.strerror or exc}")
        client.close()
        return 2
    url = f"http://{args.host}:{port}/"

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    test: asyncio.Future[int] | None = None
    try:
        if not args.self_test:
            say(f"demo: serving the media board at {url}  (Ctrl-C stops it)")
            await stopping.wait()
            say("demo: stopping")
            return 0
        say(f"demo: self-test of the media board at {url}")
        test = asyncio.ensure_future(self_test(url, lambda line: say(f"self-test: {line}")))
        interrupted = asyncio.ensure_future(stopping.wait())
        await asyncio.wait([test, interrupted], return_when=asyncio.FIRST_COMPLETED)
        interrupted.cancel()
        if not test.done():
            say("demo: interrupted; stopping")
            # Requests still running are cut short as the client closes: their errors
            # are the shutdown's, not the application's.
            logging.getLogger("tornado.application").setLevel(logging.CRITICAL)
            return 130
        try:
            test.result()
        except SelfTestFailed as exc:
            say(f"self-test: FAILED: {exc}")
            return 1
        except Exception as exc:
            traceback.print_exc()
            say(f"self-test: FAILED: {exc!r}")
            return 1
        return 0
    finally:
        http_server.stop()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(http_server.close_all_connections(), 5)
        if test is not None:
            # Interrupted: the self-test's requests fail now that the app is closed.
            if not test.done():
                await asyncio.wait([test], timeout=5)
            if not test.done():
                test.cancel()
            elif not test.cancelled():
                test.exception()  # retrieved: not an error of the self-test
        if args.self_test and not args.db and server.kind == "uri":
            # The self-test's database on MOTOR_URI's server. (A server that the demo
            # started goes away with all its data when the demo ends.)
            try:
                await asyncio.wait_for(client.drop_database(db_name), 10)
            except Exception as exc:
                say(f"demo: could not drop the database {db_name}: {exc!r}")
        client.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        server = start_database()
    except (test_server.ServerUnavailable, test_server.ServerStartError) as exc:
        # The harness's messages speak of MOTOR_TEST_URI and the tests.
        message = str(exc).replace("MOTOR_TEST_URI", "MOTOR_URI").replace("the tests", "the demo")
        say(f"demo: no database server: {message}")
        return 2
    except KeyboardInterrupt:
        return 130
    try:
        return asyncio.run(run(args, server))
    except KeyboardInterrupt:  # Ctrl-C before the loop could take it
        return 130
    finally:
        stop_database(server)


if __name__ == "__main__":
    sys.exit(main())
