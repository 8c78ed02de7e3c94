"""How long a fill will take: this server's own measured seconds per working pixel.

The page shows the time a fill has run against an estimate. The estimate is measured here,
on this machine, with its current load: :class:`FillTimes` keeps the last fills of each
method and HD strategy (how many working pixels, how many seconds) and reads the new fill's
working pixels off them: interpolated between the measured sizes around it, beyond the
largest at that one's seconds per pixel, below the smallest along the line through the two
smallest. Not one rate for every size: the seconds per pixel are not constant. A fixed cost
per call weighs on small images (on 2 CPU cores DeepFill took ~65 µs per pixel at 256², ~36
at 512² and 1024²), PatchMatch's time grows with the hole as well as the image, and
``crop`` pays per box.

Before a method and strategy have their own fill, :meth:`FillTimes.calibrate` (run by the
fill worker when the server starts) has timed a fill of each :data:`CALIBRATION_SIDES`
square per method (a small one, where the fixed cost shows, and a 512² one), and those
stand in; without them the page shows no estimate. Every estimate says what it rests
on (:attr:`Estimate.basis`), and the page shows that too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Sides of the square images :meth:`FillTimes.calibrate` fills, each with a centred square
#: hole of a quarter of the side.
CALIBRATION_SIDES = (128, 512)
#: Fills remembered per method and strategy (the newest replace the oldest).
KEEP = 8


@dataclass(frozen=True)
class Measurement:
    """One fill: ``pixels`` working pixels in ``seconds``."""

    pixels: int
    seconds: float

    @property
    def seconds_per_pixel(self) -> float:
        return self.seconds / max(1, self.pixels)


@dataclass(frozen=True)
class Estimate:
    """``seconds`` a fill should take, and ``basis``: the measurement behind it, in words."""

    seconds: float
    basis: str


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.2f} MP" if pixels >= 10_000 else f"{pixels} pixels"


def calibration_image(side: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(side, side, 3)`` and bool ``(side, side)``: a smooth picture with texture and a
    centred square hole of ``side // 4`` (what PatchMatch searches matters to its time, so not
    a flat image)."""
    hole_side = side // 4
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:side, 0:side] / side
    base = np.stack([xs, ys, 0.5 + 0.5 * np.sin(6 * xs + 4 * ys)], axis=-1) * 200
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    hole = np.zeros((side, side), bool)
    start = (side - hole_side) // 2
    hole[start : start + hole_side, start : start + hole_side] = True
    return pixels, hole


class FillTimes:
    """The fills' measured times, per ``(method, strategy)``; thread-safe."""

    def __init__(self) -> None:
        self._fills: dict[tuple[str, str], deque[Measurement]] = {}
        self._calibrated: dict[str, list[Measurement]] = {}  # method -> its start-up fills
        self._lock = threading.Lock()

    def record(self, method: str, strategy: str, pixels: int, seconds: float) -> None:
        """A fill of ``pixels`` working pixels with ``method`` and ``strategy`` took ``seconds``."""
        with self._lock:
            fills = self._fills.setdefault((method, strategy), deque(maxlen=KEEP))
            fills.append(Measurement(pixels, seconds))

    def estimate(self, method: str, strategy: str, pixels: int) -> Estimate | None:
        """How long ``pixels`` working pixels should take; None before any measurement."""
        with self._lock:
            fills = list(self._fills.get((method, strategy), ()))
            pool = fills or list(self._calibrated.get(method, ()))
        if not pool:
            return None
        source = (
            f"this server's {method} fills ({strategy})"
            if fills
            else f"this server's start-up {method} fills"
        )
        # One point per size, the newest (the machine's load changes; the latest says most).
        points = sorted({m.pixels: m for m in pool}.values(), key=lambda m: m.pixels)
        below = [m for m in points if m.pixels <= pixels]
        above = [m for m in points if m.pixels > pixels]
        if below and above:
            low, high = below[-1], above[0]
            share = (pixels - low.pixels) / (high.pixels - low.pixels)
            seconds = low.seconds + share * (high.seconds - low.seconds)
            how = (
                f"at {_megapixels(low.pixels)}"
                if share == 0
                else f"between {_megapixels(low.pixels)} and {_megapixels(high.pixels)}"
            )
        elif below:  # the largest measured or beyond: its seconds per pixel
            top = below[-1]
            seconds = pixels * top.seconds_per_pixel
            how = f"{top.seconds_per_pixel * 1e6:.1f} µs per working pixel at {_megapixels(top.pixels)}"
        else:  # smaller than any: along the line through the two smallest (the fixed cost)
            first = above[0]
            seconds = pixels * first.seconds_per_pixel
            if len(above) > 1:
                slope = (above[1].seconds - first.seconds) / (above[1].pixels - first.pixels)
                seconds = max(seconds, first.seconds - slope * (first.pixels - pixels))
            how = f"below {_megapixels(first.pixels)}"
        return Estimate(seconds, f"{how}, measured on {source}")

    def calibrate(self, method: str, fill: Callable[[np.ndarray, np.ndarray], object]) -> None:
        """Time ``fill(pixels, hole)`` on each :func:`calibration_image`: ``method``'s start-up figures."""
        for side in CALIBRATION_SIDES:
            pixels, hole = calibration_image(side)
            start = time.perf_counter()
            fill(pixels, hole)
            seconds = time.perf_counter() - start
            with self._lock:
                measured = self._calibrated.setdefault(method, [])
                measured.append(Measurement(hole.size, seconds))
