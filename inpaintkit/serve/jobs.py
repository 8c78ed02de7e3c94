"""The fill queue of ``inpaintkit serve``: one worker thread runs the fills, in order.

The page submits a fill and then asks for its state; meanwhile the server's event loop stays
free (it only ever waits on the queue, never computes). The worker takes the oldest job and
runs it alone, or, with ``batch_size > 1`` (the CUDA default, where a batch costs little more
than one image: docs/benchmarks.md, "fill throughput"), together with the queued jobs of the
same method and working size behind it. The inpainting itself is :func:`inpaintkit.fill.fill_arrays`,
the call ``inpaintkit fill`` makes, so the page and the command give the same pixels.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from inpaintkit.fill import fill_arrays, one_line
from inpaintkit.fill_images import paste_fill, to_working
from inpaintkit.hd_strategy import DEFAULT_STRATEGY, HDPlan, fill_method_crops, plan_image
from inpaintkit.methods import InpaintMethod
from inpaintkit.serve.estimate import FillTimes
from inpaintkit.serve.store import Attention, ImageStore, StoredImage

#: Job states; the last two are final.
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

#: Finished jobs remembered for the page to collect (the oldest are forgotten first). A finished
#: job keeps only its state and its result's id: its pixels are released when it ends.
KEEP_FINISHED = 64
#: Fills waiting at most (not counting the running ones); more are refused with QueueFull.
DEFAULT_MAX_QUEUED = 16


class QueueFull(RuntimeError):
    """The queue holds as many waiting fills (or bytes of them) as it may; try again later."""


@dataclass(eq=False)
class Job:
    """One fill: the image at full and at working resolution, its hole, and what became of it.

    The arrays are held while the job waits and runs, and set to None when it ends (a finished
    job only answers the page: its state and the id of its result in the store).
    """

    id: str
    method: str
    name: str  # the image's name, for the result and the log
    pixels: np.ndarray | None  # uint8 (H, W, 3)
    hole: np.ndarray | None  # bool (H, W), True = hole
    work_pixels: np.ndarray | None  # uint8 (h, w, 3): what the method sees
    work_hole: np.ndarray | None  # bool (h, w)
    size: tuple[int, int] = (0, 0)  # (H, W), kept after the arrays are released
    work_size: tuple[int, int] = (0, 0)  # (h, w)
    nbytes: int = 0  # bytes of the arrays only this job holds (its hole and working copies)
    # How it is filled (inpaintkit.hd_strategy); under crop the working arrays are the image's.
    plan: HDPlan = field(default_factory=lambda: HDPlan("original"))
    state: str = QUEUED
    error: str | None = None  # one line, when FAILED
    result: str | None = None  # the result's id in the ImageStore, when DONE
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    estimate: float | None = None  # seconds the run should take (set when it starts)
    estimate_basis: str | None = None  # what the estimate rests on, in words (FillTimes)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in (DONE, FAILED)


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class FillQueue:
    """Runs fills on a worker thread, one job (or one same-size batch) at a time.

    ``methods``: name -> inpainting method (:mod:`inpaintkit.methods`); those with
    ``fill_with_offsets`` also give the attention offsets. Results go into ``store``.
    ``log`` receives one line per finished job. ``calibrate``: before the first job, time
    a small and a 512² fill per method (:meth:`FillTimes.calibrate`), so that even the first
    fill shows an estimate (``inpaintkit serve`` does; tests need not).
    """

    def __init__(
        self,
        methods: dict[str, InpaintMethod],
        store: ImageStore,
        batch_size: int = 1,
        log: Callable[[str], None] | None = None,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_bytes: int | None = None,
        calibrate: bool = False,
    ) -> None:
        if batch_size < 1 or max_queued < 1:
            raise ValueError(
                f"batch_size and max_queued must be at least 1, got {batch_size}, {max_queued}"
            )
        self.methods = methods
        self.store = store
        self.batch_size = batch_size
        self.log = log
        self.max_queued = max_queued
        # Bytes the waiting and running jobs may hold of their own (None: no limit); one job
        # alone is always accepted, so that the limit never refuses every fill.
        self.max_bytes = max_bytes
        self._held = 0
        self._queue: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        # Measured seconds per working pixel, per method and strategy: the page's estimates.
        self.times = FillTimes()
        self._calibrate = calibrate
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="inpaintkit-fill", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the page's side

    def submit(
        self,
        method: str,
        pixels: np.ndarray,
        hole: np.ndarray,
        name: str,
        max_size: int | None = None,
        hd_strategy: str = DEFAULT_STRATEGY,
    ) -> Job:
        """Queue a fill of ``pixels`` where ``hole``; ``max_size`` and ``hd_strategy`` as
        ``fill --max-size`` and ``--hd-strategy`` (a StrategyError, a ValueError, when they
        do not go together).

        Raises :class:`QueueFull` when ``max_queued`` fills already wait, or when the bytes
        the waiting and running jobs hold would pass ``max_bytes``.
        """
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(self.methods)}")
        with self._cond:
            self._check_room(hole.nbytes)
        plan = plan_image(hd_strategy, hole, max_size)
        work_pixels, work_hole = (
            (pixels, hole) if plan.strategy == "crop" else to_working(pixels, hole, plan.limit)
        )
        nbytes = hole.nbytes
        if work_pixels is not pixels:
            nbytes += work_pixels.nbytes + work_hole.nbytes
        with self._cond:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            self._check_room(nbytes)
            job = Job(
                f"{next(self._ids)}",
                method,
                name,
                pixels,
                hole,
                work_pixels,
                work_hole,
                size=hole.shape,
                work_size=work_hole.shape,
                nbytes=nbytes,
                plan=plan,
            )
            self._held += nbytes
            self._queue.append(job)
            self._jobs[job.id] = job
            self._cond.notify_all()
        return job

    def _check_room(self, nbytes: int) -> None:
        """Raise QueueFull if one more job of ``nbytes`` does not fit (call holding the lock)."""
        if len(self._queue) >= self.max_queued:
            raise QueueFull(
                f"the server has {len(self._queue)} fills waiting, its limit; "
                "try again when one has finished"
            )
        if self.max_bytes is not None and self._held and self._held + nbytes > self.max_bytes:
            raise QueueFull(
                f"the fills under way hold {self._held / 1e6:.0f} MB and this one needs "
                f"{nbytes / 1e6:.0f} MB more, over the queue's {self.max_bytes / 1e6:.0f} MB; "
                "try again when one has finished"
            )

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def ahead(self, job: Job) -> int:
        """How many queued or running jobs will finish before ``job`` starts."""
        with self._cond:
            if job.state != QUEUED:
                return 0
            running = sum(1 for j in self._jobs.values() if j.state == RUNNING)
            return running + next((i for i, j in enumerate(self._queue) if j is job), 0)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: no more jobs are taken."""
        return self._closed

    def running(self) -> int:
        """How many jobs are being filled now."""
        with self._cond:
            return sum(1 for job in self._jobs.values() if job.state == RUNNING)

    async def wait(self, job: Job, timeout: float) -> None:
        """Return when ``job`` changes state (or is final already), or after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            if job.final:
                return
            job._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._cond, contextlib.suppress(ValueError):
                job._waiters.remove((loop, future))

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop taking jobs; fail the queued ones; answer every request waiting on a job now;
        wait for the running fill up to ``timeout`` s. Returns whether one still runs (a fill
        is one call into the method: it cannot be interrupted, only left behind)."""
        with self._cond:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
            running = [job for job in self._jobs.values() if job.state == RUNNING]
        for job in queued:
            self._set(job, FAILED, error="the server is shutting down")
        for job in running:  # their long polls return now, so the server can stop at once
            self._wake_waiters(job)
        self._thread.join(timeout)
        return self._thread.is_alive()

    # ------------------------------------------------------------------ the worker's side

    def _set(self, job: Job, state: str, **changes: object) -> None:
        with self._cond:
            job.state = state
            for key, value in changes.items():
                setattr(job, key, value)
            if job.final:
                job.finished = time.monotonic()
                # What the page still asks for is the state and the result's id: let go of
                # the pixels (the result lives in the store, under its own bound).
                job.pixels = job.hole = job.work_pixels = job.work_hole = None
                self._held -= job.nbytes
                job.nbytes = 0
                finished = [j for j in self._jobs.values() if j.final]
                for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                    del self._jobs[old.id]
        self._wake_waiters(job)

    def _wake_waiters(self, job: Job) -> None:
        """Answer the requests waiting on ``job`` (:meth:`wait`)."""
        with self._cond:
            waiters, job._waiters = job._waiters, []
        for loop, future in waiters:
            # The waiting request may be gone with its event loop (a closed test client).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    def _take(self) -> list[Job] | None:
        """The next job and, up to ``batch_size``, the queued ones it can be batched with."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            first = self._queue.popleft()
            batch = [first]
            for job in list(self._queue):
                if len(batch) == self.batch_size:
                    break
                if (
                    job.method == first.method
                    and job.work_size == first.work_size
                    and "crop" not in (job.plan.strategy, first.plan.strategy)  # own box sizes
                ):
                    self._queue.remove(job)
                    batch.append(job)
            return batch

    def _calibrate_methods(self) -> None:
        """Time each method's start-up fills before the first job (:meth:`FillTimes.calibrate`)."""
        for name, method in self.methods.items():
            if self._closed:
                return
            with contextlib.suppress(Exception):  # no start-up figure: the first fill gives one
                self.times.calibrate(name, lambda p, h, m=method: fill_arrays(m, [p], [h], False))

    def _work(self) -> None:
        if self._calibrate:
            self._calibrate_methods()
        while (batch := self._take()) is not None:
            first = batch[0]
            work_pixels = sum(j.plan.work_pixels(j.size) for j in batch)
            estimate = self.times.estimate(first.method, first.plan.strategy, work_pixels)
            seconds, basis = (
                (None, None) if estimate is None else (estimate.seconds, estimate.basis)
            )
            for job in batch:
                self._set(
                    job, RUNNING, started=time.monotonic(), estimate=seconds, estimate_basis=basis
                )
            self._run(batch)

    def _run(self, batch: list[Job]) -> None:
        method = self.methods[batch[0].method]
        wants_offsets = hasattr(method, "fill_with_offsets")
        start = time.perf_counter()
        try:
            if batch[0].plan.strategy == "crop":
                # The page draws attention over the whole image; a box's would not line up.
                job = batch[0]
                filled, _ = fill_method_crops(
                    method, job.pixels, job.hole, job.plan.boxes, sides=job.plan.sides
                )
                pictures, flows = [filled], None
            else:
                pictures, flows = fill_arrays(
                    method,
                    [j.work_pixels for j in batch],
                    [j.work_hole for j in batch],
                    wants_offsets,
                )
        except Exception as err:  # noqa: BLE001 - a failed fill is reported to the page, the server goes on
            if len(batch) > 1:  # only the culprit should fail
                for job in batch:
                    self._run([job])
                return
            self._finish(
                batch[0], error=f"inpainting failed: {type(err).__name__}: {one_line(str(err))}"
            )
            return
        seconds = time.perf_counter() - start
        self.times.record(
            batch[0].method,
            batch[0].plan.strategy,
            sum(j.plan.work_pixels(j.size) for j in batch),
            seconds,
        )
        for i, job in enumerate(batch):
            attention = None
            if flows is not None:
                attention = Attention(flows[i].astype(np.int16), pictures[i], job.work_hole)
            filled = paste_fill(job.pixels, job.hole, pictures[i])
            result = self.store.add(StoredImage(filled, job.name, attention))
            self._finish(job, result=result, seconds=seconds)

    def _finish(
        self, job: Job, result: str | None = None, error: str | None = None, seconds: float = 0.0
    ) -> None:
        if error is None:
            self._set(job, DONE, result=result)
        else:
            self._set(job, FAILED, error=error)
        if self.log is not None:
            height, width = job.size
            self.log(
                f"filled {job.name} ({job.method}, {width}x{height}) in {seconds:.2f} s"
                if error is None
                else f"error: {job.name}: {error}"
            )
