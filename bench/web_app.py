"""A minimal Tornado web application for ``bench/web.py``, on one of four MongoDB drivers.

The same handlers run on every driver; only the small adapter that makes the client and
calls it differs:

=============  ==================================================================
``motor``      ``motor.motor_tornado.MotorClient``: this checkout's with ``--repo``
               (put first on ``sys.path``), otherwise whatever ``motor`` the running
               interpreter has (Motor 3.7.1 in its own virtualenv)
``pymongo``    PyMongo's ``AsyncMongoClient``
``mongojet``   ``mongojet.create_client`` (an asyncio client with a Rust core)
=============  ==================================================================

Handlers:

``GET /find_one``
    ``find_one({"_id": k})`` of collection ``small``, ``k`` a random one of ``--ids`` keys
    ``"k0000"``, ``"k0001"``...; the document as JSON.
``GET /list``
    The first 100 documents of collection ``list`` as a JSON array:
    ``find({}).to_list(100)``; mongojet's ``Cursor.to_list`` takes no length, so there it
    is ``find({}, limit=100)`` and ``to_list()`` (the collection holds 100 documents).
``POST /write``
    ``insert_one`` of the request's JSON body (a small document) into collection
    ``insert``; ``{"inserted_id": "..."}``.
``GET /static``
    No database: a constant document of the same shape as ``/find_one``'s, as JSON (what
    Tornado and the JSON encoding cost without a driver).
``GET /_timings`` (with ``--timings`` only)
    Where the requests served since the last ``GET /_timings`` spent their time inside the
    app, as JSON: percentiles (µs) of each handler's whole run (Tornado's ``prepare`` to
    ``on_finish``) and of the driver call it awaited; the app then starts counting afresh.
    ``bench/web.py --timings`` reads it around each measured run.

Usage (``bench/web.py`` runs it; by hand for a look)::

    .venv/bin/python bench/web_app.py --driver motor --repo . \\
        --uri mongodb://127.0.0.1:27017 --db motor_bench_web

It listens on ``127.0.0.1`` (``--port``, default 0: a free port), and once the client has
answered a ``find_one`` it prints one line ``READY {json}`` to stdout with the port, the
driver's module path and versions.  SIGTERM or SIGINT stops it cleanly (client closed);
with ``--profile PATH`` it runs under ``cProfile`` from readiness to then and dumps the
statistics to ``PATH``.  Access logging is off for every driver.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

DRIVERS = ("motor", "pymongo", "mongojet")
#: ``_id`` of the ``n``-th document of collection ``small``: strings, because FerretDB 1.24
#: with SQLite pushes an ``_id`` equality down to SQL for strings and ObjectIds only (an
#: integer ``_id`` is compared in Go after decoding every document).
KEY_FORMAT = "k{:04d}"
#: Documents returned by ``GET /list``.
LIST_LENGTH = 100


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/web_app.py", description=__doc__.split("\n")[0])
    parser.add_argument("--driver", choices=DRIVERS, required=True)
    parser.add_argument("--uri", required=True, help="MongoDB URI, options included")
    parser.add_argument("--db", required=True, help="database of the collections")
    parser.add_argument("--ids", type=int, default=100, help="how many _id /find_one picks from")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: free)")
    parser.add_argument("--repo", help="a checkout of Motor to import motor from (first)")
    parser.add_argument("--profile", help="run under cProfile; write the stats here")
    parser.add_argument(
        "--timings", action="store_true", help="time each request in the app (GET /_timings)"
    )
    return parser.parse_args(argv)


class Store:
    """What the handlers need from a driver: three operations and ``close``."""

    async def find_one(self, key: str) -> Any:
        """The document of collection ``small`` whose ``_id`` is ``key``."""
        raise NotImplementedError

    async def list(self) -> list[Any]:
        """The first ``LIST_LENGTH`` documents of collection ``list``."""
        raise NotImplementedError

    async def insert(self, doc: dict[str, Any]) -> Any:
        """Insert ``doc`` into collection ``insert``; return its ``_id``."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the client."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The driver's module, path and version, for the readiness line."""
        raise NotImplementedError


class PyMongoApiStore(Store):
    """Motor's Tornado ``MotorClient`` or PyMongo's ``AsyncMongoClient``: one API."""

    def __init__(self, driver: str, uri: str, db: str) -> None:
        if driver == "motor":
            import motor
            import motor.motor_tornado

            self._module: Any = motor
            self.client: Any = motor.motor_tornado.MotorClient(uri)
        else:
            import pymongo

            self._module = pymongo
            self.client = pymongo.AsyncMongoClient(uri)
        database = self.client[db]
        self._small = database["small"]
        self._list = database["list"]
        self._insert = database["insert"]

    async def find_one(self, key: str) -> Any:
        return await self._small.find_one({"_id": key})

    async def list(self) -> list[Any]:
        docs: list[Any] = await self._list.find({}).to_list(LIST_LENGTH)
        return docs

    async def insert(self, doc: dict[str, Any]) -> Any:
        return (await self._insert.insert_one(doc)).inserted_id

    async def close(self) -> None:
        result = self.client.close()  # Motor's is synchronous, PyMongo async's a coroutine
        if inspect.isawaitable(result):
            await result

    def describe(self) -> dict[str, Any]:
        import pymongo

        return {
            "module": self._module.__name__,
            "path": self._module.__file__,
            "version": getattr(self._module, "version", None),
            "pymongo": pymongo.version,
            "pymongo_c_extensions": pymongo.has_c(),
        }


class MongojetStore(Store):
    """mongojet: ``create_client``, ``get_database``, ``get_collection``."""

    def __init__(self, client: Any, db: str) -> None:
        self.client = client
        database = client.get_database(db)
        self._small = database.get_collection("small")
        self._list = database.get_collection("list")
        self._insert = database.get_collection("insert")

    @classmethod
    async def create(cls, uri: str, db: str) -> MongojetStore:
        """Connect (``create_client`` is a coroutine) and return the store."""
        import mongojet

        return cls(await mongojet.create_client(uri), db)

    async def find_one(self, key: str) -> Any:
        return await self._small.find_one({"_id": key})

    async def list(self) -> list[Any]:
        cursor = await self._list.find({}, limit=LIST_LENGTH)
        docs: list[Any] = await cursor.to_list()
        return docs

    async def insert(self, doc: dict[str, Any]) -> Any:
        return (await self._insert.insert_one(doc))["inserted_id"]

    async def close(self) -> None:
        await self.client.close()

    def describe(self) -> dict[str, Any]:
        from importlib import metadata

        import mongojet
        import pymongo

        return {
            "module": "mongojet",
            "path": mongojet.__file__,
            "version": metadata.version("mongojet"),
            "pymongo": pymongo.version,
            "pymongo_c_extensions": pymongo.has_c(),
        }


class Timings:
    """Durations (seconds) of the requests served since the last :meth:`take`: each
    handler's whole run and the driver call it awaited."""

    def __init__(self) -> None:
        self.handler: list[float] = []
        self.driver: list[float] = []

    def take(self) -> dict[str, Any]:
        """Percentiles (µs) of what was recorded; start afresh (the same lists, which
        the handlers and the store hold)."""
        out = {"handler": _percentiles(self.handler), "driver": _percentiles(self.driver)}
        self.handler.clear()
        self.driver.clear()
        return out


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] * 1e6

    return {"n": n, "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1] * 1e6}


class TimedStore(Store):
    """``store``, with the time each operation took (as the handler awaits it) recorded."""

    def __init__(self, store: Store, timings: Timings) -> None:
        self._store = store
        self._driver = timings.driver

    async def find_one(self, key: str) -> Any:
        started = time.perf_counter()
        try:
            return await self._store.find_one(key)
        finally:
            self._driver.append(time.perf_counter() - started)

    async def list(self) -> list[Any]:
        started = time.perf_counter()
        try:
            return await self._store.list()
        finally:
            self._driver.append(time.perf_counter() - started)

    async def insert(self, doc: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            return await self._store.insert(doc)
        finally:
            self._driver.append(time.perf_counter() - started)

    async def close(self) -> None:
        await self._store.close()

    def describe(self) -> dict[str, Any]:
        return self._store.describe()


def make_app(store: Store, ids: int, timings: Timings | None = None) -> Any:
    """The Tornado application: three handlers sharing ``store`` (and with ``timings``,
    ``GET /_timings``, every request timed)."""
    import tornado.web

    keys = [KEY_FORMAT.format(n) for n in range(ids)]

    def dumps(value: Any) -> str:
        return json.dumps(value, default=str)  # ObjectId, datetime: as strings

    handler_times = timings.handler if timings is not None else None
    if timings is not None:
        store = TimedStore(store, timings)

    class BaseHandler(tornado.web.RequestHandler):
        _started = 0.0

        def prepare(self) -> None:
            if handler_times is not None:
                self._started = time.perf_counter()

        def on_finish(self) -> None:
            if handler_times is not None:
                handler_times.append(time.perf_counter() - self._started)

        def send_json(self, value: Any) -> None:
            self.set_header("Content-Type", "application/json")
            self.finish(dumps(value))

    class FindOneHandler(BaseHandler):
        async def get(self) -> None:
            doc = await store.find_one(keys[random.randrange(ids)])
            if doc is None:
                raise tornado.web.HTTPError(404)
            self.send_json(doc)

    class ListHandler(BaseHandler):
        async def get(self) -> None:
            self.send_json(await store.list())

    class WriteHandler(BaseHandler):
        async def post(self) -> None:
            doc = json.loads(self.request.body or b"{}")
            if not isinstance(doc, dict):
                raise tornado.web.HTTPError(400)
            self.send_json({"inserted_id": await store.insert(doc)})

    static_doc = {"_id": KEY_FORMAT.format(0), "name": "web", "n": 0, "x": 0.0, "pad": "x" * 37}

    class StaticHandler(BaseHandler):
        async def get(self) -> None:
            self.send_json(static_doc)

    class TimingsHandler(tornado.web.RequestHandler):
        def get(self) -> None:
            assert timings is not None
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(timings.take()))

    routes: list[Any] = [
        (r"/find_one", FindOneHandler),
        (r"/list", ListHandler),
        (r"/write", WriteHandler),
        (r"/static", StaticHandler),
    ]
    if timings is not None:
        routes.append((r"/_timings", TimingsHandler))
    return tornado.web.Application(
        routes,
        log_function=lambda handler: None,  # no access log, for every driver alike
    )


async def serve(args: argparse.Namespace) -> None:
    """Connect, check one read, listen, print ``READY``, serve until SIGTERM/SIGINT."""
    import tornado
    import tornado.httpserver
    import tornado.netutil

    store: Store
    if args.driver == "mongojet":
        store = await MongojetStore.create(args.uri, args.db)
    else:
        store = PyMongoApiStore(args.driver, args.uri, args.db)
    # The server must answer before the load starts; this also opens a first connection.
    await store.find_one(KEY_FORMAT.format(0))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    timings = Timings() if args.timings else None
    server = tornado.httpserver.HTTPServer(make_app(store, args.ids, timings))
    sockets = tornado.netutil.bind_sockets(args.port, "127.0.0.1")
    server.add_sockets(sockets)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    info = {
        "port": sockets[0].getsockname()[1],
        "pid": os.getpid(),
        "driver": args.driver,
        "python": sys.version,
        "executable": sys.executable,
        "tornado": tornado.version,
        **store.describe(),
    }
    print("READY " + json.dumps(info), flush=True)
    if profiler is not None:
        profiler.enable()
    try:
        await stop.wait()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        server.stop()
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the application until SIGTERM or SIGINT."""
    args = _parse_args(argv)
    if args.repo:
        sys.path.insert(0, os.path.abspath(args.repo))
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
