"""``inpaintkit serve``'s fill-time estimates: this server's measured seconds per working pixel."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "starlette", reason='the serve extra is not installed (pip install -e ".[serve]")'
)

# test_serve's helpers (its module is skipped the same way without the serve extra).
# ruff: noqa: E402
from test_serve import GatedMethod, hole, photo, wait_until

from inpaintkit.serve.estimate import CALIBRATION_SIDES, FillTimes, calibration_image
from inpaintkit.serve.jobs import DONE, FillQueue
from inpaintkit.serve.store import ImageStore


def test_an_estimate_reads_the_measured_times_at_its_size() -> None:
    times = FillTimes()
    assert times.estimate("deepfill", "original", 1000) is None  # nothing measured yet
    times.record("deepfill", "original", 100_000, 10.0)  # 100 µs/px: a fixed cost shows
    times.record("deepfill", "original", 1_000_000, 40.0)  # 40 µs/px
    # Between two sizes: interpolated (not one rate for both).
    estimate = times.estimate("deepfill", "original", 700_000)
    assert estimate is not None and estimate.seconds == pytest.approx(30.0)
    assert estimate.basis == (
        "between 0.10 MP and 1.00 MP, measured on this server's deepfill fills (original)"
    )
    # Beyond the largest: its seconds per pixel; below the smallest: the line through both.
    assert times.estimate("deepfill", "original", 2_000_000).seconds == pytest.approx(80.0)
    assert times.estimate("deepfill", "original", 40_000).seconds == pytest.approx(8.0)
    # The newest fill of a size replaces an older one.
    times.record("deepfill", "original", 1_000_000, 50.0)
    assert times.estimate("deepfill", "original", 1_000_000).seconds == pytest.approx(50.0)
    # Each strategy and method has its own fills.
    assert times.estimate("deepfill", "crop", 800_000) is None
    assert times.estimate("patchmatch", "original", 800_000) is None


def test_the_start_up_measurement_stands_in_until_a_fill_of_its_own() -> None:
    times = FillTimes()
    seen = []
    times.calibrate("patchmatch", lambda pixels, hole: seen.append((pixels.shape, hole.sum())))
    assert seen == [((side, side, 3), (side // 4) ** 2) for side in CALIBRATION_SIDES]
    pixels, hole_ = calibration_image(512)
    assert pixels.std() > 10 and hole_.sum() == 128**2  # a textured picture, a square hole
    estimate = times.estimate("patchmatch", "crop", 4 * 512**2)
    assert estimate is not None and estimate.basis.endswith(
        "this server's start-up patchmatch fills"
    )
    assert "at 0.26 MP" in estimate.basis  # beyond the 512² fill: its seconds per pixel
    times.record("patchmatch", "crop", 1000, 1.0)
    estimate = times.estimate("patchmatch", "crop", 2000)
    assert estimate.seconds == pytest.approx(2.0) and "fills (crop)" in estimate.basis


def test_the_queue_estimates_every_fill_from_its_own_measurements() -> None:
    method = GatedMethod()
    method.gate.set()
    queue = FillQueue({"gated": method}, ImageStore(), calibrate=True)
    try:
        first = queue.submit("gated", photo(), hole(), "a.png")
        wait_until(lambda: first.final)
        # The start-up fills (through the method) came first and stand in for the first.
        assert method.batches == [1] * (len(CALIBRATION_SIDES) + 1) and first.state == DONE
        assert "start-up gated fills" in first.estimate_basis and first.estimate > 0
        second = queue.submit("gated", photo(), hole(), "b.png")
        wait_until(lambda: second.final)
        basis = second.estimate_basis  # the same size again: its own fill, no longer start-up
        assert basis.endswith("at 3072 pixels, measured on this server's gated fills (original)")
    finally:
        queue.close()
