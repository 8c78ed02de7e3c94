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

The handlers and what they share are :mod:`inpaintkit.serve.routes`; uploads are read and
decoded by :mod:`inpaintkit.serve.uploads`, numbers and names checked by
:mod:`inpaintkit.serve.params`, the memory budget shared out by :mod:`inpaintkit.serve.budget`,
and errors answered by :mod:`inpaintkit.serve.errors`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import torch
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from inpaintkit.checkpoint import CheckpointError
from inpaintkit.devices import resolve_device
from inpaintkit.hd_strategy import DEFAULT_STRATEGY, check_strategy
from inpaintkit.inpaint import FEATURE_STRIDE
from inpaintkit.io import DEFAULT_MAX_PIXELS
from inpaintkit.memory import default_budget
from inpaintkit.methods import DeepFillMethod, InpaintMethod, PatchMatchMethod
from inpaintkit.model.attention import ContextualAttention
from inpaintkit.serve.budget import DecodeGate, ServeBudget
from inpaintkit.serve.errors import ApiError, api_error, internal_error
from inpaintkit.serve.folder import FolderError, ImageFolder
from inpaintkit.serve.guard import LOOPBACK_HOSTS, LocalOnly
from inpaintkit.serve.jobs import DEFAULT_MAX_QUEUED, FillQueue
from inpaintkit.serve.routes import (
    STATIC,
    ServeState,
    attention_png,
    colorwheel,
    fill,
    folder_list,
    folder_mask,
    folder_open,
    folder_thumb,
    image_png,
    info,
    job_state,
    offsets,
    page,
    upload,
)
from inpaintkit.serve.store import ImageStore
from inpaintkit.serve.uploads import DEFAULT_MAX_UPLOAD

#: Same-size fills run together on CUDA (one batch costs little more than one image there);
#: on CPU one at a time, where batching measured slower (docs/benchmarks.md).
CUDA_BATCH = 8


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
            ApiError: api_error,
            FolderError: api_error,
            HTTPException: api_error,
            Exception: internal_error,
        },
        lifespan=lifespan,
    )
    app.state.serve = state
    return app
