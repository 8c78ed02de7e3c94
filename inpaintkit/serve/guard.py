"""Only this machine's own pages may talk to ``inpaintkit serve``.

A local server is reachable by any web page the user visits: a page on ``evil.example`` can
make the browser send requests to ``127.0.0.1`` (cross-site requests), or rebind its own name
to ``127.0.0.1`` so that its scripts read the answers (DNS rebinding). :class:`LocalOnly`
refuses, before any route runs:

* a ``Host`` header that does not name this server (DNS rebinding: the browser sends the
  attacker's name);
* an ``Origin`` header that is not this server's own (cross-site ``fetch`` and form posts);
* a ``Sec-Fetch-Site: cross-site`` request that is not a top-level navigation (what old
  browsers' ``<img>`` or ``<script>`` tags would do to read or trigger things).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: Names of this machine that every local server answers to.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _split(netloc: str) -> tuple[str, int | None] | None:
    """``"host:port"`` -> ``(lower-case host, port or None)``; None when malformed."""
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path or parts.query:
        return None
    return host, port


class LocalOnly:
    """ASGI middleware: answer 403 (JSON ``{"error": ...}``) to requests from foreign pages.

    ``hosts``: the names this server may be called by (case-insensitive; IPv6 without
    brackets). ``port``: the port it listens on; None accepts any (an in-process test client).
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str], port: int | None = None) -> None:
        self.app = app
        self.hosts = {h.lower().strip("[]") for h in hosts}
        self.port = port

    def _ours(self, host: str, port: int | None, default_port: int) -> bool:
        return host in self.hosts and (self.port is None or (port or default_port) == self.port)

    def refusal(self, headers: Headers) -> str | None:
        """Why a request with these headers is refused, or None when it is this server's own."""
        host = _split(headers.get("host", ""))
        if host is None or not self._ours(*host, 80):
            return (
                f"refused: Host {headers.get('host', '')!r} is not this server "
                "(DNS-rebinding protection); open the address `inpaintkit serve` printed"
            )
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            named = _split(parts.netloc) if parts.scheme in ("http", "https") else None
            if named is None or not self._ours(*named, 443 if parts.scheme == "https" else 80):
                return f"refused: requests from {origin!r} are not allowed (only this server's own page)"
        if (
            headers.get("sec-fetch-site") == "cross-site"
            and headers.get("sec-fetch-mode") != "navigate"
        ):
            return "refused: cross-site request"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            reason = self.refusal(Headers(scope=scope))
            if reason is not None:
                await JSONResponse({"error": reason}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)
