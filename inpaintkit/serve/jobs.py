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

from inpaintkit.fill import fill_arrays, one_line, paste_fill, to_working
from inpaintkit.methods import InpaintMethod
from inpaintkit.serve.store import Attention, ImageStore, StoredImage

#: Job states; the last two are final.
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

#: Finished jobs remembered for the page to collect (the oldest are forgotten first).
KEEP_FINISHED = 64


@dataclass(eq=False)
class Job:
    """One fill: the image at full and at working resolution, its hole, and what became of it."""

    id: str
    method: str
    name: str  # the image's name, for the result and the log
    pixels: np.ndarray  # uint8 (H, W, 3)
    hole: np.ndarray  # bool (H, W), True = hole
    work_pixels: np.ndarray  # uint8 (h, w, 3): what the method sees
    work_hole: np.ndarray  # bool (h, w)
    state: str = QUEUED
    error: str | None = None  # one line, when FAILED
    result: str | None = None  # the result's id in the ImageStore, when DONE
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    estimate: float | None = (
        None  # seconds the run should take, from the last fill (set when it starts)
    )
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
    ``log`` receives one line per finished job.
    """

    def __init__(
        self,
        methods: dict[str, InpaintMethod],
        store: ImageStore,
        batch_size: int = 1,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.methods = methods
        self.store = store
        self.batch_size = batch_size
        self.log = log
        self._queue: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._seconds_per_pixel: dict[str, float] = {}
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
    ) -> Job:
        """Queue a fill of ``pixels`` where ``hole``; ``max_size`` as ``fill --max-size``."""
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(self.methods)}")
        work_pixels, work_hole = to_working(pixels, hole, max_size)
        with self._cond:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            job = Job(f"{next(self._ids)}", method, name, pixels, hole, work_pixels, work_hole)
            self._queue.append(job)
            self._jobs[job.id] = job
            self._cond.notify_all()
        return job

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

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop taking jobs; fail the queued ones; wait for the running one up to ``timeout`` s."""
        with self._cond:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in queued:
            self._set(job, FAILED, error="the server is shutting down")
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the worker's side

    def _set(self, job: Job, state: str, **changes: object) -> None:
        with self._cond:
            job.state = state
            for key, value in changes.items():
                setattr(job, key, value)
            if job.final:
                job.finished = time.monotonic()
                finished = [j for j in self._jobs.values() if j.final]
                for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                    del self._jobs[old.id]
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
                if job.method == first.method and job.work_pixels.shape == first.work_pixels.shape:
                    self._queue.remove(job)
                    batch.append(job)
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            rate = self._seconds_per_pixel.get(batch[0].method)
            estimate = None if rate is None else rate * sum(j.work_hole.size for j in batch)
            for job in batch:
                self._set(job, RUNNING, started=time.monotonic(), estimate=estimate)
            self._run(batch)

    def _run(self, batch: list[Job]) -> None:
        method = self.methods[batch[0].method]
        wants_offsets = hasattr(method, "fill_with_offsets")
        start = time.perf_counter()
        try:
            pictures, flows = fill_arrays(
                method, [j.work_pixels for j in batch], [j.work_hole for j in batch], wants_offsets
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
        self._seconds_per_pixel[batch[0].method] = seconds / sum(j.work_hole.size for j in batch)
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
            height, width = job.hole.shape
            self.log(
                f"filled {job.name} ({job.method}, {width}x{height}) in {seconds:.2f} s"
                if error is None
                else f"error: {job.name}: {error}"
            )
