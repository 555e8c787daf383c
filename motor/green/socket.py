"""The green socket, and green DNS, connect and TLS handshake.

A :class:`GreenSocket` wraps a connected socket (plain or :class:`ssl.SSLSocket`)
whose OS socket is always non-blocking; its timeout is a Python attribute.  Every
blocking method tries the system call first and waits only when it would block:

* in a child greenlet the wait parks the child on the loop (``add_reader`` /
  ``add_writer`` plus a timer for the timeout);
* anywhere else (PyMongo's background threads share these sockets) it blocks the
  calling thread in :func:`select.poll`.

It implements the surface PyMongo's synchronous network layer uses: ``sendall``,
``recv_into``, ``settimeout``/``gettimeout``, ``fileno``, ``close``, ``pending`` and a
few passthroughs.  Blocking conditions surface as PyMongo expects them from a
blocking socket: :class:`TimeoutError` ("timed out") when the timeout expires, never
:class:`BlockingIOError` or :class:`ssl.SSLWantReadError`.
"""

from __future__ import annotations

import concurrent.futures
import errno
import functools
import ipaddress
import operator
import os
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, cast

from pymongo import _csot
from pymongo.errors import ConfigurationError, ConnectionFailure

from motor.green.hub import Child, Hub, Waiter, _getcurrent, refuse_to_block

__all__ = [
    "GreenSocket",
    "check_tls_context",
    "connect_timeout",
    "create_connection",
    "resolve",
    "tls_handshake",
    "unusable_tls_context",
    "wait_fd",
]

_WOULD_BLOCK = (BlockingIOError, InterruptedError)
# A message of at least this many bytes waits for a later loop iteration before its first
# send when the current iteration's work budget is spent (by its encoding, usually).
LARGE_SEND_BYTES = 256 * 1024
# At most this many bytes per send() of a large message: the kernel copies as much as its
# buffer takes in one call (several megabytes on loopback), a millisecond or more.
SEND_SLICE_BYTES = 512 * 1024
_POLLIN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_POLLOUT = select.POLLOUT | select.POLLERR | select.POLLHUP


def _timed_out() -> TimeoutError:
    return TimeoutError("timed out")


def _poll(fd: int, write: bool, ms: int | None) -> bool:
    """Whether ``fd`` turns readable (or writable) within ``ms`` milliseconds (None:
    however long it takes), in :func:`select.poll`, in the calling thread."""
    poller = select.poll()
    poller.register(fd, _POLLOUT if write else _POLLIN)
    while True:
        try:
            return bool(poller.poll(ms))
        except InterruptedError:
            continue


def _ready_now(fd: int, write: bool) -> bool:
    """Whether ``fd`` is readable (or writable) now, without waiting."""
    return _poll(fd, write, 0)


def wait_fd(fd: int, write: bool, timeout: float | None) -> bool:
    """Wait until ``fd`` is readable (or writable); False if ``timeout`` expires.

    Parks a child greenlet; blocks any other caller in :func:`select.poll`.
    """
    current = _getcurrent()
    if isinstance(current, Child):
        return current.hub.wait_fd(fd, write, timeout)
    if timeout is None or timeout > 0:
        refuse_to_block("a socket")
    return _poll(fd, write, None if timeout is None else max(int(timeout * 1000 + 0.999), 0))


def _pause_if_spent() -> None:
    """In a child whose loop iteration has spent its work budget, wait for a later one."""
    current = _getcurrent()
    if isinstance(current, Child) and not current.hub._child_window_open():
        current.hub.pause()


class GreenSocket:
    """A socket whose blocking methods never block an event loop (see module doc).

    Reads from a child keep the descriptor registered with the loop between waits
    (registering costs two ``epoll_ctl`` calls and a handle per wait otherwise); it is
    unregistered when readiness arrives with nobody waiting, and before closing.  The
    first read in a child after a send parks before trying the socket.
    """

    __slots__ = (
        "_awaiting_reply",
        "_carry",
        "_fd",
        "_plain",
        "_read_queued",
        "_read_stale",
        "_read_waiter",
        "_reader_hub",
        "_reads_cancelled",
        "_sock",
        "_timeout_cell",
        "_wakes_reads",
        "gettimeout",
        "settimeout",
    )

    def __init__(self, sock: socket.socket, timeout: float | None = None) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        # Not TLS: no data can be buffered above the OS socket.
        self._plain = not isinstance(sock, ssl.SSLSocket)
        # The timeout lives in a one-item list so that ``settimeout`` and
        # ``gettimeout`` can be C callables: PyMongo calls them several times per
        # operation, and a Python method costs a frame each time.
        cell: list[float | None] = [timeout]
        self._timeout_cell = cell
        self.settimeout: Callable[[float | None], None] = functools.partial(
            operator.setitem, cell, 0
        )
        self.gettimeout = cast(
            "Callable[[], float | None]", functools.partial(operator.getitem, cell, 0)
        )
        # The hub whose loop watches the descriptor for reading, if any.
        self._reader_hub: Hub | None = None
        # The waiter reads park on (created by the first read that parks).
        self._read_waiter: Waiter | None = None
        # A resume of the parked read waits for the hub's work budget.
        self._read_queued = False
        # A queued resume ran: the loop may still report the readiness it consumed.
        self._read_stale = False
        # Data was just sent on a plain socket: the next read in a child waits for
        # readiness before trying (the reply cannot be there yet; a failed recv costs a
        # system call and an exception).
        self._awaiting_reply = False
        # Bytes of the next reply that a read of the previous one received (see
        # motor.green.pool._green_receive_message).
        self._carry: memoryview | None = None
        # cancel_reads() wakes reads parked in children (the socket belongs to a
        # connection whose cancellation calls it), and has been called.
        self._wakes_reads = False
        self._reads_cancelled = False

    # -- PyMongo's surface ---------------------------------------------------------

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        return self.recv_within(buffer, self._timeout_cell[0], nbytes)

    def recv_within(self, buffer: Any, timeout: float | None, nbytes: int = 0) -> int:
        """``recv_into`` with its own ``timeout`` (seconds) instead of the socket's.

        With a timeout of 0 or less it makes one attempt that does not wait.  Raises
        :class:`TimeoutError` ("timed out") when nothing arrives in time.
        """
        if self._awaiting_reply:
            self._awaiting_reply = False
            if timeout is None or timeout > 0:
                current = _getcurrent()
                if isinstance(current, Child) and not self._wait_readable(current.hub, timeout):
                    raise _timed_out()
        sock = self._sock
        while True:
            try:
                return sock.recv_into(buffer, nbytes)
            except (*_WOULD_BLOCK, ssl.SSLWantReadError):
                if timeout is not None and timeout <= 0:
                    raise _timed_out() from None
                current = _getcurrent()
                if isinstance(current, Child):
                    ready = self._wait_readable(current.hub, timeout)
                else:
                    ready = wait_fd(self._fd, False, timeout)
            except ssl.SSLWantWriteError:
                ready = wait_fd(self._fd, True, timeout)
            if not ready:
                raise _timed_out()

    def cancel_reads(self) -> None:
        """Make reads in children fail with "timed out", now and later (any thread).

        Called when PyMongo cancels the socket's connection; its reader then raises
        PyMongo's cancellation error.
        """
        self._reads_cancelled = True
        hub = self._reader_hub
        if hub is not None and hub.pid == os.getpid():
            try:
                hub.loop.call_soon_threadsafe(self._wake_cancelled_read)
            except RuntimeError:  # the loop is closed
                pass

    def _wake_cancelled_read(self) -> None:
        # Runs on the hub greenlet: resume the parked read within this iteration's work
        # budget, or queue the resume for a later one, as _on_readable does (close() and
        # a pool cleared with interruptInUseConnections cancel every connection at once).
        waiter = self._read_waiter
        if waiter is None or waiter._child is None:
            return
        hub = waiter._hub
        if (not hub._resumes or hub._catch_up(False)) and hub._window_open():
            waiter.switch(False)
        else:
            hub.resume_later(self._switch_parked_read, False)

    def _cancelled_meanwhile(self) -> bool:
        return self._reads_cancelled

    def _switch_parked_read(self, ready: bool) -> None:
        # Runs on the hub greenlet: resume the read parked on this socket, if any.
        waiter = self._read_waiter
        if waiter is not None and waiter._child is not None:
            waiter.switch(ready)

    def _wait_readable(self, hub: Hub, timeout: float | None) -> bool:
        # Runs on a child.
        if self._reads_cancelled:
            return False
        if self._reader_hub is not hub:
            previous = self._reader_hub
            if previous is not None:
                if not previous.closed and previous.loop.is_running():
                    return hub.wait_fd(self._fd, False, timeout)
                # The client moved to this loop (motor.core.Binding): watch here now.
                self._unwatch()
            hub.watch_readable(self._fd, self._on_readable)
            self._reader_hub = hub
            # cancel_reads() from another thread may have run after the check above but
            # before _reader_hub was set, and scheduled no wake-up: check again.  (mypy
            # narrowed the flag to False above; another thread may have set it.)
            if self._cancelled_meanwhile():
                return False
        waiter = self._read_waiter
        if waiter is None or waiter._hub is not hub:
            # One waiter per socket, reused by every read: it is only ever resumed
            # while a read is parked on it, so it never keeps a value between reads.
            waiter = self._read_waiter = Waiter(hub)
        ready: bool = waiter.get(timeout)
        return ready

    def _on_readable(self) -> None:
        # Runs on the hub greenlet, as a reader callback.
        waiter = self._read_waiter
        if waiter is None or waiter._child is None:
            if self._read_stale:
                # Reported by a poll made before a queued resume read the data.
                self._read_stale = False
                return
            # Readable with nobody waiting (data or EOF on an idle connection): stop
            # watching until the next read parks.
            self._unwatch()
            return
        if self._read_queued:
            return  # still readable (level-triggered): the resume is already queued
        hub = waiter._hub
        # Queued resumes first, while the budget lasts.
        if (not hub._resumes or hub._catch_up(False)) and hub._window_open():
            waiter.switch(True)
        else:
            # This iteration's work budget is spent: resume on a later one.  The
            # descriptor stays registered; readiness reported meanwhile is ignored.
            self._read_queued = True
            hub.resume_later(self._resume_read)

    def _resume_read(self) -> None:
        # Runs on the hub greenlet, from the hub's queue of resumes.
        self._read_queued = False
        self._read_stale = True
        # Possibly a later read than the one that was ready: a spurious wake-up just
        # makes recv_into wait again.
        self._switch_parked_read(True)

    def _unwatch(self) -> None:
        # Runs on the hub's loop thread.
        hub = self._reader_hub
        if hub is not None:
            self._reader_hub = None
            if not hub.loop.is_closed():
                hub.loop.remove_reader(self._fd)

    def sendall(self, data: Any) -> None:
        sent = 0
        if type(data) is bytes:
            if len(data) >= LARGE_SEND_BYTES:
                # Encoding a large message took this iteration's work budget: send it
                # from a later iteration, not in the same stretch of loop time.
                _pause_if_spent()
            else:
                # Nearly always one send: the message fits in the socket's buffer.
                try:
                    sent = self._sock.send(data)
                except (*_WOULD_BLOCK, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
                else:
                    if sent == len(data):
                        self._awaiting_reply = self._plain
                        return
        self._send_from(data, sent)
        self._awaiting_reply = self._plain

    def send_pieces(self, pieces: Any) -> None:
        """Send a message given as several bytes-like pieces, in their order (see
        :mod:`motor.green.splice`); the loop runs between two large pieces once the
        iteration's work budget is spent: before a piece that takes the bytes sent since
        the last such check to LARGE_SEND_BYTES (one large piece, or many small ones: a
        large array's slices)."""
        since = 0
        for piece in pieces:
            size = len(piece)
            if since + size >= LARGE_SEND_BYTES:
                _pause_if_spent()
                since = 0
            self._send_from(piece, 0)
            since += size
        self._awaiting_reply = self._plain

    def _send_from(self, data: Any, sent: int) -> None:
        # The rest of sendall(), from byte ``sent``.
        sock = self._sock
        view = memoryview(data).cast("B")
        total = len(view)
        while sent < total:
            try:
                sent += sock.send(view[sent : sent + SEND_SLICE_BYTES])
            except (*_WOULD_BLOCK, ssl.SSLWantWriteError):
                write = True
            except ssl.SSLWantReadError:
                write = False
            else:
                if sent < total:
                    # A large message the peer reads as fast as it is sent: the loop
                    # runs between two sends once this iteration's work budget is spent.
                    _pause_if_spent()
                continue
            timeout = self._timeout_cell[0]
            current = _getcurrent()
            if not write and isinstance(current, Child):
                # TLS needs to read during a send: wait the way reads wait, on the
                # descriptor's own registration (a second reader would replace it).
                ready = self._wait_readable(current.hub, timeout)
            else:
                ready = wait_fd(self._fd, write, timeout)
            if not ready:
                raise _timed_out()

    def pending(self) -> int:
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket):
            return sock.pending()
        return 0

    def close(self) -> None:
        hub = self._reader_hub
        if hub is None:
            self._sock.close()
        elif hub.pid != os.getpid():
            # In a child process after fork() (PyMongo closes the parent's connections
            # there): the loop's poller is shared with the parent, which still watches
            # the descriptor.  Only close this process's copy.
            self._reader_hub = None
            self._sock.close()
        elif hub.owns_loop_thread():
            # On the loop's thread, or the loop is not running (stopped, not closed):
            # nothing polls the descriptor meanwhile.
            self._unwatch()
            self._sock.close()
        else:
            # Closed by one of PyMongo's threads while the loop runs: the loop must
            # forget the descriptor before it is released (and its number reused), so
            # close on the loop.
            try:
                hub.loop.call_soon_threadsafe(self._close_on_loop)
            except RuntimeError:  # the loop is closed
                self._reader_hub = None
                self._sock.close()

    def _close_on_loop(self) -> None:
        self._unwatch()
        self._sock.close()

    # -- passthroughs --------------------------------------------------------------

    @property
    def sock(self) -> socket.socket:
        """The wrapped socket (non-blocking)."""
        return self._sock

    def getpeername(self) -> Any:
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    def setsockopt(self, *args: Any) -> None:
        self._sock.setsockopt(*args)

    def getsockopt(self, *args: Any) -> Any:
        return self._sock.getsockopt(*args)

    def getpeercert(self, binary_form: bool = False) -> Any:
        if isinstance(self._sock, ssl.SSLSocket):
            return self._sock.getpeercert(binary_form)
        raise AttributeError("getpeercert")

    @property
    def session(self) -> ssl.SSLSession | None:
        if isinstance(self._sock, ssl.SSLSocket):
            return self._sock.session
        return None

    def __repr__(self) -> str:
        return f"<GreenSocket fd={self._fd} timeout={self._timeout_cell[0]!r}>"


def connect_timeout(default: float | None) -> float | None:
    """The connect/handshake timeout: the CSOT deadline if one applies."""
    timeout = _csot.remaining()
    if timeout is None:
        return default
    if timeout <= 0:
        raise _timed_out()
    return timeout


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


#: Threads of the executor that resolves host names (:func:`resolve`).
RESOLVER_THREADS = 4
# (process id, executor): a process made by fork() gets an executor of its own (the
# parent's threads do not exist in it).
_resolver: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def _resolver_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _resolver
    pid = os.getpid()
    if _resolver is None or _resolver[0] != pid:
        executor = concurrent.futures.ThreadPoolExecutor(
            RESOLVER_THREADS, thread_name_prefix="motor-resolver"
        )
        _resolver = (pid, executor)
    return _resolver[1]


def resolve(host: str, port: int, family: int, timeout: float | None) -> list[Any]:
    """``getaddrinfo`` that never blocks a loop.

    IP literals are converted without any lookup.  A name is resolved in a thread of
    Motor's resolver (:data:`RESOLVER_THREADS` threads, not the loop's default executor,
    which the application's ``asyncio.to_thread`` calls may keep busy) while the child
    is parked; outside a child it is resolved in the calling thread.  ``timeout`` is
    what the lookup may take at most (PyMongo limits it only by a ``timeoutMS``
    deadline).  (Through the executor's future, not a task running
    ``loop.getaddrinfo()``: ``asyncio.run()`` cancels every task as it shuts down, and
    then lets the calls nobody awaits finish: see ``Hub.finish_unawaited``.)
    """
    if _is_ip_literal(host):
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    current = _getcurrent()
    if isinstance(current, Child):
        hub = current.hub
        future = hub.loop.run_in_executor(
            _resolver_executor(), socket.getaddrinfo, host, port, family, socket.SOCK_STREAM
        )
        return hub.wait_future(future, timeout)
    refuse_to_block(f"a DNS lookup of {host!r}")
    return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)


def _connect(sock: socket.socket, address: Any, timeout: float | None) -> None:
    err = sock.connect_ex(address)
    if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY):
        # A non-blocking connect reports EINPROGRESS even where the handshake completed
        # within the call (a server on the same host): a poll that does not wait says
        # so, without parking on the loop for one iteration.
        if not _ready_now(sock.fileno(), True) and not wait_fd(sock.fileno(), True, timeout):
            raise _timed_out()
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


def create_connection(address: tuple[str, int], options: Any) -> socket.socket:
    """Connect to ``address`` without blocking a loop; return a non-blocking socket.

    Mirrors PyMongo's ``pool_shared._create_connection``: Unix domain sockets for
    hosts ending in ``.sock``, IPv4 only for ``localhost``, TCP_NODELAY, keepalive,
    connectTimeoutMS (or the CSOT deadline) for each address tried.
    """
    from pymongo.pool_shared import _set_keepalive_times

    host, port = address
    if host.endswith(".sock"):
        if not hasattr(socket, "AF_UNIX"):
            raise ConnectionFailure("UNIX-sockets are not supported on this system")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            _connect(sock, host, connect_timeout(options.connect_timeout))
        except BaseException:
            sock.close()
            raise
        return sock

    family = socket.AF_INET
    if socket.has_ipv6 and host != "localhost":
        family = socket.AF_UNSPEC
    err: BaseException | None = None
    # connectTimeoutMS limits each connect, not the lookup (as in PyMongo): only a
    # timeoutMS deadline does.
    for af, socktype, proto, _, sa in resolve(host, port, family, connect_timeout(None)):
        sock = socket.socket(af, socktype | socket.SOCK_CLOEXEC, proto)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            timeout = connect_timeout(options.connect_timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
            _set_keepalive_times(sock)
            _connect(sock, sa, timeout)
            return sock
        except OSError as exc:
            err = exc
            sock.close()
        except BaseException:
            sock.close()
            raise
    if err is not None:
        raise err
    raise OSError("getaddrinfo failed")


_SSL_SOCKET_CREATE = ssl.SSLSocket._create.__func__.__code__  # type: ignore[attr-defined]


def _close_half_made_ssl_socket(exc: BaseException) -> None:
    # ssl.SSLSocket._create takes the socket's file descriptor over (sock.detach()) before
    # it checks whether the socket is connected; when that check fails (getpeername() or
    # recv(1) on a connection the peer reset), the new SSLSocket is left open, reachable
    # only from the traceback.  Close it there, also when the error was re-raised as
    # another (PyMongo's AutoReconnect "SSL handshake failed", from the OSError).
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 8:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code is _SSL_SOCKET_CREATE:
                half_made = frame.f_locals.get("self")
                if isinstance(half_made, ssl.SSLSocket):
                    half_made.close()
            tb = tb.tb_next
        todo.append(current.__cause__)
        todo.append(current.__context__)


def check_tls_context(context: Any) -> None:
    """Raise :class:`~pymongo.errors.ConfigurationError` unless ``context`` (a client's
    TLS context, or None without TLS) is the standard library's :class:`ssl.SSLContext`,
    the only one whose handshake Motor can run without blocking.  PyMongo selects
    pyOpenSSL's instead when it is installed (``pymongo[ocsp]``)."""
    if context is not None and not isinstance(context, ssl.SSLContext):
        raise unusable_tls_context(type(context))


def unusable_tls_context(context_class: type) -> ConfigurationError:
    """The error for TLS through a context of ``context_class`` (pyOpenSSL's)."""
    return ConfigurationError(
        "Motor needs the standard library's ssl module for TLS, but PyMongo selected "
        f"{context_class.__module__}.{context_class.__name__} (pyOpenSSL, installed "
        "with pymongo[ocsp]); uninstall pyOpenSSL to use TLS with Motor"
    )


def tls_handshake(
    sock: socket.socket,
    context: Any,
    server_hostname: str | None,
    session: Any,
    timeout: float | None,
) -> ssl.SSLSocket:
    """Wrap ``sock`` with ``context`` and run the handshake without blocking a loop.

    Certificate and hostname checks are the context's own (PyMongo configures
    ``check_hostname``); the caller applies PyMongo's extra ``match_hostname`` step.
    Only the standard library's :class:`ssl.SSLContext` can be driven this way.
    """
    check_tls_context(context)
    sock.setblocking(False)
    try:
        ssl_sock: ssl.SSLSocket = context.wrap_socket(
            sock,
            server_hostname=server_hostname,
            session=session,
            do_handshake_on_connect=False,
        )
    except BaseException as exc:
        _close_half_made_ssl_socket(exc)
        raise
    try:
        fd = ssl_sock.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                ssl_sock.do_handshake()
                return ssl_sock
            except ssl.SSLWantReadError:
                write = False
            except ssl.SSLWantWriteError:
                write = True
            remaining = None if deadline is None else deadline - time.monotonic()
            if not wait_fd(fd, write, remaining):
                raise _timed_out()
    except BaseException:
        # The SSL socket owns the file descriptor now.
        ssl_sock.close()
        raise
