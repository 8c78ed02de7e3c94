"""The image/mask convention and its conversions (inpaintkit/tensors.py)."""

import numpy as np
import pytest
import torch

from inpaintkit.tensors import (
    composite,
    crop_to,
    image_to_tensor,
    mask_to_tensor,
    pad_to_multiple,
    tensor_to_image,
)


def test_uint8_round_trip_is_exact_for_every_value():
    values = np.arange(256, dtype=np.uint8)
    image = np.stack([values, values[::-1], values], axis=-1).reshape(16, 16, 3)
    tensor = image_to_tensor(image)
    assert tensor.shape == (1, 3, 16, 16)
    assert tensor.min() == -1.0 and tensor.max() == 1.0
    np.testing.assert_array_equal(tensor_to_image(tensor)[0], image)


def test_image_to_tensor_rejects_wrong_inputs():
    with pytest.raises(TypeError):
        image_to_tensor(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        image_to_tensor(np.zeros((4, 4), np.uint8))


def test_mask_to_tensor_marks_nonzero_as_hole():
    mask = np.array([[0, 3], [255, 0]], dtype=np.uint8)
    tensor = mask_to_tensor(mask)
    assert tensor.shape == (1, 1, 2, 2)
    assert tensor.dtype == torch.float32
    assert tensor.flatten().tolist() == [0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("size", [(8, 8), (255, 301), (1, 1), (7, 5), (3, 17)])
def test_pad_then_crop_round_trip(size):
    x = torch.randn(2, 3, *size)
    padded, original = pad_to_multiple(x, 8)
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert original == size
    assert torch.equal(crop_to(padded, original), x)


def test_pad_is_a_mirror_where_the_image_is_large_enough():
    x = torch.arange(6.0).reshape(1, 1, 1, 6).expand(1, 1, 6, 6).contiguous()
    padded, _ = pad_to_multiple(x, 8)
    # Reflection about the last column: ... 3 4 5 | 4 3
    assert padded[0, 0, 0, 6:].tolist() == [4.0, 3.0]


def test_composite_copies_known_pixels_exactly_even_against_nan():
    image = torch.rand(1, 3, 4, 4) * 2 - 1
    prediction = torch.full_like(image, float("nan"))
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1:3, 1:3] = 1
    out = composite(image, prediction, mask)
    known = (mask == 0).expand_as(image)
    assert torch.equal(out[known], image[known])
    assert torch.isnan(out[~known]).all()
