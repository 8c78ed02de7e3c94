"""How long a fill will take: this server's own measured seconds per working pixel.

The page shows the time a fill has run against an estimate. The estimate is measured here,
on this machine, with its current load: :class:`FillTimes` keeps the last fills of each
method and HD strategy (how many working pixels, how many seconds) and scales the one
nearest in size to the new fill's working pixels. Nearest, not an average: the seconds per
pixel are not constant. A fixed cost per call weighs on small images (on 2 CPU cores
DeepFill took ~65 µs per pixel at 256², ~36 at 512² and 1024²), PatchMatch's time grows with
the hole as well as the image, and ``crop`` pays per box; the fill most like the new one
predicts it best.

Before a method and strategy have their own fill, :meth:`FillTimes.calibrate` (run by the
fill worker when the server starts) has timed one :data:`CALIBRATION_SIDE`² fill per method,
and that stands in; without it the page shows no estimate. Every estimate says what it rests
on (:attr:`Estimate.basis`), and the page shows that too.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Side of the square image :meth:`FillTimes.calibrate` fills, and of its square hole.
CALIBRATION_SIDE, CALIBRATION_HOLE = 512, 128
#: Fills remembered per method and strategy (the newest replace the oldest).
KEEP = 8


@dataclass(frozen=True)
class Measurement:
    """One fill: ``pixels`` working pixels in ``seconds``; ``calibration``: the start-up one."""

    pixels: int
    seconds: float
    calibration: bool = False

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


def calibration_image() -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(S, S, 3)`` and bool ``(S, S)``: a smooth picture with texture and a centred
    square hole (what PatchMatch searches matters to its time, so not a flat image)."""
    side, hole_side = CALIBRATION_SIDE, CALIBRATION_HOLE
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
        self._calibrated: dict[str, Measurement] = {}  # method -> its start-up fill
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
            calibration = self._calibrated.get(method)
        if not fills and calibration is None:
            return None
        pool = fills or [calibration]
        # Nearest in size on a log scale: 2x larger is as far as 2x smaller.
        nearest = min(pool, key=lambda m: abs(math.log(max(1, pixels) / max(1, m.pixels))))
        rate = nearest.seconds_per_pixel
        where = (
            f"this server's start-up {method} fill ({_megapixels(nearest.pixels)})"
            if not fills
            else f"this server's {method} fill nearest in size ({_megapixels(nearest.pixels)}, "
            f"{strategy})"
        )
        return Estimate(
            rate * pixels, f"{rate * 1e6:.1f} µs per working pixel, measured on {where}"
        )

    def calibrate(self, method: str, fill: Callable[[np.ndarray, np.ndarray], object]) -> None:
        """Time ``fill(pixels, hole)`` on :func:`calibration_image` as ``method``'s start-up figure."""
        pixels, hole = calibration_image()
        start = time.perf_counter()
        fill(pixels, hole)
        seconds = time.perf_counter() - start
        with self._lock:
            self._calibrated[method] = Measurement(hole.size, seconds, calibration=True)
