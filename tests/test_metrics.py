"""Metrics against hand-computed values, plain loops and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from inpaintkit.metrics import (
    METRICS,
    LatticeProfile,
    RunningStats,
    hole_tv,
    image_metrics,
    mean_l1_error,
    mean_l2_error,
    psnr,
    ssim,
    tv_loss,
)
from inpaintkit.tensors import uint8_to_unit


def t(rows: list) -> torch.Tensor:
    """A (1, 1, H, W) float64 tensor from nested lists."""
    return torch.tensor(rows, dtype=torch.float64)[None, None]


# --- hand-computed tiny images -------------------------------------------------------------

COMPLETED = t([[0.1, 0.2], [0.3, 0.4]])
TARGET = t([[0.0, 0.0], [0.0, 0.0]])
HOLE = t([[1.0, 0.0], [0.0, 1.0]])


def test_l1_l2_psnr_by_hand_2x2() -> None:
    # |d| = 0.1, 0.2, 0.3, 0.4; d^2 = 0.01, 0.04, 0.09, 0.16
    assert mean_l1_error(COMPLETED, TARGET).item() == pytest.approx(25.0)
    assert mean_l2_error(COMPLETED, TARGET).item() == pytest.approx(7.5)
    assert psnr(COMPLETED, TARGET).item() == pytest.approx(10 * math.log10(1 / 0.075))
    # hole = the diagonal: 0.1 and 0.4
    assert mean_l1_error(COMPLETED, TARGET, HOLE).item() == pytest.approx(25.0)
    assert mean_l2_error(COMPLETED, TARGET, HOLE).item() == pytest.approx(8.5)
    assert psnr(COMPLETED, TARGET, HOLE).item() == pytest.approx(10 * math.log10(1 / 0.085))


def test_hole_metrics_count_each_channel_3x3() -> None:
    # Two channels; the hole is the single centre pixel, errors 0.5 and 0.1 there.
    completed = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    completed[0, 0, 1, 1] = 0.5
    completed[0, 1, 1, 1] = 0.1
    completed[0, 0, 0, 0] = 1.0  # a known-pixel error the hole metrics must ignore
    target = torch.zeros_like(completed)
    hole = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    hole[0, 0, 1, 1] = 1
    assert mean_l1_error(completed, target, hole).item() == pytest.approx(30.0)  # (0.5+0.1)/2
    assert mean_l2_error(completed, target, hole).item() == pytest.approx(13.0)  # (0.25+0.01)/2
    assert mean_l1_error(completed, target).item() == pytest.approx(100 * 1.6 / 18)
    assert mean_l2_error(completed, target).item() == pytest.approx(100 * 1.26 / 18)


def test_tv_by_hand() -> None:
    # vertical pairs: |0.3-0.1|, |0.4-0.2| -> 0.2; horizontal: |0.2-0.1|, |0.4-0.3| -> 0.1
    assert tv_loss(COMPLETED).item() == pytest.approx(30.0)
    # 3x3 ramp along columns: horizontal steps 0.5, vertical 0
    ramp = t([[0.0, 0.5, 1.0]] * 3)
    assert tv_loss(ramp).item() == pytest.approx(50.0)
    assert tv_loss(t([[0.7]])).item() == 0.0
    assert tv_loss(torch.full((2, 3, 4, 5), 0.3)).tolist() == [0.0, 0.0]


def test_hole_tv_by_hand() -> None:
    # hole = the diagonal of COMPLETED: every one of the four neighbour pairs touches it, so
    # hole TV is the whole image's TV
    assert hole_tv(COMPLETED, HOLE).item() == pytest.approx(30.0)
    # hole = the top-left pixel only: vertical pair (0.1, 0.3) and horizontal pair (0.1, 0.2)
    corner = t([[1.0, 0.0], [0.0, 0.0]])
    assert hole_tv(COMPLETED, corner).item() == pytest.approx(100 * (0.2 + 0.1))
    # a single-row image has no vertical pairs: that direction adds 0
    row = t([[0.0, 0.5, 0.5]])
    assert hole_tv(row, t([[0.0, 0.0, 1.0]])).item() == pytest.approx(0.0)
    assert hole_tv(row, t([[1.0, 0.0, 0.0]])).item() == pytest.approx(50.0)
    assert math.isnan(hole_tv(COMPLETED, torch.zeros_like(HOLE)).item())


def loop_hole_tv(image: np.ndarray, hole: np.ndarray) -> float:
    """Obviously-correct hole TV of one (C, H, W) image and an (H, W) bool hole."""
    channels, height, width = image.shape
    vertical = [
        abs(float(image[c, i + 1, j]) - float(image[c, i, j]))
        for c in range(channels)
        for i in range(height - 1)
        for j in range(width)
        if hole[i, j] or hole[i + 1, j]
    ]
    horizontal = [
        abs(float(image[c, i, j + 1]) - float(image[c, i, j]))
        for c in range(channels)
        for i in range(height)
        for j in range(width - 1)
        if hole[i, j] or hole[i, j + 1]
    ]
    mean = lambda values: sum(values) / len(values) if values else 0.0  # noqa: E731
    return 100 * (mean(vertical) + mean(horizontal))


def test_hole_tv_matches_loops_on_random_images() -> None:
    rng = np.random.default_rng(2)
    image = rng.random((4, 3, 9, 11))
    hole = rng.random((4, 9, 11)) < np.array([0.05, 0.3, 0.7, 1.0])[:, None, None]
    got = hole_tv(torch.from_numpy(image), torch.from_numpy(hole[:, None]).double())
    for n in range(4):
        assert got[n].item() == pytest.approx(loop_hole_tv(image[n], hole[n]), rel=1e-10)
    # a hole covering everything is the whole image's TV
    assert got[3].item() == pytest.approx(tv_loss(torch.from_numpy(image[3:])).item(), rel=1e-10)


def test_ssim_of_constant_images_by_hand() -> None:
    # Constant images: every variance is 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 0.2, 0.6, 0.01**2
    x = torch.full((1, 3, 11, 13), a, dtype=torch.float64)
    y = torch.full((1, 3, 11, 13), b, dtype=torch.float64)
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-12)
    assert ssim(x, x).item() == pytest.approx(1.0, rel=1e-12)


# --- plain references on random inputs -------------------------------------------------------


def loop_metrics(completed: np.ndarray, target: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    """Obviously-correct versions for one (C, H, W) image and an (H, W) bool hole."""
    channels, height, width = completed.shape
    abs_all, sq_all, abs_hole, sq_hole = [], [], [], []
    for c in range(channels):
        for i in range(height):
            for j in range(width):
                d = float(completed[c, i, j]) - float(target[c, i, j])
                abs_all.append(abs(d))
                sq_all.append(d * d)
                if hole[i, j]:
                    abs_hole.append(abs(d))
                    sq_hole.append(d * d)
    vertical = [
        abs(float(completed[c, i + 1, j]) - float(completed[c, i, j]))
        for c in range(channels)
        for i in range(height - 1)
        for j in range(width)
    ]
    horizontal = [
        abs(float(completed[c, i, j + 1]) - float(completed[c, i, j]))
        for c in range(channels)
        for i in range(height)
        for j in range(width - 1)
    ]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {
        "l1": 100 * mean(abs_all),
        "l2": 100 * mean(sq_all),
        "psnr": 10 * math.log10(1 / mean(sq_all)),
        "tv": 100 * (mean(vertical) + mean(horizontal)),
        "hole_l1": 100 * mean(abs_hole),
        "hole_l2": 100 * mean(sq_hole),
        "hole_psnr": 10 * math.log10(1 / mean(sq_hole)),
    }


def test_batched_metrics_match_loops_and_skimage() -> None:
    rng = np.random.default_rng(0)
    completed = rng.random((3, 3, 12, 14))
    target = rng.random((3, 3, 12, 14))
    hole = rng.random((3, 12, 14)) < 0.3
    got = image_metrics(
        torch.from_numpy(completed),
        torch.from_numpy(target),
        torch.from_numpy(hole[:, None]).double(),
    )
    assert set(got) == {spec.key for spec in METRICS}
    for n in range(3):
        expected = loop_metrics(completed[n], target[n], hole[n])
        for key, value in expected.items():
            assert got[key][n].item() == pytest.approx(value, rel=1e-10), key
        assert got["psnr"][n].item() == pytest.approx(
            peak_signal_noise_ratio(target[n], completed[n], data_range=1.0), rel=1e-10
        )
        assert got["ssim"][n].item() == pytest.approx(
            structural_similarity(
                completed[n].transpose(1, 2, 0),
                target[n].transpose(1, 2, 0),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
                channel_axis=-1,
            ),
            rel=1e-10,
        )


@pytest.mark.parametrize("name", ["astronaut", "coffee", "camera"])
def test_psnr_and_ssim_match_skimage_on_real_images(name: str) -> None:
    image = getattr(skimage.data, name)()[::4, ::4]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    rng = np.random.default_rng(1)
    noisy = np.clip(image.astype(np.int16) + rng.integers(-20, 21, image.shape), 0, 255).astype(
        np.uint8
    )
    hole = np.zeros(image.shape[:2], bool)
    hole[20:60, 30:90] = True
    noisy[hole] = 128  # a crude fill
    x, y = uint8_to_unit(noisy), uint8_to_unit(image)
    assert psnr(x, y).item() == pytest.approx(peak_signal_noise_ratio(image, noisy), rel=1e-10)
    reference = structural_similarity(
        noisy, image, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1
    )
    assert ssim(x, y).item() == pytest.approx(reference, rel=1e-10)
    hole_psnr = psnr(x, y, torch.from_numpy(hole)[None, None].double()).item()
    assert hole_psnr == pytest.approx(peak_signal_noise_ratio(image[hole], noisy[hole]), rel=1e-10)


def test_batch_members_are_independent() -> None:
    rng = np.random.default_rng(2)
    completed = torch.from_numpy(rng.random((4, 3, 16, 16)))
    target = torch.from_numpy(rng.random((4, 3, 16, 16)))
    mask = torch.from_numpy(rng.random((4, 1, 16, 16)) < 0.5).double()
    batched = image_metrics(completed, target, mask)
    for n in range(4):
        single = image_metrics(completed[n : n + 1], target[n : n + 1], mask[n : n + 1])
        for key in batched:
            assert batched[key][n].item() == pytest.approx(single[key].item(), rel=1e-12)


# --- edge cases -----------------------------------------------------------------------------


def test_identical_images_give_infinite_psnr_and_zero_errors() -> None:
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    mask = torch.zeros(2, 1, 12, 12, dtype=torch.float64)
    mask[:, :, 3:6, 3:6] = 1
    got = image_metrics(x, x.clone(), mask)
    assert got["l1"].tolist() == [0.0, 0.0] and got["hole_l2"].tolist() == [0.0, 0.0]
    assert got["psnr"].tolist() == [math.inf, math.inf]
    assert got["hole_psnr"].tolist() == [math.inf, math.inf]
    assert got["ssim"].tolist() == pytest.approx([1.0, 1.0])


def test_empty_hole_is_undefined_and_full_hole_equals_whole_image() -> None:
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.random((1, 3, 12, 12)))
    y = torch.from_numpy(rng.random((1, 3, 12, 12)))
    empty = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    got = image_metrics(x, y, empty)
    assert all(math.isnan(got[k].item()) for k in ("hole_l1", "hole_l2", "hole_psnr"))
    assert math.isfinite(got["l1"].item())
    full = image_metrics(x, y, torch.ones_like(empty))
    for key in ("l1", "l2", "psnr"):
        assert full[f"hole_{key}"].item() == pytest.approx(full[key].item(), rel=1e-12)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shapes"):
        mean_l1_error(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="mask"):
        mean_l1_error(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(1, 3, 10, 20), torch.zeros(1, 3, 10, 20))
    with pytest.raises(TypeError, match="uint8"):
        uint8_to_unit(np.zeros((4, 4, 3), np.float32))


def test_uint8_to_unit() -> None:
    image = np.array([[[0, 255, 51]]], np.uint8)
    assert uint8_to_unit(image).flatten().tolist() == [0.0, 1.0, 0.2]
    assert uint8_to_unit(np.zeros((2, 5, 6, 3), np.uint8)).shape == (2, 3, 5, 6)


def test_running_stats_match_numpy_and_count_inf_and_nan() -> None:
    values = np.random.default_rng(4).normal(20, 3, 101)
    stats = RunningStats()
    for v in [*values, math.inf, math.nan, math.inf]:
        stats.add(float(v))
    assert stats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert stats.std == pytest.approx(values.std(), rel=1e-10)
    assert (stats.count, stats.infinite, stats.undefined) == (101, 2, 1)
    empty = RunningStats()
    assert math.isnan(empty.mean) and math.isnan(empty.std)
    one = RunningStats()
    one.add(5.0)
    assert one.as_dict() == {"mean": 5.0, "std": 0.0, "count": 1, "infinite": 0, "undefined": 0}


def ref_lattice_cell_means(
    images: list[np.ndarray], masks: list[np.ndarray], period: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each lattice cell's mean detail, and its mean signed high-pass residual per channel, by
    the definition, pixel by pixel in numpy: ``images`` (C, H, W), ``masks`` (H, W) ->
    ``(period, period)`` and ``(C, period, period)``."""
    channels = images[0].shape[0]
    sums = np.zeros((period, period))
    signed = np.zeros((channels, period, period))
    counts = np.zeros((period, period))
    for image, mask in zip(images, masks, strict=True):
        _, height, width = image.shape
        for y in range(height):
            for x in range(width):
                ys = range(max(y - 2, 0), min(y + 3, height))
                xs = range(max(x - 2, 0), min(x + 3, width))
                if not all(mask[yy, xx] > 0.5 for yy in ys for xx in xs):
                    continue  # within 2 px of a known pixel (or of nothing beyond the edge)
                ny = range(max(y - 1, 0), min(y + 2, height))
                nx = range(max(x - 1, 0), min(x + 2, width))
                box = image[:, ny.start : ny.stop, nx.start : nx.stop].mean(axis=(1, 2))
                sums[y % period, x % period] += np.abs(image[:, y, x] - box).mean()
                signed[:, y % period, x % period] += image[:, y, x] - box
                counts[y % period, x % period] += 1
    return sums / counts, signed / counts


def ref_lattice_spread(images: list[np.ndarray], masks: list[np.ndarray], period: int) -> float:
    """The lattice spread by its definition: max over min cell mean, minus 1, in %."""
    means, _ = ref_lattice_cell_means(images, masks, period)
    return 100 * (means.max() / means.min() - 1)


def test_lattice_spread_matches_pixel_by_pixel_reference_over_batches() -> None:
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(3, 3, 14, 13, generator=gen, dtype=torch.float64)
    masks = torch.zeros(3, 1, 14, 13, dtype=torch.float64)
    masks[0, :, 1:13, 2:12] = 1
    masks[1, :, 5:14, 0:9] = 1
    masks[2, :, :, :] = 1
    profile = LatticeProfile(period=4)
    profile.add(images[:2], masks[:2])  # two batches accumulate as one set
    profile.add(images[2:], masks[2:])
    want = ref_lattice_spread(list(images.numpy()), list(masks[:, 0].numpy()), 4)
    assert profile.spread == pytest.approx(want, rel=1e-9)


def test_lattice_spread_sees_a_grid_and_not_photos() -> None:
    photos = []
    for name in ("chelsea", "coffee", "grass", "gravel"):
        pixels = torch.from_numpy(getattr(skimage.data, name)()[:256, :256]) / 255.0
        photos.append(pixels.expand(3, -1, -1) if pixels.ndim == 2 else pixels.permute(2, 0, 1))
    photos = torch.stack(photos)
    mask = torch.zeros(len(photos), 1, 256, 256)
    mask[..., 16:240, 16:240] = 1
    natural = LatticeProfile()
    natural.add(photos, mask)
    gridded = photos.clone()
    gridded[..., ::8, :] *= 0.9  # a faint line every 8 px, as the attention's paste draws
    gridded[..., :, ::8] *= 0.9
    lattice = LatticeProfile()
    lattice.add(gridded, mask)
    assert natural.spread < 20.0
    assert lattice.spread > 5 * natural.spread
    # Until every cell has a pixel the spread is undefined.
    assert math.isnan(LatticeProfile().spread)
