"""Periodicity: the residual's autocorrelation against a pixel-by-pixel loop; phase-free."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_losses import _photos

from inpaintkit.losses import periodicity_loss
from inpaintkit.metrics import high_pass, hole_interior
from inpaintkit.periodicity import (
    alternation,
    periodicity,
    power_ratio,
    repetition,
    residual_autocorrelation,
    residual_autocovariance,
    residual_power,
)


def ref_autocorrelation(
    image: np.ndarray, mask: np.ndarray, max_lag: int, reference: np.ndarray | None = None
) -> np.ndarray:
    """By the definition, pair by pair: ``image (C, H, W)``, ``mask (H, W)`` -> ``(2L+1, 2L+1)``,
    over the power of ``reference``'s residual (``(C, H, W)``) where given, else ``image``'s."""
    residual = high_pass(torch.from_numpy(image)[None]).numpy()[0]
    inside = hole_interior(torch.from_numpy(mask)[None, None]).numpy()[0]
    _, height, width = residual.shape
    scale = residual if reference is None else high_pass(torch.from_numpy(reference)[None])[0]
    power = (np.asarray(scale)[:, inside] ** 2).sum() / inside.sum()
    out = np.zeros((2 * max_lag + 1, 2 * max_lag + 1))
    for dy in range(-max_lag, max_lag + 1):
        for dx in range(-max_lag, max_lag + 1):
            total, pairs = 0.0, 0
            for y in range(height):
                for x in range(width):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < height and 0 <= xx < width and inside[y, x] and inside[yy, xx]:
                        total += float((residual[:, y, x] * residual[:, yy, xx]).sum())
                        pairs += 1
            out[dy + max_lag, dx + max_lag] = total / (pairs * power) if pairs else 0.0
    return out


def _random_images_and_holes(
    gen: torch.Generator, size: tuple[int, int], holes: list[tuple[slice, slice]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random images ``(N, 3, H, W)`` in [0, 1], float64, and masks ``(N, 1, H, W)``
    with one rectangular hole each (rows, columns), ``N = len(holes)``."""
    images = torch.rand(len(holes), 3, *size, generator=gen, dtype=torch.float64)
    masks = torch.zeros(len(holes), 1, *size, dtype=torch.float64)
    for mask, (rows, cols) in zip(masks, holes, strict=True):
        mask[:, rows, cols] = 1
    return images, masks


def test_autocorrelation_vs_pair_by_pair_reference():
    gen = torch.Generator().manual_seed(11)
    images, masks = _random_images_and_holes(
        gen, (13, 12), [(slice(1, 12), slice(0, 10)), (slice(3, 13), slice(2, 12))]
    )
    rho = residual_autocorrelation(images, masks, max_lag=4)
    refs = [
        ref_autocorrelation(image, mask, 4)
        for image, mask in zip(images.numpy(), masks[:, 0].numpy(), strict=True)
    ]
    for got, ref in zip(rho.numpy(), refs, strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-10)
    assert rho[:, 4, 4].numpy() == pytest.approx([1.0, 1.0])
    # The two summaries: the largest and minus the smallest correlation at 3-4 px.
    lags = np.arange(-4, 5)
    far = np.maximum(np.abs(lags)[:, None], np.abs(lags)[None, :]) >= 3
    got_max = periodicity(images, masks, max_lag=4).numpy()
    got_min = alternation(images, masks, max_lag=4).numpy()
    np.testing.assert_allclose(got_max, [r[far].max() for r in refs], atol=1e-10)
    np.testing.assert_allclose(got_min, [-r[far].min() for r in refs], atol=1e-10)
    # In another image's units: its residual's power in the same hole, pair by pair.
    photos = torch.rand(2, 3, 13, 12, generator=gen, dtype=torch.float64)
    rho = residual_autocorrelation(images, masks, max_lag=4, reference=photos)
    for got, image, mask, photo in zip(rho, images, masks[:, 0], photos, strict=True):
        ref = ref_autocorrelation(image.numpy(), mask.numpy(), 4, photo.numpy())
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)


def test_residual_power_is_the_autocovariance_at_no_shift():
    # The third hole has no interior after the 2 px erosion: 0, as the FFTs give.
    holes = [(slice(1, 14), slice(0, 11)), (slice(4, 15), slice(3, 14)), (slice(6, 9), slice(6, 9))]
    images, masks = _random_images_and_holes(torch.Generator().manual_seed(13), (15, 14), holes)
    power = residual_power(images, masks)
    centre = residual_autocovariance(images, masks, 2)[:, 2, 2]
    np.testing.assert_allclose(power.numpy(), centre.numpy(), atol=1e-12)
    assert power[:2].min() > 0 and power[2] == 0


def _textures_and_hole() -> tuple[torch.Tensor, torch.Tensor]:
    """Three scikit-image photos ``(3, 3, 128, 128)`` in [0, 1] (not the coffee cup: its own
    detail repeats, 0.50) and a hole ``(3, 1, 128, 128)`` over all but an 8 px border."""
    photos = _photos(names=("chelsea", "grass", "gravel")).double()
    mask = torch.zeros(len(photos), 1, 128, 128, dtype=torch.float64)
    mask[..., 8:120, 8:120] = 1
    return photos, mask


def test_alternation_sees_a_checkerboard_whose_phase_drifts():
    photos, mask = _textures_and_hole()
    natural = alternation(photos, mask)
    assert (natural < 0.1).all()
    # Cells 4 px wide whose phase jumps at random every 10 px, as the TTUR run's fills drew:
    # light cells land on dark ones 4 px away wherever the phase is, 8 px away only in a block.
    rows, cols = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    gen = torch.Generator().manual_seed(0)
    block = (rows // 10).long(), (cols // 10).long()
    phase_y, phase_x = (8 * torch.rand(2, 13, 13, generator=gen))[:, block[0], block[1]]
    board = torch.sign(torch.cos(math.pi * (rows + phase_y) / 4)) * torch.sign(
        torch.cos(math.pi * (cols + phase_x) / 4)
    )
    drifting = photos + 0.1 * board
    assert (alternation(drifting, mask) > natural + 0.25).all()
    assert (alternation(drifting, mask) > periodicity(drifting, mask) + 0.05).all()
    # Grain dilutes a fill's own autocorrelation, so the board hides under it; in the photo's
    # units the board reads as strong as without the grain.
    grain = 0.1 * torch.randn(photos.shape, generator=gen, dtype=torch.float64)
    own = alternation(drifting + grain, mask)
    assert (own < 0.6 * alternation(drifting, mask)).all()
    in_photo_units = repetition(drifting + grain, mask, reference=photos)[1]
    on_its_own = repetition(drifting, mask, reference=photos)[1]
    assert (in_photo_units > natural + 0.25).all()
    np.testing.assert_allclose(in_photo_units.numpy(), on_its_own.numpy(), rtol=0.15)
    # Validation rescales the fill's own autocorrelation by the power ratio instead.
    rescaled = own * power_ratio(drifting + grain, photos, mask)
    np.testing.assert_allclose(rescaled.numpy(), in_photo_units.numpy(), rtol=1e-9)


def test_periodicity_sees_a_repeating_pattern_whatever_its_phase():
    photos, mask = _textures_and_hole()
    natural = periodicity(photos, mask)
    assert (natural < 0.2).all()
    rows, cols = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    wave = torch.cos(2 * math.pi * rows / 6) * torch.cos(2 * math.pi * cols / 6)
    # Chevrons: 6 px stripes whose phase turns every 12 columns, which a lattice averages away.
    chevrons = torch.cos(2 * math.pi * (rows + (cols % 24 - 12).abs()) / 6)
    for pattern in (wave, wave.roll((2, 3), (0, 1)), chevrons):
        assert (periodicity(photos + 0.2 * pattern, mask) > natural + 0.3).all()
    # Fainter, less; on the busiest texture (grass) a 10 % grid is a smaller share of detail.
    faint = periodicity(photos + 0.1 * wave, mask)
    assert (faint > 3 * natural).all() and (faint < periodicity(photos + 0.2 * wave, mask)).all()
    # Noise adds detail that does not repeat.
    noisy = photos + 0.05 * torch.randn(photos.shape, generator=torch.Generator().manual_seed(0))
    assert (periodicity(noisy, mask) <= natural + 0.02).all()


def test_periodicity_empty_hole_is_nan_and_gradient_flows():
    image = torch.rand(2, 3, 24, 24, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(2, 1, 24, 24, dtype=torch.float64)
    mask[0, :, 2:22, 2:22] = 1
    mask[1, :, 10:13, 10:13] = 1  # 3 × 3: nothing left after the 2 px erosion
    values = periodicity(image, mask, max_lag=6)
    assert not math.isnan(values[0].item()) and math.isnan(values[1].item())
    values[0].backward()
    assert image.grad[0].abs().sum() > 0 and torch.isfinite(image.grad).all()


def test_periodicity_loss_is_the_autocorrelation_above_the_photos():
    gen = torch.Generator().manual_seed(12)
    photos = torch.rand(2, 3, 20, 20, generator=gen, dtype=torch.float64)
    fills = photos + 0.3 * torch.rand(2, 3, 20, 20, generator=gen, dtype=torch.float64)
    mask = torch.zeros(2, 1, 20, 20, dtype=torch.float64)
    mask[0, :, 2:18, 3:19] = 1
    mask[1, :, 8:11, 8:11] = 1  # no interior: left out
    ours = residual_autocorrelation(fills[:1], mask[:1], 5)[0].numpy()
    theirs = residual_autocorrelation(photos[:1], mask[:1], 5)[0].numpy()
    lags = np.arange(-5, 6)
    far = np.maximum(np.abs(lags)[:, None], np.abs(lags)[None, :]) >= 3
    expected = np.maximum(ours - theirs, 0)[far].mean()
    assert (ours - theirs)[far].min() < 0 < (ours - theirs)[far].max()
    got = periodicity_loss(fills, photos, mask, min_lag=3, max_lag=5)
    assert got.item() == pytest.approx(expected)
    assert periodicity_loss(photos, photos, mask).item() == 0.0
    # Two-sided: below the photo's counts too.
    two_sided = periodicity_loss(fills, photos, mask, min_lag=3, max_lag=5, two_sided=True)
    assert two_sided.item() == pytest.approx(np.abs(ours - theirs)[far].mean())
    assert two_sided.item() > got.item()
    assert periodicity_loss(photos, photos, mask, two_sided=True).item() == 0.0
    # In the photos' units: the fills' autocovariance over the photos' power.
    ours_photo_units = residual_autocorrelation(fills[:1], mask[:1], 5, photos[:1])[0].numpy()
    assert not np.allclose(ours_photo_units, ours)
    in_photo_units = periodicity_loss(
        fills, photos, mask, min_lag=3, max_lag=5, two_sided=True, photo_units=True
    )
    assert in_photo_units.item() == pytest.approx(np.abs(ours_photo_units - theirs)[far].mean())
    # A checkerboard over a photo is what it pulls against, and descending it removes it.
    rows, cols = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    wave = torch.cos(2 * math.pi * rows / 6) * torch.cos(2 * math.pi * cols / 6)
    photo = _photos(names=("gravel",)).double()
    hole = torch.zeros(1, 1, 128, 128, dtype=torch.float64)
    hole[..., 16:112, 16:112] = 1
    image = (photo + 0.1 * wave).requires_grad_(True)
    before = periodicity_loss(image, photo, hole).item()
    optimizer = torch.optim.Adam([image], lr=2e-3)
    for _ in range(20):
        optimizer.zero_grad()
        periodicity_loss(image, photo, hole).backward()
        optimizer.step()
    assert periodicity_loss(image.detach(), photo, hole).item() < 0.5 * before
