"""The ``inpaintkit serve`` web app: one page and a small JSON/binary API, on Starlette.

Everything the page does goes through these routes (errors are ``{"error": "one line"}``
with a 4xx status, which the page shows as is)::

    GET  /                               the page (static/index.html; its JS modules and CSS under /static)
    GET  /api/info                       methods (and why one is unavailable), limits, folder mode
    POST /api/images?name=N              body: an image file -> {id, name, width, height}
    GET  /api/images/ID/image.png        the image (uploads come back decoded: EXIF-rotated, RGB)
    POST /api/fill?image=ID&method=M[&max_size=S][&hd_strategy=H]   body: mask PNG, white = hole -> 202 {job}
    GET  /api/jobs/JOB[?wait=S]          state, queue position, progress; waits up to S s for a change
    GET  /api/images/ID/flow.png         a fill's attention offsets as optical-flow colours (fig. 4), RGBA: the hole only
    GET  /api/images/ID/overlay.png      appendix C: the regions the hole attended to
    GET  /api/images/ID/offsets          the offsets: int16 little-endian (2, h, w), (dy, dx)
    GET  /api/colorwheel.png             the colour wheel, for the legend
    GET  /api/folder                     folder mode: images and their masks (fill's pairing)
    POST /api/folder/open?path=P         open a listed image -> {id, ...}
    GET  /api/folder/mask?path=P         its mask as a PNG (404: none yet)
    PUT  /api/folder/mask?path=P         body: mask PNG -> saved atomically as <stem>_mask.png
    GET  /api/folder/thumb?path=P        a thumbnail with the mask tinted over it

The model is loaded once, by :func:`create_app`; fills run on :class:`~inpaintkit.serve.jobs.FillQueue`'s
worker thread, so the event loop only ever waits. Uploads are limited in bytes and, as in
``fill``, in decoded pixels (decompression bombs); see docs/serve.md.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from inpaintkit import __version__
from inpaintkit.checkpoint import CheckpointError
from inpaintkit.devices import resolve_device
from inpaintkit.fill_images import attention_pictures
from inpaintkit.hd_strategy import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    StrategyError,
    check_strategy,
    resize_limit,
    work_bound,
)
from inpaintkit.inpaint import FEATURE_STRIDE
from inpaintkit.io import DEFAULT_MAX_PIXELS, ImageReadError, open_image, read_mask, to_rgb8
from inpaintkit.memory import (
    DECODE_BYTES_PER_PIXEL,
    MemoryBudgetError,
    check_fill,
    default_budget,
    format_bytes,
)
from inpaintkit.methods import DeepFillMethod, InpaintMethod, PatchMatchMethod
from inpaintkit.model.attention import ContextualAttention
from inpaintkit.model.visualize import flow_legend
from inpaintkit.serve.folder import FolderError, ImageFolder
from inpaintkit.serve.guard import LOOPBACK_HOSTS, LocalOnly
from inpaintkit.serve.jobs import DEFAULT_MAX_QUEUED, FillQueue, Job, QueueFull
from inpaintkit.serve.store import ImageStore, StoredImage

#: The page, its JS modules and its CSS: package data, no build step, no CDN.
STATIC = Path(__file__).parent / "static"

#: Largest upload accepted, in bytes (a 100-megapixel PNG is about this size).
DEFAULT_MAX_UPLOAD = 256 * 1024**2

#: Same-size fills run together on CUDA (one batch costs little more than one image there);
#: on CPU one at a time, where batching measured slower (docs/benchmarks.md).
CUDA_BATCH = 8

# The page loads only its own files; it may not be framed by another site.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_IMMUTABLE = {"Cache-Control": "private, max-age=86400, immutable"}


class ApiError(Exception):
    """A request that cannot be served: HTTP ``status`` and a one-line message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ServeState:
    """What the routes share: the model(s), the fill queue, the images, the folder."""

    methods: dict[str, InpaintMethod]
    unavailable: dict[str, str]  # method name -> why it cannot be used
    labels: dict[str, str]  # every method, available or not, in the page's order -> its label
    queue: FillQueue
    store: ImageStore
    folder: ImageFolder | None
    max_upload_bytes: int
    max_pixels: int
    device: torch.device
    attention_patch: int | None  # side of an attended patch, in working-resolution pixels
    budget: ServeBudget
    gate: DecodeGate
    hd_strategy: str = DEFAULT_STRATEGY  # a fill's HD strategy when its request names none


@dataclass(frozen=True)
class ServeBudget:
    """One memory cap for the whole server, shared out (bytes; docs/serve.md, "Memory").

    ``total`` is the budget (``--memory-budget``, default :func:`inpaintkit.memory.default_budget`):
    half holds the images and results (:class:`ImageStore`), an eighth the fills waiting and
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


def build_methods(
    checkpoint: str | os.PathLike | None, device: str | torch.device
) -> tuple[dict[str, InpaintMethod], dict[str, str]]:
    """``(methods by name, why the others are unavailable)``: DeepFill and PatchMatch.

    A ``checkpoint`` that cannot be loaded is an error (:class:`CheckpointError`); with
    ``checkpoint=None`` a copy of inpaintkit without its default model serves PatchMatch only.
    """
    methods: dict[str, InpaintMethod] = {}
    unavailable: dict[str, str] = {}
    try:
        methods["deepfill"] = DeepFillMethod(checkpoint, device=device)
    except CheckpointError as err:
        if checkpoint is not None:
            raise
        unavailable["deepfill"] = str(err)
    methods["patchmatch"] = PatchMatchMethod(device=device)
    return methods, unavailable


def attention_patch(method: InpaintMethod) -> int | None:
    """Side, in image pixels, of the background patch one attention offset points at."""
    generator = getattr(method, "generator", None)
    layers = (
        []
        if generator is None
        else [m for m in generator.modules() if isinstance(m, ContextualAttention)]
    )
    if not layers:
        return None
    return layers[0].patch_size * layers[0].rate * FEATURE_STRIDE


# --------------------------------------------------------------------------- helpers


def _state(request: Request) -> ServeState:
    return request.app.state.serve


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes before it is all read."""
    too_large = ApiError(413, f"upload too large: the limit is {limit / 1024**2:.0f} MB")
    length = request.headers.get("content-length")
    if length is not None and parse_number("Content-Length", length, 0, 1 << 62) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    if size == 0:
        raise ApiError(400, "empty upload")
    return b"".join(chunks)


def _png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array, fast (zlib level 1: the bytes only travel to localhost)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _header_pixels(data: bytes, what: str, max_pixels: int) -> int:
    """Pixels a file's header announces (nothing decoded); 400 for what is no image or too large."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        # Decoding gives the one-line reason (io.open_image); the header alone gives none.
        height = width = 0
        if isinstance(err, Image.DecompressionBombError):
            raise ApiError(400, f"{what}: refused as a decompression bomb: {err}") from None
    if width * height > max_pixels:
        raise ApiError(
            400,
            f"{what}: {width}x{height} image exceeds the {max_pixels}-pixel limit "
            "(possible decompression bomb)",
        )
    return width * height


def _decode_image(data: bytes, name: str, max_pixels: int, gate: DecodeGate) -> np.ndarray:
    pixels = _header_pixels(data, name, max_pixels)
    with gate.hold(DECODE_BYTES_PER_PIXEL * pixels, f"{name}"):
        try:
            return to_rgb8(open_image(io.BytesIO(data), max_pixels))
        except ImageReadError as err:
            raise ApiError(400, f"{name}: {err}") from None


def _decode_mask(
    data: bytes, size: tuple[int, int] | None, max_pixels: int, gate: DecodeGate
) -> np.ndarray:
    """bool ``(H, W)`` from a mask file's bytes (white = hole), checked against ``size``."""
    pixels = _header_pixels(data, "mask", max_pixels)
    try:
        with gate.hold(DECODE_BYTES_PER_PIXEL * pixels, "the mask"):
            hole = read_mask(io.BytesIO(data), max_pixels=max_pixels)
    except ImageReadError as err:
        raise ApiError(400, f"mask: {err}") from None
    if size is not None and hole.shape != size:
        raise ApiError(
            400, f"the mask is {hole.shape[1]}x{hole.shape[0]} but the image is {size[1]}x{size[0]}"
        )
    return hole


def _display_name(name: str | None) -> str:
    """A file name the page may show, log and download under: no folders, no control or
    format characters (NUL, newlines, terminal escapes, bidirectional overrides), bounded."""
    printable = "".join(c for c in (name or "") if not unicodedata.category(c).startswith("C"))
    base = PurePosixPath(printable.replace("\\", "/")).name.strip()
    return base[:200] or "image.png"


def _stored(state: ServeState, key: str | None) -> StoredImage:
    image = state.store.get(key or "")
    if image is None:
        raise ApiError(404, "this image is no longer held by the server; open it again")
    return image


def _image_json(state: ServeState, key: str, image: StoredImage) -> dict:
    height, width = image.pixels.shape[:2]
    out: dict = {"id": key, "name": image.name, "width": width, "height": height, "attention": None}
    if image.attention is not None:
        grid = image.attention.offsets.shape[1:]
        work = image.attention.work_hole.shape
        out["attention"] = {"grid": list(grid), "work": list(work), "patch": state.attention_patch}
    return out


def _job_json(state: ServeState, job: Job) -> dict:
    out = {
        "id": job.id,
        "state": job.state,
        "method": job.method,
        "ahead": state.queue.ahead(job),
        "elapsed": 0.0
        if job.started is None
        else ((job.finished or time.monotonic()) - job.started),
        "estimate": job.estimate,
        "estimate_basis": job.estimate_basis,
        "error": job.error,
        "result": None,
    }
    if job.result is not None:
        image = state.store.get(job.result)
        if image is None:
            out.update(
                state="failed", error="the result is no longer held by the server; fill again"
            )
        else:
            out["result"] = _image_json(state, job.result, image)
    return out


#: Whole numbers and decimals as requests may spell them: ASCII digits only. Python's int()
#: and float() also take Unicode digits ('١٢٣'), '1_000', spaces, 'nan' and 'inf', and
#: str.isdigit() passes superscripts ('¹²³') that int() then refuses.
_WHOLE = re.compile(r"[0-9]{1,15}")
_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")


def parse_number(
    name: str, value: str, low: float, high: float, fraction: bool = False
) -> int | float:
    """The one parser of every number a request carries (query values, Content-Length).

    ``value`` must be ASCII digits (with ``fraction``, optionally a decimal point and more
    digits) and lie in ``[low, high]``; anything else is an :class:`ApiError` 400 naming
    ``name``, the range and the value, never a 500.
    """
    pattern, kind = (_DECIMAL, "number") if fraction else (_WHOLE, "whole number")
    if pattern.fullmatch(value) is None or not low <= (number := float(value)) <= high:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ApiError(400, f"{name} must be a {kind} from {low:g} to {high:g}, got {shown!r}")
    return number if fraction else int(value)


def _query_number(
    request: Request, name: str, low: float, high: float, fraction: bool = False
) -> int | float | None:
    """Query value ``name`` through :func:`parse_number`; None when absent or empty."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ApiError(400, f"{name} is given {len(values)} times; give it once")
    if not values or values[0] == "":
        return None
    return parse_number(name, values[0], low, high, fraction)


def _folder(state: ServeState) -> ImageFolder:
    if state.folder is None:
        raise ApiError(404, "not in folder mode: start `inpaintkit serve FOLDER`")
    return state.folder


# --------------------------------------------------------------------------- routes


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)


async def info(request: Request) -> Response:
    state = _state(request)
    methods = [
        {
            "name": name,
            "label": label,
            "available": name in state.methods,
            "reason": state.unavailable.get(name),
        }
        for name, label in state.labels.items()
    ]
    return JSONResponse({
        "version": __version__,
        "device": str(state.device),
        "methods": methods,
        "folder": None if state.folder is None else state.folder.root.name,
        "max_upload_bytes": state.max_upload_bytes,
        "max_pixels": state.max_pixels,
        "memory_budget": state.budget.total,
        # The fill request's hd_strategy: the choices, and the one used when it names none.
        "hd_strategies": list(STRATEGIES),
        "hd_strategy": state.hd_strategy,
    })  # fmt: skip


async def upload(request: Request) -> Response:
    state = _state(request)
    name = _display_name(request.query_params.get("name"))
    data = await _read_body(request, state.max_upload_bytes)
    pixels = await run_in_threadpool(_decode_image, data, name, state.max_pixels, state.gate)
    image = StoredImage(pixels, name)
    return JSONResponse(_image_json(state, state.store.add(image), image), status_code=201)


async def image_png(request: Request) -> Response:
    image = _stored(_state(request), request.path_params["key"])
    return Response(
        await run_in_threadpool(_png, image.pixels), media_type="image/png", headers=_IMMUTABLE
    )


async def attention_png(request: Request) -> Response:
    image = _stored(_state(request), request.path_params["key"])
    if image.attention is None:
        raise ApiError(
            404, "this image has no attention map (only DeepFill results with attention have one)"
        )
    a = image.attention
    flow, overlay = await run_in_threadpool(
        attention_pictures, a.work_filled, a.offsets, a.work_hole
    )
    # Over the page's image the flow colours cover the hole only (transparent elsewhere).
    picture = (
        np.dstack([flow, a.work_hole * np.uint8(255)])
        if request.url.path.endswith("/flow.png")
        else overlay
    )
    return Response(
        await run_in_threadpool(_png, picture), media_type="image/png", headers=_IMMUTABLE
    )


async def offsets(request: Request) -> Response:
    image = _stored(_state(request), request.path_params["key"])
    if image.attention is None:
        raise ApiError(404, "this image has no attention offsets")
    data = image.attention.offsets.astype("<i2").tobytes()
    return Response(data, media_type="application/octet-stream", headers=_IMMUTABLE)


async def colorwheel(request: Request) -> Response:
    size = _query_number(request, "size", 16, 512) or 128
    return Response(_png(flow_legend(size)), media_type="image/png", headers=_IMMUTABLE)


async def fill(request: Request) -> Response:
    state = _state(request)
    key = request.query_params.get("image")
    image = _stored(state, key)
    method = request.query_params.get("method") or next(iter(state.methods))
    if method in state.unavailable:
        raise ApiError(400, state.unavailable[method])
    if method not in state.methods:
        raise ApiError(400, f"unknown method {method!r}; choose from {', '.join(state.methods)}")
    max_size = _query_number(request, "max_size", 8, 1 << 20)
    # A working size asked for without a strategy is resize's, whatever the server's default.
    hd_strategy = request.query_params.get("hd_strategy") or (
        "resize" if max_size is not None else state.hd_strategy
    )
    try:
        resize_limit(hd_strategy, max_size)
    except StrategyError as err:
        raise ApiError(400, str(err).replace("--max-size", "max_size")) from None
    data = await _read_body(request, state.max_upload_bytes)
    size = image.pixels.shape[:2]
    try:
        # The mask is not read yet: the largest working size the strategy may use.
        check_fill(size, work_bound(size, hd_strategy, max_size), method, state.budget.fill,
                   size_option="max_size", budget_option="serve --memory-budget",
                   device=str(state.device))  # fmt: skip
    except MemoryBudgetError as err:
        raise ApiError(413, str(err)) from None
    hole = await run_in_threadpool(_decode_mask, data, size, state.max_pixels, state.gate)
    if not hole.any():
        raise ApiError(400, "the mask is empty: paint over what should be filled")
    try:
        job = await run_in_threadpool(
            state.queue.submit, method, image.pixels, hole, image.name, max_size, hd_strategy
        )
    except QueueFull as err:
        raise ApiError(503, str(err)) from None
    return JSONResponse(_job_json(state, job), status_code=202)


async def job_state(request: Request) -> Response:
    state = _state(request)
    job = state.queue.get(request.path_params["job"])
    if job is None:
        raise ApiError(404, "no such fill (the server forgets old ones): fill again")
    seconds = _query_number(request, "wait", 0, 30, fraction=True) or 0
    if seconds > 0:
        await state.queue.wait(job, seconds)
    return JSONResponse(_job_json(state, job))


async def folder_list(request: Request) -> Response:
    folder = _folder(_state(request))
    items = await run_in_threadpool(folder.items)
    return JSONResponse({"name": folder.root.name, "items": [asdict(item) for item in items]})


async def folder_open(request: Request) -> Response:
    state = _state(request)
    folder, path = _folder(state), request.query_params.get("path", "")
    height, width = await run_in_threadpool(folder.image_size, path)
    with state.gate.hold(DECODE_BYTES_PER_PIXEL * height * width, path):
        pixels = await run_in_threadpool(folder.read_image, path)
    image = StoredImage(pixels, _display_name(path))
    return JSONResponse({**_image_json(state, state.store.add(image), image), "path": path})


async def folder_mask(request: Request) -> Response:
    state = _state(request)
    folder, path = _folder(state), request.query_params.get("path", "")
    if request.method == "PUT":
        size = await run_in_threadpool(folder.image_size, path)
        data = await _read_body(request, state.max_upload_bytes)
        hole = await run_in_threadpool(_decode_mask, data, size, state.max_pixels, state.gate)
        return JSONResponse({"saved": await run_in_threadpool(folder.save_mask, path, hole)})
    hole = await run_in_threadpool(folder.read_mask, path)
    if hole is None:
        raise ApiError(404, f"{path} has no mask yet")
    return Response(await run_in_threadpool(_png, hole.astype(np.uint8) * 255), media_type="image/png",
                    headers={"Cache-Control": "no-store"})  # fmt: skip


async def folder_thumb(request: Request) -> Response:
    folder = _folder(_state(request))
    data = await run_in_threadpool(folder.thumbnail, request.query_params.get("path", ""))
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


async def _api_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    status = getattr(exc, "status", 400)
    # 503 is "busy" (a full queue, decodes under way): a client may try again shortly.
    headers = {"Retry-After": "2"} if status == 503 else None
    return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def create_app(
    folder: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    hosts: Iterable[str] = LOOPBACK_HOSTS,
    port: int | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    batch_size: int | None = None,
    log: Callable[[str], None] | None = None,
    memory_budget: int | None = None,
    max_queued: int = DEFAULT_MAX_QUEUED,
    hd_strategy: str = DEFAULT_STRATEGY,
    calibrate: bool = False,
) -> Starlette:
    """The ``inpaintkit serve`` application (ASGI), with the model loaded.

    ``folder``: serve its images and let the page save their masks (folder mode).
    ``checkpoint``: a generator from ``inpaintkit train``; None uses the packaged default
    model, and without one only PatchMatch is offered (the page says why). ``hosts`` and
    ``port``: the names and port this server is reached by; requests naming anything else
    are refused (:class:`~inpaintkit.serve.guard.LocalOnly`). ``max_upload_bytes`` and
    ``max_pixels`` bound uploads. ``batch_size``: same-size fills run together (default:
    :data:`CUDA_BATCH` on CUDA, 1 on CPU). ``log`` receives one line per finished fill. ``memory_budget``: the
    bytes the server may hold beyond its model (default :func:`inpaintkit.memory.default_budget`),
    shared out by :class:`ServeBudget`; ``max_queued`` fills may wait, more get a 503.
    ``hd_strategy``: a fill's HD strategy when its request names none (:mod:`inpaintkit.hd_strategy`).
    ``calibrate``: time a 128² and a 512² fill per method as the server starts, the first estimates' basis
    (:mod:`inpaintkit.serve.estimate`).
    """
    check_strategy(hd_strategy)
    resolved = resolve_device(device)
    methods, unavailable = build_methods(checkpoint, resolved)
    budget = ServeBudget(memory_budget or default_budget())
    store = ImageStore(max_bytes=budget.store)
    model = "default model" if checkpoint is None else Path(checkpoint).name
    batch = batch_size or (CUDA_BATCH if resolved.type == "cuda" else 1)
    state = ServeState(
        methods=methods,
        unavailable=unavailable,
        labels={"deepfill": f"DeepFill ({model})", "patchmatch": "PatchMatch"},
        queue=FillQueue(
            methods,
            store,
            batch_size=batch,
            log=log,
            max_queued=max_queued,
            max_bytes=budget.queue,
            calibrate=calibrate,
        ),
        store=store,
        folder=None if folder is None else ImageFolder(folder, max_pixels),
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        device=resolved,
        attention_patch=attention_patch(methods["deepfill"]) if "deepfill" in methods else None,
        budget=budget,
        gate=DecodeGate(budget.decode),
        hd_strategy=hd_strategy,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # After Ctrl-C (`inpaintkit serve` closed the queue already) the fill under way is
        # left behind, so that the command stops at once; otherwise it gets 5 s to finish.
        state.queue.close(timeout=0 if state.queue.closed else 5.0)

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/images", upload, methods=["POST"]),
        Route("/api/images/{key}/image.png", image_png),
        Route("/api/images/{key}/flow.png", attention_png),
        Route("/api/images/{key}/overlay.png", attention_png),
        Route("/api/images/{key}/offsets", offsets),
        Route("/api/colorwheel.png", colorwheel),
        Route("/api/fill", fill, methods=["POST"]),
        Route("/api/jobs/{job}", job_state),
        Route("/api/folder", folder_list),
        Route("/api/folder/open", folder_open, methods=["POST"]),
        Route("/api/folder/mask", folder_mask, methods=["GET", "PUT"]),
        Route("/api/folder/thumb", folder_thumb),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(LocalOnly, hosts=hosts, port=port)],
        exception_handlers={
            ApiError: _api_error,
            FolderError: _api_error,
            HTTPException: _api_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.serve = state
    return app
