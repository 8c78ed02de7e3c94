"""Poisson blending against a dense, loop-built solve of the same equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inpaintkit import blend
from inpaintkit.blend import poisson_blend


def loop_blend(known: np.ndarray, guess: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The equations of the module docstring, one row per hole pixel, solved densely.

    ``known``, ``guess``: (C, H, W) float64; ``hole``: (H, W) bool. For each hole pixel p:
    sum over in-image 4-neighbours q of (f_p - f_q) = sum of (guess_p - guess_q), with f_q the
    known pixel where q is known.
    """
    channels, height, width = known.shape
    pixels = [(y, x) for y in range(height) for x in range(width) if hole[y, x]]
    number = {p: i for i, p in enumerate(pixels)}
    a = np.zeros((len(pixels), len(pixels)))
    b = np.zeros((len(pixels), channels))
    for i, (y, x) in enumerate(pixels):
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            qy, qx = y + dy, x + dx
            if not (0 <= qy < height and 0 <= qx < width):
                continue
            a[i, i] += 1
            b[i] += guess[:, y, x] - guess[:, qy, qx]
            if hole[qy, qx]:
                a[i, number[(qy, qx)]] -= 1
            else:
                b[i] += known[:, qy, qx]
    solution = np.linalg.solve(a, b)
    out = known.copy()
    for i, (y, x) in enumerate(pixels):
        out[:, y, x] = solution[i]
    return out


def random_case(seed: int, size=(2, 3, 9, 11), hole_fraction=0.4):
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.uniform(-1, 1, size))
    prediction = torch.from_numpy(rng.uniform(-0.5, 0.5, size))
    mask = torch.from_numpy(
        (rng.random((size[0], 1, *size[2:])) < hole_fraction).astype(np.float64)
    )
    return image, prediction, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_dense_solve_of_the_equations(seed):
    image, prediction, mask = random_case(seed)
    got = poisson_blend(image, prediction, mask)
    for n in range(image.shape[0]):
        hole = mask[n, 0].numpy() > 0.5
        expected = loop_blend(image[n].numpy(), prediction[n].numpy(), hole)
        # Clamped to the range of the known pixels and the prediction, as the function is.
        low = min(image[n].numpy()[:, ~hole].min(), prediction[n].numpy().min())
        high = max(image[n].numpy()[:, ~hole].max(), prediction[n].numpy().max())
        np.testing.assert_allclose(got[n].numpy(), np.clip(expected, low, high), atol=1e-10)


def test_known_pixels_are_bit_exact_and_dtype_kept():
    image, prediction, mask = random_case(3)
    image, prediction = image.float(), prediction.float()
    got = poisson_blend(image, prediction, mask)
    assert got.dtype == torch.float32
    known = mask.expand_as(image) < 0.5
    assert torch.equal(got[known], image[known])


def test_a_prediction_off_by_a_constant_is_corrected_exactly():
    """The harmonic extension of a constant seam error is that constant: a prediction that is
    the truth plus an offset comes back as the truth."""
    rng = np.random.default_rng(4)
    truth = torch.from_numpy(rng.uniform(-0.5, 0.5, (1, 3, 12, 10)))
    mask = torch.zeros(1, 1, 12, 10, dtype=torch.float64)
    mask[..., 3:9, 2:7] = 1
    mask[..., 0:2, 8:10] = 1  # a second hole, in a corner
    offset = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(poisson_blend(truth, truth + offset, mask), truth)
    assert not torch.allclose(torch.where(mask > 0.5, truth + offset, truth), truth)


def test_no_hole_keeps_the_image_and_an_all_hole_image_keeps_the_prediction():
    image, prediction, _ = random_case(5)
    zeros = torch.zeros(2, 1, 9, 11, dtype=torch.float64)
    assert torch.equal(poisson_blend(image, prediction, zeros), image)
    assert torch.equal(poisson_blend(image, prediction, zeros + 1), prediction)


def test_the_iterative_solver_agrees_with_the_direct_one(monkeypatch):
    image, prediction, mask = random_case(6, size=(1, 3, 24, 20), hole_fraction=0.6)
    direct = poisson_blend(image, prediction, mask)
    monkeypatch.setattr(blend, "DIRECT_LIMIT", 0)
    torch.testing.assert_close(poisson_blend(image, prediction, mask), direct, atol=1e-5, rtol=0)


def test_shapes_are_checked():
    image, prediction, mask = random_case(7)
    with pytest.raises(ValueError, match="prediction"):
        poisson_blend(image, prediction[:, :, :-1], mask)
    with pytest.raises(ValueError, match="mask"):
        poisson_blend(image, prediction, mask[:, :, :-1])


def test_inpaint_blends_the_refined_prediction_and_refuses_unknown_choices():
    from inpaintkit.inpaint import inpaint
    from inpaintkit.model.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(channels=4)).eval()
    image, _, mask = random_case(8, size=(1, 3, 16, 24), hole_fraction=0.3)
    image, mask = image.float(), mask.float()
    with torch.no_grad():
        prediction = generator(image, mask).refined
    got = inpaint(generator, image, mask, blend="poisson")
    torch.testing.assert_close(got.image, poisson_blend(image, prediction, mask))
    # The coarse stage stays pasted: it is shown, not returned as the fill.
    plain = inpaint(generator, image, mask)
    assert torch.equal(got.coarse, plain.coarse)
    with pytest.raises(ValueError, match="blend must be one of"):
        inpaint(generator, image, mask, blend="seamless")
