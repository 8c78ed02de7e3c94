"""HD strategies: how a photo larger than the model's training scale is filled.

The default model was trained on 256 x 256 crops of photos whose shorter side was resized to
256 (docs/model-card.md), with holes of up to half the side. Run on a 12-megapixel photo as a
whole, it sees a hole at a scale it never met, spends minutes of CPU on pixels far from any
hole, and its contextual attention paints its ~8 px stride lattice into large holes
(docs/model.md). The strategies, as IOPaint names them:

- ``original``: the whole image at its own size (the paper's forward; what ``fill`` did).
- ``resize``: the whole image scaled so that its longer side is at most a limit
  (``fill --max-size``, :data:`RESIZE_LIMIT` when none is given); the fill is upsampled into
  the holes.
- ``crop``: per hole region. Each connected group of hole pixels gets its bounding box grown
  by a context margin (:data:`MARGIN_RATIO` of the group's longer side) to at least
  :data:`MIN_BOX_SIDE` a side; boxes that overlap or touch are merged; each box is filled on its own,
  scaled so that its longer side is at most :data:`CROP_SIDE` and its holes at most
  :data:`HOLE_SIDE` thick (:func:`crop_side`), and its fill is upsampled into
  the box's holes. AUTOMATIC1111's "inpaint only masked" with padding is the same idea.
- ``auto``: :func:`plan_image`'s rule, per image.

Every strategy composites at full size, so known pixels are copied bit-exactly. The numbers
behind the constants are in docs/benchmarks.md ("HD strategies"; benchmarks/bench_hd_strategy.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from skimage.measure import label, regionprops

from inpaintkit.tensors import composite, image_to_tensor, mask_to_tensor, tensor_to_image

#: ``--hd-strategy`` choices.
STRATEGIES = ("auto", "original", "resize", "crop")
#: What ``fill``, ``serve`` and :func:`inpaintkit.fill.fill_files` use when none is given.
DEFAULT_STRATEGY = "auto"
#: ``resize``'s limit on the longer side when no ``--max-size`` is given.
RESIZE_LIMIT = 1024
#: ``crop``: a box's longer side is scaled down to at most this (never up) before it is filled.
CROP_SIDE = 1024
#: ``crop``: ... and so that its holes are at most this thick: the training's holes (128 x 128
#: rectangles in 256 x 256 crops), so a 256 x 256 hole with its margin is filled at 256 x 256,
#: while strokes thinner than this (the training's were 12-40 px wide) stay at full resolution.
HOLE_SIDE = 128
#: ``crop``: context on every side of a hole region, as a fraction of the region's longer side
#: (0.5: the hole is half the box's side, as the training's 128² holes in 256² crops).
MARGIN_RATIO = 0.5
#: ``crop``: the least side of a box (where the image has it), in pixels: a small hole gets
#: the 512 x 512 neighbourhood around it, filled at full resolution.
MIN_BOX_SIDE = 512
#: ``auto``: images whose longer side is at most this are filled whole (``original``).
AUTO_ORIGINAL_SIDE = 1024
#: ``auto``: ``crop`` only while its boxes cover at most this share of the image; a larger
#: share is ``resize`` (boxes that cover the photo are the photo, at a smaller working size).
AUTO_CROP_COVER = 0.5

#: A fill of one image: ``(image (1, 3, h, w) in [-1, 1], mask (1, 1, h, w), 1 = hole)`` ->
#: images ``(1, 3, h, w)`` in ``[-1, 1]`` (e.g. a method's fill, or the refined and coarse
#: outputs of :func:`inpaintkit.inpaint.inpaint`); each is composited into the holes.
Fill = Callable[[torch.Tensor, torch.Tensor], Sequence[torch.Tensor]]


class StrategyError(ValueError):
    """An HD strategy that does not exist, or does not go with the other options."""


def check_strategy(strategy: str) -> None:
    """Raise :class:`StrategyError` unless ``strategy`` is one of :data:`STRATEGIES`."""
    if strategy not in STRATEGIES:
        raise StrategyError(
            f"unknown HD strategy {strategy!r}; choose from {', '.join(STRATEGIES)}"
        )


def working_size(height: int, width: int, max_size: int | None) -> tuple[int, int]:
    """``(h, w)`` scaled so the longer side is at most ``max_size`` (aspect kept, never enlarged)."""
    longest = max(height, width)
    if max_size is None or longest <= max_size:
        return height, width
    scale = max_size / longest
    return max(1, min(max_size, round(height * scale))), max(1, min(max_size, round(width * scale)))


@dataclass(frozen=True)
class Box:
    """The rectangle ``[top, bottom) x [left, right)`` of an image, in pixels."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.bottom - self.top, self.right - self.left

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, columns)``, to index an ``(H, W, ...)`` array (``array[box.slices]``)."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


def _boxes_of(canvas: np.ndarray) -> list[Box]:
    """The bounding boxes of the 8-connected groups of True pixels of ``canvas``, in raster order."""
    return [Box(*region.bbox) for region in regionprops(label(canvas, connectivity=2))]


def _grown(start: int, length: int, want: int, limit: int) -> tuple[int, int]:
    """``[start, start + length)`` grown to ``want`` (at most ``limit``) around its centre,
    shifted to stay inside ``[0, limit)``: a hole at a border gets its context from one side."""
    want = min(limit, max(length, want))
    low = min(max(0, start - (want - length) // 2), limit - want)
    return low, low + want


def context_boxes(
    hole: np.ndarray,
    margin_ratio: float = MARGIN_RATIO,
    min_margin: int = 0,
    min_side: int = MIN_BOX_SIDE,
) -> list[Box]:
    """``crop``'s boxes for a bool ``(H, W)`` hole mask: disjoint, every hole pixel in exactly one.

    Each 8-connected group of hole pixels gets its bounding box grown on every side by
    ``max(min_margin, margin_ratio * its longer side)`` and to at least ``min_side`` on each
    side, around its centre and shifted inside the image (clipped where the image is
    smaller). Boxes that overlap or touch are replaced by their bounding box until none do:
    drawn on a canvas, a group of such boxes is one connected shape. So no box holds a hole
    pixel of another box's group, which the network would otherwise take for known image.
    Raster order.
    """
    height, width = hole.shape
    canvas = np.zeros_like(hole, dtype=bool)
    for box in _boxes_of(hole):
        rows, cols = box.size
        margin = max(min_margin, round(margin_ratio * max(rows, cols)))
        top, bottom = _grown(box.top, rows, max(rows + 2 * margin, min_side), height)
        left, right = _grown(box.left, cols, max(cols + 2 * margin, min_side), width)
        canvas[top:bottom, left:right] = True
    while True:
        boxes = _boxes_of(canvas)
        # Stable once every shape is its own bounding box (then no two boxes overlap).
        if sum(b.size[0] * b.size[1] for b in boxes) == np.count_nonzero(canvas):
            return boxes
        for box in boxes:
            canvas[box.slices] = True


@dataclass(frozen=True)
class HDPlan:
    """How one image is filled: the strategy it resolved to and that strategy's geometry.

    ``limit``: the whole image's longer working side (``resize``; ``None``: full size);
    ``boxes``: ``crop``'s boxes (:func:`context_boxes`), empty otherwise.
    """

    strategy: str
    limit: int | None = None
    boxes: tuple[Box, ...] = ()

    sides: tuple[int, ...] = ()  # crop: each box's working side (crop_side)

    def work_pixels(self, size: tuple[int, int]) -> int:
        """Working pixels the method fills for an image of ``size = (H, W)``: what time scales with."""
        if self.strategy == "crop":
            works = (
                working_size(*b.size, side) for b, side in zip(self.boxes, self.sides, strict=True)
            )
            return sum(h * w for h, w in works)
        height, width = working_size(*size, self.limit)
        return height * width


def plan_image(strategy: str, hole: np.ndarray, max_size: int | None = None) -> HDPlan:
    """The :class:`HDPlan` of an image with bool ``(H, W)`` ``hole``: ``strategy``, or ``auto``'s choice.

    ``auto``: a ``max_size`` asks for ``resize`` (``fill --max-size`` as before); an image
    whose longer side is at most :data:`AUTO_ORIGINAL_SIDE`, or without holes, is filled
    whole (``original``); a larger one is ``crop``, unless its boxes would cover more than
    :data:`AUTO_CROP_COVER` of it (a hole over most of the photo), which is ``resize``.
    Raises :class:`StrategyError` for a ``max_size`` with ``original`` or ``crop``.
    """
    limit = resize_limit(strategy, max_size)
    if strategy == "auto":
        if max_size is not None:
            return HDPlan("resize", max_size)
        if max(hole.shape) <= AUTO_ORIGINAL_SIDE or not hole.any():
            return HDPlan("original")
        boxes = context_boxes(hole)
        if sum(h * w for h, w in (b.size for b in boxes)) > AUTO_CROP_COVER * hole.size:
            return HDPlan("resize", RESIZE_LIMIT)
    elif strategy == "crop":
        boxes = context_boxes(hole)
    else:
        return HDPlan(strategy, limit)
    return HDPlan("crop", boxes=tuple(boxes), sides=tuple(crop_side(b, hole) for b in boxes))


def crop_side(box: Box, hole: np.ndarray) -> int:
    """``crop``'s working side for ``box`` of bool ``(H, W)`` ``hole``: the box's longer side
    scaled so that its holes are at most :data:`HOLE_SIDE` thick, and the box's at most
    :data:`CROP_SIDE` (never enlarged).

    A hole's thickness is the diameter of the largest disc inside it (twice the largest
    distance to a known pixel): a 256 x 256 square is 256 thick, a 30 px wide stroke 30
    however long, and it is thickness, not length, that the network fills at a scale of its own.
    """
    thickness = 2 * float(distance_transform_edt(hole[box.slices]).max())
    longest = max(box.size)
    return int(min(longest, CROP_SIDE, max(8, longest * HOLE_SIDE // max(thickness, 1))))


def resize_limit(strategy: str, max_size: int | None) -> int | None:
    """The longer side of the whole-image working size: ``max_size`` or :data:`RESIZE_LIMIT`
    under ``resize``, ``None`` (full size) otherwise (``crop`` works per box).

    Raises :class:`StrategyError` for an unknown strategy, or a ``max_size`` with ``original``
    or ``crop`` (``max_size`` is resize's limit; ``auto`` with it is ``resize``).
    """
    check_strategy(strategy)
    if strategy == "resize":
        return max_size or RESIZE_LIMIT
    if strategy == "original" and max_size is not None:
        raise StrategyError("--max-size is resize's limit; it does not go with original")
    if strategy == "crop" and max_size is not None:
        raise StrategyError("--max-size is resize's limit; crop fills at its own working size")
    return None


def work_bound(size: tuple[int, int], strategy: str, max_size: int | None) -> tuple[int, int]:
    """The largest working size ``(h, w)`` a ``(H, W)`` image may be filled at, from its size alone.

    What a memory check and the planner can know before the mask is read: ``crop`` fills one
    box at a time, at most :data:`CROP_SIDE` on its longer side; ``auto`` may be any of
    what :func:`plan_image` picks for an image of that size.
    """
    check_strategy(strategy)
    if strategy == "auto":
        if max_size is not None:
            return working_size(*size, max_size)
        if max(size) <= AUTO_ORIGINAL_SIDE:
            return size
        return working_size(*size, max(RESIZE_LIMIT, CROP_SIDE))
    if strategy == "crop":
        return working_size(*size, CROP_SIDE)
    return working_size(*size, resize_limit(strategy, max_size))


def fill_box(
    fill: Fill, image: torch.Tensor, mask: torch.Tensor, side: int | None
) -> list[torch.Tensor]:
    """Fill ``image (1, 3, h, w)`` where ``mask (1, 1, h, w)`` is 1, at a longer side of at most ``side``.

    The image is downscaled (bicubic, antialiased) and a working pixel is a hole if any pixel
    under it is (max pooling), so the upsampled fill (bicubic) covers every hole pixel. Each
    of ``fill``'s outputs comes back at ``(h, w)``, composited: known pixels are ``image``'s.
    """
    size = tuple(image.shape[-2:])
    work = working_size(*size, side)
    if work == size:
        return [composite(image, out, mask) for out in fill(image, mask)]
    small = F.interpolate(image, work, mode="bicubic", antialias=True, align_corners=False)
    small_mask = F.adaptive_max_pool2d(mask, work)
    outputs = fill(small.clamp(-1.0, 1.0), small_mask)
    return [
        composite(image, F.interpolate(out, size, mode="bicubic", align_corners=False), mask)
        for out in outputs
    ]


def fill_boxes(
    fill: Fill,
    image: torch.Tensor,
    mask: torch.Tensor,
    boxes: Sequence[Box],
    sides: Sequence[int | None],
) -> list[torch.Tensor]:
    """Each of ``fill``'s outputs at full size ``(1, 3, H, W)``: ``image`` with every box filled.

    ``boxes`` (disjoint, :func:`context_boxes`) are filled one at a time by :func:`fill_box`,
    each at its working side in ``sides``; outside them the outputs are ``image``'s own values.
    """
    outputs: list[torch.Tensor] = []
    for box, side in zip(boxes, sides, strict=True):
        rows, cols = box.slices
        filled = fill_box(fill, image[..., rows, cols], mask[..., rows, cols], side)
        if not outputs:
            outputs = [image.clone() for _ in filled]
        for out, part in zip(outputs, filled, strict=True):
            out[..., rows, cols] = part
    return outputs or [image.clone()]


def fill_crops(
    fill: Fill,
    pixels: np.ndarray,
    hole: np.ndarray,
    boxes: Sequence[Box],
    sides: Sequence[int | None] | None = None,
) -> np.ndarray:
    """``crop`` on arrays: uint8 ``(H, W, 3)`` with each box's holes filled by ``fill``'s first output.

    Each box is filled by :func:`fill_box` at its working side in ``sides``
    (default: :func:`crop_side`'s).
    Only the boxes are converted to tensors, so a 12-megapixel photo with one hole costs
    the box's floats, not the photo's. Known pixels are ``pixels``' own, bit for bit.
    """
    out = pixels.copy()
    if sides is None:
        sides = [crop_side(box, hole) for box in boxes]
    for box, side in zip(boxes, sides, strict=True):
        part, part_hole = pixels[box.slices], hole[box.slices]
        filled = fill_box(fill, image_to_tensor(part), mask_to_tensor(part_hole), side)[0]
        out[box.slices] = np.where(part_hole[..., None], tensor_to_image(filled)[0], part)
    return out


@dataclass
class BoxAttention:
    """The contextual attention of one box's fill: what ``fill --attention`` draws under ``crop``.

    ``box``: where it is in the image; ``work_filled``: uint8 ``(h, w, 3)``, the box's fill at
    its working size; ``offsets``: ``(2, h/4, w/4)`` (dy, dx) in feature pixels;
    ``work_hole``: bool ``(h, w)``.
    """

    box: Box
    work_filled: np.ndarray
    offsets: np.ndarray
    work_hole: np.ndarray


def fill_method_crops(
    method: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    pixels: np.ndarray,
    hole: np.ndarray,
    boxes: Sequence[Box],
    attention: bool = False,
    sides: Sequence[int | None] | None = None,
) -> tuple[np.ndarray, BoxAttention | None]:
    """``crop`` with an inpainting method (:mod:`inpaintkit.methods`): the filled uint8 ``(H, W, 3)``.

    ``sides``: each box's working side, as :func:`fill_crops` takes them (a plan's
    ``HDPlan.sides``, so they are not measured again). With ``attention`` (a method with ``fill_with_offsets``), also the attention of the box
    with the most working pixels, the one whose picture says most; ``None`` without it.
    """
    largest: list[BoxAttention] = []
    filling = iter(boxes)  # fill_crops fills the boxes in order, one call each

    def fill(image: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        box = next(filling)
        if not attention:
            return [method(image, mask)]
        filled, offsets = method.fill_with_offsets(image, mask)  # type: ignore[attr-defined]
        if offsets is not None and (not largest or mask.numel() > largest[0].work_hole.size):
            largest[:] = [
                BoxAttention(
                    box,
                    tensor_to_image(filled)[0],
                    offsets[0].cpu().numpy(),
                    mask[0, 0].cpu().numpy() > 0.5,
                )
            ]
        return [filled]

    return fill_crops(fill, pixels, hole, boxes, sides), largest[0] if largest else None
