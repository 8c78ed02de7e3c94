"""Pictures of contextual attention: the colour-coded offset map (fig. 4) and the appendix C overlay.

Both take the offsets returned by
:class:`~inpaintkit.model.attention.ContextualAttention` (``return_offsets=True``):
int ``(N, 2, H, W)`` = ``(dy, dx)`` in feature pixels, zero outside the hole.
"""

from __future__ import annotations

import numpy as np
import torch

# Middlebury optical-flow colour wheel (Baker et al., "A Database and Evaluation Methodology
# for Optical Flow", 2011): number of hues between consecutive primaries, chosen by the authors
# for perceptually even steps. Red → yellow → green → cyan → blue → magenta → red.
_RY, _YG, _GC, _CB, _BM, _MR = 15, 6, 4, 11, 13, 6

# Overlay: the input is dimmed to this fraction so highlights stand out (appendix C, fig. 16).
_DIM = 0.3
_HIGHLIGHT = np.array([255.0, 230.0, 0.0])  # yellow: attended background regions
_HOLE_TINT = np.array([40.0, 90.0, 255.0])  # blue: where the hole is


def color_wheel() -> np.ndarray:
    """``(55, 3)`` float RGB in [0, 255]: the Middlebury wheel's hues in order.

    In each segment one channel ramps linearly between two primaries while another stays at
    255, exactly as in the reference ``makeColorwheel``.
    """

    def segment(count: int, full: int, ramp: int, up: bool) -> np.ndarray:
        rows = np.zeros((count, 3))
        rows[:, full] = 255
        steps = np.floor(255 * np.arange(count) / count)
        rows[:, ramp] = steps if up else 255 - steps
        return rows

    red, green, blue = 0, 1, 2
    return np.concatenate(
        [
            segment(_RY, red, green, up=True),  # red → yellow
            segment(_YG, green, red, up=False),  # yellow → green
            segment(_GC, green, blue, up=True),  # green → cyan
            segment(_CB, blue, green, up=False),  # cyan → blue
            segment(_BM, blue, red, up=True),  # blue → magenta
            segment(_MR, red, blue, up=False),  # magenta → red
        ]
    )


def flow_to_color(
    offsets: torch.Tensor | np.ndarray, max_magnitude: float | None = None
) -> np.ndarray:
    """Colour-code attention offsets with the optical-flow colour wheel (fig. 4 of the paper).

    Args:
        offsets: ``(N, 2, H, W)`` ``(dy, dx)`` (any real or integer dtype; torch or numpy).
        max_magnitude: offset length drawn at full saturation; longer offsets are clipped to
            the rim and darkened. ``None`` scales each image by its own longest offset so
            its range is visible.

    Returns:
        uint8 ``(N, H, W, 3)`` RGB: hue = direction, saturation = length, white = no offset.
    """
    if isinstance(offsets, torch.Tensor):
        offsets = offsets.detach().cpu().numpy()
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.ndim != 4 or offsets.shape[1] != 2:
        raise ValueError(f"offsets must be (N, 2, H, W), got shape {offsets.shape}")
    if max_magnitude is not None and not max_magnitude > 0:
        raise ValueError(f"max_magnitude must be > 0, got {max_magnitude}")
    dy, dx = offsets[:, 0], offsets[:, 1]
    radius = np.hypot(dx, dy)
    if max_magnitude is None:
        scale = radius.reshape(len(radius), -1).max(axis=1, initial=0.0)
        scale = np.where(scale > 0, scale, 1.0)[:, None, None]
    else:
        scale = float(max_magnitude)
    radius = radius / scale

    wheel = color_wheel()
    count = len(wheel)
    # Angle in (-1, 1], as in the Middlebury reference code (atan2(-v, -u) / π).
    angle = np.arctan2(-dy, -dx) / np.pi
    position = (angle + 1) / 2 * (count - 1)
    k0 = np.floor(position).astype(np.int64)
    k1 = (k0 + 1) % count
    frac = (position - k0)[..., None]
    color = ((1 - frac) * wheel[k0] + frac * wheel[k1]) / 255.0
    inside = (radius <= 1)[..., None]
    # Saturation grows with length from white at 0; beyond the rim the colour is dimmed.
    color = np.where(inside, 1 - radius[..., None] * (1 - color), color * 0.75)
    return np.floor(255 * color).astype(np.uint8)


def flow_legend(size: int) -> np.ndarray:
    """The colour key of :func:`flow_to_color`: uint8 RGBA ``(size, size, 4)``, a disc whose
    pixel at offset ``(dy, dx)`` from the centre has that offset's colour (rim = full length),
    transparent outside the disc."""
    radius = size / 2
    ys, xs = np.mgrid[0:size, 0:size] + 0.5 - radius
    colors = flow_to_color(np.stack([ys, xs])[None], max_magnitude=radius)[0]
    alpha = np.where(np.hypot(ys, xs) <= radius, 255, 0).astype(np.uint8)
    return np.dstack([colors, alpha])


def attended_overlay(
    image: np.ndarray, offsets: torch.Tensor | np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Appendix C: highlight, over a dimmed input, the regions the hole pixels attend most.

    Every hole pixel follows its offset (upscaled from the feature grid to the image:
    nearest-neighbour lookup, lengths multiplied by ``H / h`` and ``W / w``) to the pixel it
    borrows from; those pixels are drawn in yellow, more opaque the more hole pixels land
    there. The hole itself is tinted blue so one sees where the borrowing goes to.

    Args:
        image: uint8 ``(H, W, 3)`` RGB.
        offsets: ``(2, h, w)`` ``(dy, dx)`` in feature pixels (torch or numpy).
        mask: bool ``(H, W)``, ``True = hole``.

    Returns:
        uint8 ``(H, W, 3)``.
    """
    if isinstance(offsets, torch.Tensor):
        offsets = offsets.detach().cpu().numpy()
    offsets = np.asarray(offsets, dtype=np.float64)
    image = np.asarray(image)
    mask = np.asarray(mask, dtype=bool)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if mask.shape != (height, width):
        raise ValueError(
            f"mask shape {mask.shape} must equal the image's (H, W) = {(height, width)}"
        )
    if offsets.ndim != 3 or offsets.shape[0] != 2:
        raise ValueError(f"offsets must be (2, h, w), got shape {offsets.shape}")

    heat = _attended_counts(offsets, mask)
    dimmed = image.astype(np.float64) * _DIM
    out = np.where(mask[..., None], 0.5 * (dimmed + _HOLE_TINT * _DIM), dimmed)
    if heat.max() > 0:
        # Any hit is clearly visible (alpha ≥ 0.5); the most attended pixels are opaque.
        alpha = np.where(heat > 0, 0.5 + 0.5 * heat / heat.max(), 0.0)[..., None]
        out = (1 - alpha) * out + alpha * (0.5 * image + 0.5 * _HIGHLIGHT)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _attended_counts(offsets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` int: how many hole pixels' upscaled offsets land on each image pixel.

    Hole pixels with a zero offset attended nothing (e.g. a sample without any valid
    background patch) and are not counted.
    """
    height, width = mask.shape
    _, h, w = offsets.shape
    ys, xs = np.nonzero(mask)
    # Nearest feature cell of each image pixel; offsets grow by the image/feature size ratio.
    fy = np.minimum(ys * h // height, h - 1)
    fx = np.minimum(xs * w // width, w - 1)
    dy, dx = offsets[0, fy, fx], offsets[1, fy, fx]
    ty = np.rint(ys + dy * (height / h)).astype(np.int64)
    tx = np.rint(xs + dx * (width / w)).astype(np.int64)
    keep = ((dy != 0) | (dx != 0)) & (0 <= ty) & (ty < height) & (0 <= tx) & (tx < width)
    heat = np.zeros((height, width), dtype=np.int64)
    np.add.at(heat, (ty[keep], tx[keep]), 1)
    return heat
