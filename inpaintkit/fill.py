"""Fill the holes of image files: pairing with mask files, batching, resumable output.

The workflow behind ``inpaintkit fill``. :func:`~inpaintkit.fill_plan.pair_files` pairs each image with its mask
(``photos/sub/a.jpg`` ↔ ``masks/sub/a.png`` or ``masks/sub/a_mask.png``, the convention of
LaMa and IOPaint; :mod:`inpaintkit.pairing`), :func:`fill_files` decodes them in background threads, groups same-size
images into batches for the inpainting method (:mod:`inpaintkit.methods`), and encodes and
writes the results in background threads through :func:`inpaintkit.io.atomic_write`.

File-side guarantees: the output has the input's mode (L, LA, RGB, RGBA; palette becomes RGB,
or RGBA when it has a transparent colour,
16-bit and float grey become 8-bit L, other modes RGB), alpha is copied as is, EXIF orientation is
applied (outputs are stored upright without EXIF), and every known pixel is copied bit-exactly
(lossless formats keep it so on disk). A bad file is reported in one line and the run goes on.

This module runs the fill; the options, jobs and summary are :mod:`inpaintkit.fill_options`,
the pairing and planning :mod:`inpaintkit.fill_plan`, the decoding and encoding of files
:mod:`inpaintkit.fill_images`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from typing import TypeVar

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from inpaintkit.distributed import Distributed
from inpaintkit.fill_images import DecodedImage, FileError, decode_job, encode_fill, header_size
from inpaintkit.fill_options import FillError, FillJob, FillOptions, FillSummary
from inpaintkit.fill_plan import FillPlan, plan_fill
from inpaintkit.hd_strategy import BoxAttention, fill_method_crops, work_bound
from inpaintkit.memory import MemoryBudgetError, check_fill, default_budget
from inpaintkit.methods import AttentionMethod, InpaintMethod
from inpaintkit.sharding import all_gather_json
from inpaintkit.tensors import image_to_tensor, mask_to_tensor, tensor_to_image

# --------------------------------------------------------------------------- the run

T = TypeVar("T")
R = TypeVar("R")


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], depth: int
) -> Iterator[Future[R]]:
    """Submit ``fn(item)`` ahead of the consumer, at most ``depth`` in flight, yield in order.

    The bound keeps memory flat: decoding runs ahead of the network by ``depth`` files only.
    """
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


def fill_arrays(
    method: InpaintMethod,
    pixels: Sequence[np.ndarray],
    holes: Sequence[np.ndarray],
    offsets: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inpaint same-size images with ``method`` as one batch, from arrays to arrays.

    ``pixels``: uint8 ``(H, W, 3)`` each; ``holes``: bool ``(H, W)``, True = hole. Returns
    uint8 ``(N, H, W, 3)`` and, with ``offsets`` (an :class:`AttentionMethod` only), the
    attention offsets ``(N, 2, h, w)`` as a numpy array, else ``None``.
    """
    images = image_to_tensor(np.stack(pixels))
    masks = mask_to_tensor(np.stack(holes))
    if offsets:
        if not isinstance(method, AttentionMethod):
            raise TypeError(f"{type(method).__name__} computes no attention offsets")
        filled, flows = method.fill_with_offsets(images, masks)
    else:
        filled, flows = method(images, masks), None
    return tensor_to_image(filled), None if flows is None else flows.cpu().numpy()


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


class FillPipeline:
    """One running fill: decode threads ahead of the method, encode threads behind it, a progress bar.

    :meth:`run` takes a :class:`FillPlan` and returns the :class:`FillSummary`. Images go
    through in the plan's order: decoded up to ``depth`` files ahead, batched by working size
    (up to ``options.batch_size``), inpainted, and written in the background.
    """

    def __init__(
        self,
        method: InpaintMethod,
        options: FillOptions,
        console: Console,
        progress: bool,
        total: int,
    ) -> None:
        self.method = method
        # The method's attention offsets, when pictures of them are asked for.
        self.attention = (
            method
            if options.attention_dir is not None and isinstance(method, AttentionMethod)
            else None
        )
        self.options = options
        self.summary = FillSummary()
        self.depth = options.batch_size + 2 * options.workers
        try:
            self.budget = options.memory_budget or default_budget()
        except MemoryBudgetError as err:
            raise FillError(str(err)) from None
        self.reader = ThreadPoolExecutor(options.workers, "decode")
        self.writer = ThreadPoolExecutor(options.workers, "encode")
        self.writes: deque[tuple[FillJob, Future[None]]] = deque()  # submitted, not yet counted
        self.submitted: list[Future[None]] = []  # every write, for the exact count on Ctrl-C
        self.bar = Progress(
            TextColumn("filling"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not progress or not console.is_terminal,  # no bar in logs
            transient=True,
        )
        self.task = self.bar.add_task("fill", total=total)

    def run(self, plan: FillPlan) -> FillSummary:
        """Report the plan's failures and skips, fill its work; stop cleanly on KeyboardInterrupt."""
        self.summary.total = len(plan)
        for job, reason in plan.failed:
            self.fail(job, reason)
        for _ in plan.skipped:
            self.summary.skipped += 1
            self.bar.advance(self.task)
        with self.bar, self.reader, self.writer:
            try:
                self._fill(plan.todo)
            except BaseException as err:
                interrupted = isinstance(err, KeyboardInterrupt)
                self._shut_down(interrupted)
                if not interrupted:
                    raise
        return self.summary

    def fail(self, job: FillJob, reason: str) -> None:
        """Count ``job`` as failed and say why in one line."""
        self.summary.failures.append((str(job.image), one_line(reason)))
        self.bar.console.print(
            f"error: {job.image}: {one_line(reason)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        self.bar.advance(self.task)

    def _fill(self, todo: list[FillJob]) -> None:
        """Decode ahead, batch same-size images, inpaint, write behind; wait for the last write."""
        batch: list[DecodedImage] = []
        for future in _ordered_map(self.reader, self._decode, todo, self.depth):
            decoded = future.result()
            if isinstance(decoded, tuple):
                self.fail(*decoded)
                continue
            if decoded.plan.strategy == "crop":  # boxes of their own sizes: never batched
                self._inpaint_crops(decoded)
                continue
            if batch and decoded.work_pixels.shape != batch[0].work_pixels.shape:
                self._inpaint(batch)
                batch = []
            batch.append(decoded)
            if len(batch) == self.options.batch_size:
                self._inpaint(batch)
                batch = []
        if batch:
            self._inpaint(batch)
        self._collect(0)

    def _decode(self, job: FillJob) -> DecodedImage | tuple[FillJob, str]:
        """Runs in a decode thread: the decoded image, or ``(job, one-line reason)``."""
        try:
            # Refused from the header, before any pixel is decoded (inpaintkit.memory).
            if (size := header_size(job.image)) is not None:
                # The mask is not read yet: the largest working size its strategy may use.
                work = work_bound(size, self.options.hd_strategy, self.options.max_size)
                device = str(getattr(self.method, "device", "cpu"))
                check_fill(size, work, self.method.name, self.budget, device=device)
            return decode_job(job, self.options)
        except (FileError, MemoryBudgetError) as err:
            return job, str(err)
        except (OSError, ValueError) as err:  # e.g. an image mode Pillow cannot convert
            return job, f"cannot read ({type(err).__name__}: {err})"

    def _inpaint(self, batch: list[DecodedImage]) -> None:
        """Inpaint one same-size batch and hand each result to an encode thread."""
        try:
            pictures, flows = fill_arrays(
                self.method,
                [d.work_pixels for d in batch],
                [d.work_hole for d in batch],
                offsets=self.attention is not None,
            )
        except Exception as err:  # noqa: BLE001 - one bad image must not stop the run
            if len(batch) > 1:
                # Retry one by one so only the image that caused it (e.g. an all-hole mask
                # PatchMatch cannot fill) fails.
                for d in batch:
                    self._inpaint([d])
            else:
                self.fail(batch[0].job, f"inpainting failed: {type(err).__name__}: {err}")
            return
        if flows is None:
            flows = [None] * len(batch)
        for d, picture, flow in zip(batch, pictures, flows, strict=True):
            self._write(d, picture, flow)
        self._collect(self.depth)

    def _inpaint_crops(self, decoded: DecodedImage) -> None:
        """Fill one image box by box (``crop``) and hand it to an encode thread."""
        try:
            filled, attention = fill_method_crops(
                self.method,
                decoded.pixels,
                decoded.hole,
                decoded.plan.boxes,
                attention=self.attention is not None,
                sides=decoded.plan.sides,
            )
        except Exception as err:  # noqa: BLE001 - one bad image must not stop the run
            self.fail(decoded.job, f"inpainting failed: {type(err).__name__}: {err}")
            return
        self._write(decoded, filled, None, attention)
        self._collect(self.depth)

    def _write(
        self,
        decoded: DecodedImage,
        filled: np.ndarray,
        offsets: np.ndarray | None,
        box: BoxAttention | None = None,
    ) -> None:
        """Hand one result to an encode thread (:func:`encode_fill`) and keep its future."""
        future = self.writer.submit(
            encode_fill, decoded, filled, offsets, self.options.attention_dir, box
        )
        self.submitted.append(future)
        self.writes.append((decoded.job, future))

    def _collect(self, limit: int) -> None:
        """Count finished writes, oldest first, until at most ``limit`` are outstanding."""
        while len(self.writes) > limit:
            job, future = self.writes.popleft()
            try:
                future.result()
            except FileError as err:
                self.fail(job, str(err))
            except KeyboardInterrupt:
                self.writes.appendleft((job, future))  # not counted yet: _shut_down does
                raise
            else:
                self.summary.filled += 1
                self.bar.advance(self.task)

    def _shut_down(self, interrupted: bool) -> None:
        """Stop the threads after an exception; on Ctrl-C finish and count the writes under way."""
        self.reader.shutdown(wait=False, cancel_futures=True)
        # On Ctrl-C the images already inpainted are still written: that work is done.
        self.writer.shutdown(wait=True, cancel_futures=not interrupted)
        if not interrupted:
            return
        self.summary.interrupted = True
        for job, future in self.writes:
            if isinstance(future.exception(), FileError):
                self.summary.failures.append((str(job.image), one_line(str(future.exception()))))
        # Counted from every write rather than the running tally: a Ctrl-C that lands between
        # a write's end and its tally in _collect must not leave a written image uncounted.
        self.summary.filled = sum(
            1 for f in self.submitted if not f.cancelled() and f.exception() is None
        )


def fill_files(
    jobs: list[FillJob],
    method: InpaintMethod,
    options: FillOptions | None = None,
    console: Console | None = None,
    progress: bool = True,
    ranks: Distributed | None = None,
) -> FillSummary:
    """Fill every job with ``method``; report each bad file in one line and carry on.

    Same-size images (at the working resolution) are batched, up to ``options.batch_size``;
    decoding runs ``options.workers`` threads ahead of the method and encoding runs behind it.
    Existing outputs are skipped unless ``options.overwrite``. Returns the counts. A
    KeyboardInterrupt (SIGINT, Ctrl-C) stops the run: the images already inpainted are still
    written (each output atomically), then the summary comes back with ``interrupted=True``;
    a re-run skips what was done. ``options.attention_dir`` needs an :class:`AttentionMethod`.

    ``ranks``: this process's place in a torchrun job, which every rank calls with the same
    ``jobs``. Each rank fills its interleaved share of the plan (:meth:`FillPlan.part`) and
    every rank gets back the whole job's summary (a collective at the end).
    """
    options = options or FillOptions()
    if options.attention_dir is not None and not isinstance(method, AttentionMethod):
        raise FillError(
            f"--attention needs --method deepfill (the {method.name} method has no attention)"
        )
    ranks = ranks or Distributed()
    plan = plan_fill(jobs, options)
    if ranks.world > 1:
        # No rank writes before every rank has planned: an output written meanwhile would be
        # skipped by a slower rank's plan, and the ranks' interleaves would no longer agree.
        ranks.barrier()
        plan = plan.part(ranks.rank, ranks.world)
    pipeline = FillPipeline(
        method, options, console or Console(stderr=True), progress, total=len(plan)
    )
    summary = pipeline.run(plan)
    if ranks.world == 1:
        return summary
    # Interrupted ranks take part too, so that no rank waits for one that left.
    return FillSummary.combine(all_gather_json(ranks, asdict(summary)))
