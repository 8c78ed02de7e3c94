"""The routes of ``inpaintkit serve``: one handler per URL, and the JSON and PNG they answer with.

The URLs are listed in :mod:`inpaintkit.serve.app`, which builds the application around these
handlers. A handler only parses, checks and waits: decoding and encoding run in the thread
pool, fills on the queue's worker thread. What the handlers share (methods, queue, store,
folder, limits) is :class:`ServeState`, made once by :func:`~inpaintkit.serve.app.create_app`.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from inpaintkit import __version__
from inpaintkit.fill_images import attention_pictures
from inpaintkit.hd_strategy import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    StrategyError,
    resize_limit,
    work_bound,
)
from inpaintkit.memory import DECODE_BYTES_PER_PIXEL, MemoryBudgetError, check_fill
from inpaintkit.methods import InpaintMethod
from inpaintkit.model.visualize import flow_legend
from inpaintkit.serve.budget import DecodeGate, ServeBudget
from inpaintkit.serve.errors import ApiError
from inpaintkit.serve.folder import ImageFolder
from inpaintkit.serve.jobs import FillQueue, Job, QueueFull
from inpaintkit.serve.params import display_name, query_number
from inpaintkit.serve.store import ImageStore, StoredImage
from inpaintkit.serve.uploads import decode_image, decode_mask, read_body

#: The page, its JS modules and its CSS: package data, no build step, no CDN.
STATIC = Path(__file__).parent / "static"

# The page loads only its own files; it may not be framed by another site.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_IMMUTABLE = {"Cache-Control": "private, max-age=86400, immutable"}


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


# --------------------------------------------------------------------------- helpers


def _state(request: Request) -> ServeState:
    return request.app.state.serve


def _png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array, fast (zlib level 1: the bytes only travel to localhost)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


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
    name = display_name(request.query_params.get("name"))
    data = await read_body(request, state.max_upload_bytes)
    pixels = await run_in_threadpool(decode_image, data, name, state.max_pixels, state.gate)
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
    size = query_number(request, "size", 16, 512) or 128
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
    max_size = query_number(request, "max_size", 8, 1 << 20)
    # A working size asked for without a strategy is resize's, whatever the server's default.
    hd_strategy = request.query_params.get("hd_strategy") or (
        "resize" if max_size is not None else state.hd_strategy
    )
    try:
        resize_limit(hd_strategy, max_size)
    except StrategyError as err:
        raise ApiError(400, str(err).replace("--max-size", "max_size")) from None
    data = await read_body(request, state.max_upload_bytes)
    size = image.pixels.shape[:2]
    try:
        # The mask is not read yet: the largest working size the strategy may use.
        check_fill(size, work_bound(size, hd_strategy, max_size), method, state.budget.fill,
                   size_option="max_size", budget_option="serve --memory-budget",
                   device=str(state.device))  # fmt: skip
    except MemoryBudgetError as err:
        raise ApiError(413, str(err)) from None
    hole = await run_in_threadpool(decode_mask, data, size, state.max_pixels, state.gate)
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
    seconds = query_number(request, "wait", 0, 30, fraction=True) or 0
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
    image = StoredImage(pixels, display_name(path))
    return JSONResponse({**_image_json(state, state.store.add(image), image), "path": path})


async def folder_mask(request: Request) -> Response:
    state = _state(request)
    folder, path = _folder(state), request.query_params.get("path", "")
    if request.method == "PUT":
        size = await run_in_threadpool(folder.image_size, path)
        data = await read_body(request, state.max_upload_bytes)
        hole = await run_in_threadpool(decode_mask, data, size, state.max_pixels, state.gate)
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
