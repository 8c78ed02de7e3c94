"""The attention pictures: the optical-flow colour wheel and the appendix C overlay."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import skimage.data
import torch

from inpaintkit.model.attention import ContextualAttention
from inpaintkit.model.visualize import attended_overlay, color_wheel, flow_legend, flow_to_color


def hue_of(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(rgb / 255.0))[0]


def hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


def ring(radius: float, count: int = 16) -> np.ndarray:
    """(1, 2, 1, count) offsets: ``count`` directions at one radius."""
    angles = np.arange(count) * 2 * math.pi / count
    return np.stack([radius * np.sin(angles), radius * np.cos(angles)])[None, :, None, :]


def test_color_wheel_is_the_middlebury_wheel():
    wheel = color_wheel()
    assert wheel.shape == (55, 3)
    # Primaries at the segment starts: red, yellow, green, cyan, blue, magenta.
    starts = np.cumsum([0, 15, 6, 4, 11, 13])
    want = [(255, 0, 0), (255, 255, 0), (0, 255, 0), (0, 255, 255), (0, 0, 255), (255, 0, 255)]
    for index, rgb in zip(starts, want, strict=True):
        assert tuple(wheel[index]) == rgb
    # Neighbouring hues never jump: the wheel is continuous, including the wrap-around.
    steps = np.abs(np.diff(np.vstack([wheel, wheel[:1]]), axis=0)).max(axis=1)
    assert steps.max() <= 255 / 4 + 1


def test_zero_offset_is_white_and_shape_dtype():
    offsets = torch.zeros(2, 2, 5, 7, dtype=torch.long)
    offsets[0, :, 2, 3] = torch.tensor([3, -4])
    colors = flow_to_color(offsets)
    assert colors.shape == (2, 5, 7, 3) and colors.dtype == np.uint8
    assert (colors[1] == 255).all()  # an image with no offset at all is all white
    assert (colors[0, 0, 0] == 255).all()
    assert not (colors[0, 2, 3] == 255).all()  # the longest offset is fully saturated


def test_directions_get_distinct_hues_and_opposites_differ():
    colors = flow_to_color(ring(5.0))[0, 0]  # (16, 3), all at full saturation
    hues = [hue_of(c.astype(float)) for c in colors]
    for i in range(8):
        assert hue_distance(hues[i], hues[i + 8]) > 0.25  # opposite directions
    assert len({round(h, 2) for h in hues}) == 16  # every direction its own hue


def test_saturation_grows_with_length_and_per_image_scaling():
    lengths = np.array([0.0, 1.0, 2.0, 4.0])
    offsets = np.zeros((1, 2, 1, 4))
    offsets[0, 1, 0] = lengths  # pointing right
    colors = flow_to_color(offsets)[0, 0].astype(int)
    whiteness = colors.min(axis=1)
    assert list(whiteness) == sorted(whiteness, reverse=True) and whiteness[0] == 255
    # Per-image scaling: doubling every offset changes nothing; a fixed scale does.
    np.testing.assert_array_equal(flow_to_color(offsets * 2), flow_to_color(offsets))
    assert not np.array_equal(flow_to_color(offsets, 8.0), flow_to_color(offsets, 4.0))
    # Beyond max_magnitude: clipped to the rim hue and dimmed, not wrapped or overflowed.
    beyond = flow_to_color(offsets, max_magnitude=1.0)[0, 0]
    assert beyond[3].max() < 255


def test_flow_to_color_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        flow_to_color(np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match="max_magnitude"):
        flow_to_color(np.zeros((1, 2, 3, 3)), max_magnitude=0)


def overlay_case():
    image = skimage.data.astronaut()[::8, ::8].copy()  # (64, 64, 3)
    mask = np.zeros((64, 64), dtype=bool)
    mask[40:48, 8:16] = True
    offsets = np.zeros((2, 16, 16), dtype=np.int64)  # features at 1/4 resolution
    offsets[:, 10:12, 2:4] = np.array([-8, 6])[:, None, None]  # → image offset (-32, +24)
    return image, mask, offsets


def test_overlay_highlights_exactly_where_offsets_point():
    image, mask, offsets = overlay_case()
    out = attended_overlay(image, offsets, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    dimmed = np.rint(image * 0.3).astype(np.uint8)
    target = np.zeros_like(mask)
    target[8:16, 32:40] = True  # the hole block moved by (-32, +24)
    known_untouched = ~mask & ~target
    np.testing.assert_array_equal(out[known_untouched], dimmed[known_untouched])
    # Highlighted pixels are brighter than the dimmed input and yellow-ish (R, G > B).
    assert (out[target].astype(int).sum(axis=1) > dimmed[target].astype(int).sum(axis=1)).all()
    assert (out[target][:, :2].min(axis=1).astype(int) > out[target][:, 2].astype(int)).all()
    # The hole is marked too (tinted, so it differs from the plain dimmed input).
    assert (out[mask] != dimmed[mask]).any(axis=1).all()


def test_overlay_with_real_layer_offsets():
    """End to end: the layer's offsets on a copy-paste image point back at the source."""
    gen = torch.Generator().manual_seed(0)
    small = torch.randn(1, 4, 16, 16, generator=gen) * 0.05
    pattern = torch.randn(1, 4, 3, 3, generator=gen) * 3
    small[:, :, 2:5, 10:13] = pattern  # source, centre block (3, 11)
    small[:, :, 10:13, 3:6] = pattern  # inside the hole, centre block (11, 4)
    features = small.repeat_interleave(2, 2).repeat_interleave(2, 3)  # (1, 4, 32, 32)
    image_mask = torch.zeros(1, 1, 128, 128)
    image_mask[:, :, 72:112, 8:48] = 1  # hole in image pixels = feature rows 18–27, cols 2–11
    layer = ContextualAttention(fuse=False)
    _, offsets = layer(features, features, image_mask, return_offsets=True)
    image = np.full((128, 128, 3), 200, dtype=np.uint8)
    out = attended_overlay(image, offsets[0], image_mask[0, 0].bool().numpy())
    highlighted = out.astype(int).sum(axis=2) > int(image[0, 0].sum() * 0.3) + 3
    highlighted &= ~image_mask[0, 0].bool().numpy()
    # The hole's centre block (feature (22, 8) .. (23, 9), image 88..95, 32..39) maps to the
    # source's centre block: feature (6, 22) .. (7, 23) = image rows 24..31, cols 88..95.
    assert highlighted[24:32, 88:96].all()


def test_overlay_rejects_mismatched_inputs():
    image, mask, offsets = overlay_case()
    with pytest.raises(ValueError, match="mask shape"):
        attended_overlay(image, offsets, mask[:10])
    with pytest.raises(ValueError, match="uint8"):
        attended_overlay(image.astype(float), offsets, mask)
    with pytest.raises(ValueError, match=r"\(2, h, w\)"):
        attended_overlay(image, offsets[None], mask)


def test_flow_legend_is_the_colour_of_each_offset_from_its_centre():
    legend = flow_legend(64)
    assert legend.shape == (64, 64, 4) and legend.dtype == np.uint8
    assert legend[0, 0, 3] == 0 and legend[32, 32, 3] == 255  # corner outside, centre inside
    # The pixel at (y, x) shows the offset from the centre (31.5, 31.5) at the rim's length 32.
    for y, x in [(32, 60), (5, 32), (40, 10)]:
        offset = np.array([y + 0.5 - 32, x + 0.5 - 32], dtype=np.float64).reshape(1, 2, 1, 1)
        np.testing.assert_array_equal(
            legend[y, x, :3], flow_to_color(offset, max_magnitude=32)[0, 0, 0]
        )
    assert (legend[32, 32, :3] > 240).all()  # near-zero offsets are near white
