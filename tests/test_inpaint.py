"""inpaint(): any size, any holes, composited, known pixels bit-exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from inpaintkit.inpaint import InpaintResult, inpaint
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.tensors import image_to_tensor


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(GeneratorConfig(channels=8)).eval()


def astronaut_with_holes(height: int = 255, width: int = 301) -> tuple[torch.Tensor, torch.Tensor]:
    image = image_to_tensor(data.astronaut()[:height, :width])
    mask = torch.zeros(1, 1, height, width)
    mask[..., 20:90, 30:100] = 1  # a box
    mask[..., 150:160, 10:290] = 1  # a long thin stroke
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - 200) ** 2 + (xx - 250) ** 2 < 30**2
    mask[0, 0][torch.from_numpy(disc)] = 1  # a disc at the corner
    mask[..., height - 5 :, width - 7 :] = 1  # touching the bottom-right border (the padded side)
    return image, mask


def test_odd_size_several_holes(generator):
    image, mask = astronaut_with_holes()
    result = inpaint(generator, image, mask, return_offsets=True)
    assert isinstance(result, InpaintResult)
    assert result.image.shape == result.coarse.shape == (1, 3, 255, 301)
    assert result.image.dtype == torch.float32
    for x in (result.image, result.coarse):
        assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    known = (mask < 0.5).expand_as(image)
    assert torch.equal(result.image[known], image[known])  # bit-exact
    assert torch.equal(result.coarse[known], image[known])
    assert not torch.equal(result.image[~known], image[~known])
    assert result.offsets is not None and result.offsets.shape == (1, 2, 64, 76)
    assert result.offsets.dtype == torch.int64


def test_matches_manual_pad_forward_crop_composite(generator):
    image, mask = astronaut_with_holes(61, 45)
    result = inpaint(generator, image, mask)
    padded = torch.nn.functional.pad(image, (0, 3, 0, 3), mode="reflect")
    padded_mask = torch.nn.functional.pad(mask, (0, 3, 0, 3), mode="reflect")
    with torch.no_grad():
        out = generator(padded, padded_mask)
    expected = torch.where(mask > 0.5, out.refined[..., :61, :45], image)
    torch.testing.assert_close(result.image, expected, rtol=0, atol=0)
    assert result.offsets is None  # not requested


def test_batch_with_different_masks_and_no_grad(generator):
    image = image_to_tensor(np.stack([data.astronaut()[:40, :50], data.coffee()[:40, :50]]))
    image.requires_grad_(True)
    mask = torch.zeros(2, 1, 40, 50)
    mask[0, :, 5:20, 5:20] = 1
    mask[1, :, 20:35, 30:45] = 1
    result = inpaint(generator, image, mask)
    assert not result.image.requires_grad
    single = inpaint(generator, image[1:].detach(), mask[1:])
    torch.testing.assert_close(result.image[1:], single.image, rtol=1e-5, atol=1e-5)


def test_tiny_image(generator):
    image = torch.rand(1, 3, 5, 7) * 2 - 1
    mask = torch.zeros(1, 1, 5, 7)
    mask[..., 1:3, 2:5] = 1
    result = inpaint(generator, image, mask, return_offsets=True)
    assert result.image.shape == (1, 3, 5, 7) and result.offsets.shape == (1, 2, 2, 2)
    assert torch.equal(
        result.image[(mask < 0.5).expand_as(image)], image[(mask < 0.5).expand_as(image)]
    )


def test_float64_input_keeps_dtype_and_exact_known_pixels(generator):
    image, mask = astronaut_with_holes(48, 40)
    image = image.double() + 1e-12  # values float32 cannot represent
    result = inpaint(generator, image, mask)
    assert result.image.dtype == torch.float64
    known = (mask < 0.5).expand_as(image)
    assert torch.equal(result.image[known], image[known])


def test_bf16_autocast(generator):
    image, mask = astronaut_with_holes(64, 64)
    full = inpaint(generator, image, mask)
    half = inpaint(generator, image, mask, autocast_dtype=torch.bfloat16)
    assert half.image.dtype == torch.float32
    known = (mask < 0.5).expand_as(image)
    assert torch.equal(half.image[known], image[known])
    assert (half.image - full.image).abs().max() < 0.1  # bf16 has ~3 significant digits


def test_baseline_model_has_no_offsets():
    g = Generator(GeneratorConfig(channels=8, contextual_attention=False))
    image, mask = astronaut_with_holes(32, 40)
    assert inpaint(g, image, mask, return_offsets=True).offsets is None


def test_bad_inputs(generator):
    with pytest.raises(ValueError, match="image must be"):
        inpaint(generator, torch.zeros(3, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="mask must be"):
        inpaint(generator, torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(TypeError, match="float"):
        inpaint(generator, torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 1, 8, 8))
