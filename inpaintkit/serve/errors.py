"""How ``inpaintkit serve`` says no: :class:`ApiError`, and every error answered as one line.

A route raises :class:`ApiError` (or the folder's :class:`~inpaintkit.serve.folder.FolderError`)
with the HTTP status that says why; the page shows the message as is. A 503 ("busy": a full
queue, decodes under way) carries ``Retry-After``; anything unexpected is a 500 that still
names its error in one line, ``{"error": ...}`` like the others.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class ApiError(Exception):
    """A request that cannot be served: HTTP ``status`` and a one-line message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def api_error(request: Request, exc: Exception) -> Response:
    """The answer to a refused request: ``{"error": message}`` with its status."""
    if isinstance(exc, HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    status = getattr(exc, "status", 400)
    # 503 is "busy" (a full queue, decodes under way): a client may try again shortly.
    headers = {"Retry-After": "2"} if status == 503 else None
    return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    """The answer to an unexpected exception: a 500 naming it in one line."""
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)
