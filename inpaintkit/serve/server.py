"""Listening: bind the socket, name the server's URL and hosts, run the app under uvicorn.

The socket is bound before the app is built, so the port is known (``--port 0`` picks a
free one) and the Host/Origin guard can be told exactly which names and port are ours.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from inpaintkit.serve.guard import LOOPBACK_HOSTS

#: Seconds the open requests get to finish after Ctrl-C.
GRACE = 0.5

#: Hosts meaning "every interface of this machine".
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class ServeError(OSError):
    """The server cannot start; the message says why in one line."""


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_names(host: str, extra: Iterable[str] = ()) -> set[str]:
    """The names a browser may call this server by (what its Host header may say).

    The loopback names always; ``host`` itself; for a wildcard bind, this machine's name
    and addresses; and ``extra`` (``--allow-host``), e.g. a name in /etc/hosts.
    """
    names = {*LOOPBACK_HOSTS, host.strip("[]").lower(), *(e.lower() for e in extra)}
    if host in WILDCARD_HOSTS:
        machine = socket.gethostname()
        names |= {machine.lower(), socket.getfqdn().lower()}
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(machine, None)}
        except OSError:
            pass
    names.discard("")
    return names


def open_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # proto=IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    # only on connections whose socket says TCP, and with it on every response split in two
    # writes (headers, body) waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and address == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
        sock.bind((address, port))
        sock.listen(128)  # a browser opened right away queues until uvicorn accepts
    except OSError as err:
        sock.close()
        hint = "; pass --port N (0 = any free port)" if err.errno == errno.EADDRINUSE else ""
        raise ServeError(f"cannot listen on {host}:{port}: {err.strerror or err}{hint}") from None
    return sock


def server_url(sock: socket.socket, host: str) -> str:
    """The address to open in a browser: ``http://HOST:PORT/`` (127.0.0.1 for a wildcard bind)."""
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in WILDCARD_HOSTS else host.strip("[]")
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn's server, which also calls ``on_stop`` the moment Ctrl-C arrives: before it
    waits for the open requests to end, so that the app can answer its long polls at once."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], object] | None) -> None:
        super().__init__(config)
        self.on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if first and self.on_stop is not None:
            self.on_stop()


def _server(app: ASGIApp, on_stop: Callable[[], object] | None = None) -> uvicorn.Server:
    # A request still open GRACE s after Ctrl-C is cut off (uvicorn's default waits for all).
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACE)  # fmt: skip
    return _Server(config, on_stop)


def run(app: ASGIApp, sock: socket.socket, on_stop: Callable[[], object] | None = None) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C (uvicorn; its own logs: warnings only).

    ``on_stop`` is called as soon as Ctrl-C arrives (``inpaintkit serve``: the fill queue
    closes, which answers the requests waiting on it).
    """
    _server(app, on_stop).run(sockets=[sock])


class BackgroundServer:
    """Serve ``app`` on ``sock`` from a daemon thread while the ``with`` block runs.

    For tests, benchmarks and notebooks: ``with BackgroundServer(app, sock) as url: ...``
    (``url`` as :func:`server_url` names it); leaving the block stops the server.
    """

    def __init__(self, app: ASGIApp, sock: socket.socket, host: str = "127.0.0.1") -> None:
        self.server = _server(app)
        self.sock = sock
        self.url = server_url(sock, host)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="inpaintkit-serve", daemon=True
        )

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServeError("the server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(30)
