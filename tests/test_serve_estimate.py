"""``inpaintkit serve``'s fill-time estimates: this server's measured seconds per working pixel."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "starlette", reason='the serve extra is not installed (pip install -e ".[serve]")'
)

# test_serve's helpers (its module is skipped the same way without the serve extra).
# ruff: noqa: E402
from test_serve import GatedMethod, hole, photo, wait_until

from inpaintkit.serve.estimate import CALIBRATION_SIDE, FillTimes, calibration_image
from inpaintkit.serve.jobs import DONE, FillQueue
from inpaintkit.serve.store import ImageStore


def test_an_estimate_scales_the_fill_nearest_in_size() -> None:
    times = FillTimes()
    assert times.estimate("deepfill", "original", 1000) is None  # nothing measured yet
    times.record("deepfill", "original", 100_000, 10.0)  # 100 µs/px (a small image)
    times.record("deepfill", "original", 1_000_000, 40.0)  # 40 µs/px
    # 800k pixels are nearer 1M than 100k: 40 µs/px, not the mean of the two rates.
    estimate = times.estimate("deepfill", "original", 800_000)
    assert estimate is not None and estimate.seconds == pytest.approx(32.0)
    assert "40.0 µs per working pixel" in estimate.basis and "1.00 MP" in estimate.basis
    assert times.estimate("deepfill", "original", 150_000).seconds == pytest.approx(15.0)
    # Each strategy and method has its own fills.
    assert times.estimate("deepfill", "crop", 800_000) is None
    assert times.estimate("patchmatch", "original", 800_000) is None


def test_the_start_up_measurement_stands_in_until_a_fill_of_its_own() -> None:
    times = FillTimes()
    seen = []
    times.calibrate("patchmatch", lambda pixels, hole: seen.append((pixels.shape, hole.sum())))
    pixels, hole_ = calibration_image()
    assert seen == [((CALIBRATION_SIDE, CALIBRATION_SIDE, 3), hole_.sum())] and 0 < hole_.mean() < 1
    estimate = times.estimate("patchmatch", "crop", 4 * CALIBRATION_SIDE**2)
    assert estimate is not None and "start-up patchmatch fill" in estimate.basis
    times.record("patchmatch", "crop", 1000, 1.0)
    assert "nearest in size" in times.estimate("patchmatch", "crop", 1000).basis
    assert times.estimate("patchmatch", "crop", 2000).seconds == pytest.approx(2.0)


def test_the_queue_estimates_every_fill_from_its_own_measurements() -> None:
    method = GatedMethod()
    method.gate.set()
    queue = FillQueue({"gated": method}, ImageStore(), calibrate=True)
    try:
        first = queue.submit("gated", photo(), hole(), "a.png")
        wait_until(lambda: first.final)
        # The start-up fill (512², through the method) came first and stands in for the first.
        assert method.batches == [1, 1] and first.state == DONE
        assert "start-up gated fill" in first.estimate_basis and first.estimate > 0
        second = queue.submit("gated", photo(), hole(), "b.png")
        wait_until(lambda: second.final)
        assert "gated fill nearest in size (3072 pixels, original)" in second.estimate_basis
    finally:
        queue.close()
