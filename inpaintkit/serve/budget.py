"""The server's one memory budget, shared out, and the gate that keeps decodes within their share.

docs/serve.md, "Memory": :class:`ServeBudget` splits ``--memory-budget`` between the images
held, the fills waiting, the fill running and the uploads being decoded; :class:`DecodeGate`
holds the decodes under way to their share, refusing one that never fits (413) and one that
does not fit now (503).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from inpaintkit.memory import format_bytes
from inpaintkit.serve.errors import ApiError


@dataclass(frozen=True)
class ServeBudget:
    """One memory cap for the whole server, shared out (bytes; docs/serve.md, "Memory").

    ``total`` is the budget (``--memory-budget``, default :func:`inpaintkit.memory.default_budget`):
    half holds the images and results (:class:`~inpaintkit.serve.store.ImageStore`), an eighth the fills waiting and
    running (their holes and working copies), a quarter the method while one fill runs, an
    eighth the uploads being decoded. The model and Python come on top.
    """

    total: int

    @property
    def store(self) -> int:
        return self.total // 2

    @property
    def queue(self) -> int:
        return self.total // 8

    @property
    def fill(self) -> int:
        return self.total // 4

    @property
    def decode(self) -> int:
        return self.total // 8


class DecodeGate:
    """Bytes reserved by the decodes under way; one that would pass ``limit`` is refused (503).

    A single decode over the limit alone is refused for good (413): it would never fit.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, nbytes: int, what: str) -> Iterator[None]:
        if nbytes > self.limit:
            raise ApiError(
                413,
                f"{what} needs about {format_bytes(nbytes)} to decode, over the server's "
                f"{format_bytes(self.limit)} for decoding; start serve with a larger "
                "--memory-budget",
            )
        with self._lock:
            if self._held and self._held + nbytes > self.limit:
                raise ApiError(503, "the server is decoding other uploads; try again in a moment")
            self._held += nbytes
        try:
            yield
        finally:
            with self._lock:
                self._held -= nbytes
