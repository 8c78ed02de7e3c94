"""Hole masks for training and evaluation: rectangles, free-form strokes, a mix, or files.

Every mask is a bool ``(H, W)`` array, ``True = hole``, and is a pure function of
``(config, H, W, seed, index)``: it draws from its own ``numpy`` generator seeded with
``SeedSequence([seed, index])``, so mask ``i`` is the same whatever order (or worker, or
process) asks for it, and evaluation can fix one mask set for every method.

Sizes in :class:`MaskConfig` are pixels at ``reference_size x reference_size`` (256, the
paper's training size) and scale with the image: heights by ``H / reference_size``, widths by
``W / reference_size``, stroke widths and lengths by ``sqrt(H * W) / reference_size``. At
256x256 the numbers are exactly the published ones. See docs/prepare.md for the hole-area
statistics of each kind.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from inpaintkit import io
from inpaintkit.tensors import mask_to_tensor

MASK_KINDS = ("rect", "freeform", "mixed", "file")
STROKE_STYLES = ("deepfill", "thin", "medium", "thick", "varied")


@dataclass(frozen=True)
class LamaStrokePreset:
    """One of LaMa's random mask sets (Suvorov et al. 2022, ``configs/data_gen/random_*_256.yaml``).

    Each mask is either irregular strokes (probability 1 / (1 + box_probability)) or boxes
    (box_probability / (1 + box_probability)), as LaMa's mixed generator picks one kind per
    mask; masks with more than ``max_hole_fraction`` hole are redrawn (LaMa's
    ``max_tamper_area``). Pixel sizes at 256x256.
    """

    min_times: int
    max_times: int
    max_width: int
    max_angle: int
    max_len: int
    box_probability: float = 0.0
    box_margin: int = 0
    box_min_size: int = 30
    box_max_size: int = 100
    box_min_times: int = 1
    box_max_times: int = 3
    max_hole_fraction: float = 0.5


LAMA_PRESETS = {
    "thin": LamaStrokePreset(min_times=4, max_times=50, max_width=10, max_angle=4, max_len=40),
    "medium": LamaStrokePreset(
        min_times=4,
        max_times=5,
        max_width=50,
        max_angle=4,
        max_len=100,
        box_probability=0.3,
        box_margin=0,
        box_min_size=10,
        box_max_size=50,
        box_min_times=1,
        box_max_times=5,
    ),
    "thick": LamaStrokePreset(
        min_times=1,
        max_times=5,
        max_width=100,
        max_angle=4,
        max_len=200,
        box_probability=0.3,
        box_margin=10,
        box_min_size=30,
        box_max_size=150,
        box_min_times=1,
        box_max_times=3,
    ),
}


@dataclass(frozen=True)
class MaskConfig:
    """What kind of holes to draw, with sizes in pixels at ``reference_size``.

    ``kind``:

    * ``"rect"`` — the paper's training holes (section 5; the authors' released
      ``random_bbox``/``bbox2mask``): a ``rect_height x rect_width`` box whose top-left corner
      is uniform in ``[margin, size - margin - box)`` (upper end exclusive, as
      ``tf.random_uniform``), then shrunk on *each* side by an integer inset uniform in
      ``[0, max_delta // 2]`` (vertical and horizontal insets drawn separately). With the
      released values (128, 128, 32, 32, margins 0) holes are 96..128 px per side, mean area
      112^2 / 256^2 = 19.1 %.
    * ``"freeform"`` — brush strokes, ``stroke_style`` ``"deepfill"`` (the authors' later
      DeepFill v2 ``brush_stroke_mask``) or LaMa's ``"thin"``/``"medium"``/``"thick"`` sets,
      or ``"varied"``: each mask one of those four, uniformly (thin scratches to large blobs,
      as users paint and as the NVIDIA irregular-mask test set has).
    * ``"mixed"`` — ``"rect"`` with probability ``rect_probability``, else ``"freeform"``.
    * ``"file"`` — mask ``index`` is ``mask_files[index % n]`` (files, or folders searched
      recursively, in sorted order), white = hole (``invert_mask_files`` for black),
      resized with nearest neighbour when its size differs.
    """

    kind: str = "rect"
    rect_height: int = 128
    rect_width: int = 128
    max_delta_height: int = 32
    max_delta_width: int = 32
    vertical_margin: int = 0
    horizontal_margin: int = 0
    stroke_style: str = "deepfill"
    rect_probability: float = 0.5
    mask_files: tuple[str, ...] = ()
    invert_mask_files: bool = False
    reference_size: int = 256

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS:
            raise ValueError(f"mask kind must be one of {', '.join(MASK_KINDS)}, got {self.kind!r}")
        if self.stroke_style not in STROKE_STYLES:
            raise ValueError(
                f"stroke_style must be one of {', '.join(STROKE_STYLES)}, got {self.stroke_style!r}"
            )
        if not 0.0 <= self.rect_probability <= 1.0:
            raise ValueError(f"rect_probability must be in [0, 1], got {self.rect_probability}")
        if self.rect_height <= 0 or self.rect_width <= 0 or self.reference_size <= 0:
            raise ValueError("rect_height, rect_width and reference_size must be positive")
        if (
            min(
                self.max_delta_height,
                self.max_delta_width,
                self.vertical_margin,
                self.horizontal_margin,
            )
            < 0
        ):
            raise ValueError("max_delta_* and *_margin must be >= 0")
        if self.kind == "file" and not self.mask_files:
            raise ValueError("mask kind 'file' needs mask_files (files or folders)")
        # YAML gives lists; keep the dataclass hashable and immutable.
        object.__setattr__(self, "mask_files", tuple(str(p) for p in self.mask_files))


def _rng(seed: int, index: int) -> np.random.Generator:
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def random_rect_mask(
    config: MaskConfig, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """The paper's random rectangle (``random_bbox`` then ``bbox2mask``) -> bool ``(H, W)``."""
    scale_h = height / config.reference_size
    scale_w = width / config.reference_size
    box_h = min(height, max(1, round(config.rect_height * scale_h)))
    box_w = min(width, max(1, round(config.rect_width * scale_w)))
    margin_v = min(round(config.vertical_margin * scale_h), height - box_h)
    margin_h = min(round(config.horizontal_margin * scale_w), width - box_w)
    top = _uniform_exclusive(rng, margin_v, height - margin_v - box_h)
    left = _uniform_exclusive(rng, margin_h, width - margin_h - box_w)
    # The authors shrink each side by the same inset, drawn in [0, max_delta // 2].
    inset_h = int(rng.integers(0, round(config.max_delta_height * scale_h) // 2 + 1))
    inset_w = int(rng.integers(0, round(config.max_delta_width * scale_w) // 2 + 1))
    inset_h = min(inset_h, (box_h - 1) // 2)  # keep at least one hole pixel on tiny images
    inset_w = min(inset_w, (box_w - 1) // 2)
    mask = np.zeros((height, width), dtype=bool)
    mask[top + inset_h : top + box_h - inset_h, left + inset_w : left + box_w - inset_w] = True
    return mask


def _uniform_exclusive(rng: np.random.Generator, low: int, high: int) -> int:
    """Integer uniform in ``[low, high)`` like ``tf.random_uniform``; ``low`` when empty."""
    return int(rng.integers(low, high)) if high > low else low


def deepfill_stroke_mask(
    height: int, width: int, rng: np.random.Generator, reference_size: int = 256
) -> np.ndarray:
    """DeepFill v2's ``brush_stroke_mask`` (Yu et al. 2019, released code) -> bool ``(H, W)``.

    1-3 strokes of 4-11 vertices; turning angles around 2*pi/5 +- up to 2*pi/15, alternating
    sign; segment lengths ~ N(r, r // 2) clipped to [0, 2r] with r = diagonal / 8; width
    uniform in [12, 40) px at 256 (scaled); round joints; then a random horizontal and vertical
    flip. Two slips of the released code are fixed: it swapped width and height when placing
    the first vertex, and discarded the result of its flips (so they never happened).
    """
    scale = math.sqrt(height * width) / reference_size
    min_width, max_width = 12 * scale, 40 * scale
    mean_angle, angle_range = 2 * math.pi / 5, 2 * math.pi / 15
    average_radius = math.sqrt(height * height + width * width) / 8
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 4))):
        num_vertex = int(rng.integers(4, 12))
        angle_min = mean_angle - rng.uniform(0, angle_range)
        angle_max = mean_angle + rng.uniform(0, angle_range)
        angles = [
            2 * math.pi - rng.uniform(angle_min, angle_max)
            if i % 2 == 0
            else rng.uniform(angle_min, angle_max)
            for i in range(num_vertex)
        ]
        vertices = [(int(rng.integers(0, width)), int(rng.integers(0, height)))]
        for angle in angles:
            radius = float(
                np.clip(rng.normal(average_radius, average_radius // 2), 0, 2 * average_radius)
            )
            x = np.clip(vertices[-1][0] + radius * math.cos(angle), 0, width)
            y = np.clip(vertices[-1][1] + radius * math.sin(angle), 0, height)
            vertices.append((int(x), int(y)))
        stroke_width = max(1, int(rng.uniform(min_width, max_width)))
        _draw_polyline(draw, vertices, stroke_width)
    mask = np.asarray(canvas) > 0
    if rng.normal() > 0:
        mask = mask[:, ::-1]
    if rng.normal() > 0:
        mask = mask[::-1, :]
    return np.ascontiguousarray(mask)


def _draw_polyline(draw: ImageDraw.ImageDraw, vertices: list[tuple[int, int]], width: int) -> None:
    """A thick polyline with round caps and joints (a disc of diameter ``width`` at each vertex)."""
    draw.line(vertices, fill=1, width=width)
    half = width // 2
    for x, y in vertices:
        draw.ellipse((x - half, y - half, x + half, y + half), fill=1)


def lama_stroke_mask(
    preset: LamaStrokePreset,
    height: int,
    width: int,
    rng: np.random.Generator,
    reference_size: int = 256,
) -> np.ndarray:
    """One of LaMa's random masks (``make_random_irregular_mask`` / ``make_random_rectangle_mask``).

    Irregular: ``times`` in [min_times, max_times] strokes from a uniform start, each of 1-5
    segments with angle ``0.01 + randint(max_angle)`` radians (mirrored on even strokes),
    length ``10 + randint(max_len)``, width ``5 + randint(max_width)`` px at 256 (scaled),
    round caps. Boxes: sides uniform in [min, max) inside the margin. Redrawn (same generator)
    while the hole covers more than ``max_hole_fraction`` of the image, at most 100 times.
    """
    scale = math.sqrt(height * width) / reference_size
    box_share = preset.box_probability / (1.0 + preset.box_probability)
    for _ in range(100):
        if rng.uniform() < box_share:
            mask = _lama_boxes(preset, height, width, rng, scale)
        else:
            mask = _lama_irregular(preset, height, width, rng, scale)
        if mask.mean() <= preset.max_hole_fraction:
            break
    return mask


def _lama_irregular(
    preset: LamaStrokePreset, height: int, width: int, rng: np.random.Generator, scale: float
) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    max_len = max(1, round(preset.max_len * scale))
    max_width = max(1, round(preset.max_width * scale))
    for i in range(int(rng.integers(preset.min_times, preset.max_times + 1))):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(preset.max_angle))
            if i % 2 == 0:
                angle = 2 * 3.1415926 - angle
            length = 10 * scale + int(rng.integers(max_len))
            brush = max(1, round(5 * scale) + int(rng.integers(max_width)))
            end_x = int(np.clip(int(x + length * np.sin(angle)), 0, width))
            end_y = int(np.clip(int(y + length * np.cos(angle)), 0, height))
            _draw_polyline(draw, [(x, y), (end_x, end_y)], brush)
            x, y = end_x, end_y
    return np.asarray(canvas) > 0


def _lama_boxes(
    preset: LamaStrokePreset, height: int, width: int, rng: np.random.Generator, scale: float
) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    margin = round(preset.box_margin * scale)
    min_size = max(1, round(preset.box_min_size * scale))
    max_size = min(round(preset.box_max_size * scale), height - 2 * margin, width - 2 * margin)
    max_size = max(max_size, min_size + 1)
    for _ in range(int(rng.integers(preset.box_min_times, preset.box_max_times + 1))):
        box_w = min(int(rng.integers(min_size, max_size)), width - 2 * margin)
        box_h = min(int(rng.integers(min_size, max_size)), height - 2 * margin)
        left = int(rng.integers(margin, max(margin, width - margin - box_w) + 1))
        top = int(rng.integers(margin, max(margin, height - margin - box_h) + 1))
        mask[top : top + box_h, left : left + box_w] = True
    return mask


def freeform_mask(
    config: MaskConfig, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """Brush strokes of ``config.stroke_style`` -> bool ``(H, W)``."""
    style = config.stroke_style
    if style == "varied":
        style = STROKE_STYLES[int(rng.integers(4))]  # one of the four concrete styles
    if style == "deepfill":
        return deepfill_stroke_mask(height, width, rng, config.reference_size)
    return lama_stroke_mask(LAMA_PRESETS[style], height, width, rng, config.reference_size)


@functools.lru_cache(maxsize=8)
def mask_file_list(mask_files: tuple[str, ...]) -> tuple[Path, ...]:
    """Expand files and folders (recursively, sorted) into the ordered list of mask files."""
    paths: list[Path] = []
    for entry in mask_files:
        path = Path(entry)
        if path.is_dir():
            paths.extend(io.list_images(path))
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"{path}: mask file or folder does not exist")
    if not paths:
        raise ValueError(f"no mask images found in {', '.join(mask_files)}")
    return tuple(paths)


def file_mask(config: MaskConfig, height: int, width: int, index: int) -> np.ndarray:
    """Mask file ``index % n`` as bool ``(H, W)``, nearest-resized to ``H x W`` when needed."""
    files = mask_file_list(config.mask_files)
    path = files[index % len(files)]
    try:
        mask = io.read_mask(path, invert=config.invert_mask_files)
    except io.ImageReadError as err:
        raise io.ImageReadError(f"{path}: {err}") from None
    if mask.shape != (height, width):
        resized = Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST)
        mask = np.asarray(resized, dtype=bool)
    return mask


def generate_mask(config: MaskConfig, height: int, width: int, seed: int, index: int) -> np.ndarray:
    """Mask number ``index`` of the set ``(config, seed)`` at ``H x W`` -> bool ``(H, W)``, True = hole.

    Deterministic: the same arguments give the same mask in any process, in any call order.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    rng = _rng(seed, index)
    kind = config.kind
    if kind == "mixed":
        kind = "rect" if rng.uniform() < config.rect_probability else "freeform"
    if kind == "rect":
        return random_rect_mask(config, height, width, rng)
    if kind == "freeform":
        return freeform_mask(config, height, width, rng)
    return file_mask(config, height, width, index)


class MaskSampler:
    """The mask set ``(config, seed)`` at a fixed ``H x W``: ``sampler(i)`` is mask ``i``."""

    def __init__(self, config: MaskConfig, height: int, width: int, seed: int = 0) -> None:
        self.config = config
        self.height = height
        self.width = width
        self.seed = seed
        if config.kind == "file":
            mask_file_list(config.mask_files)  # fail now, not in the middle of training

    def __call__(self, index: int) -> np.ndarray:
        """Mask ``index`` as bool ``(H, W)``, True = hole."""
        return generate_mask(self.config, self.height, self.width, self.seed, index)

    def batch(self, indices) -> torch.Tensor:
        """Masks for ``indices`` (ints or a 1-D tensor) -> float ``(N, 1, H, W)`` in {0, 1}."""
        indices = [int(i) for i in indices]
        if not indices:
            return torch.zeros(0, 1, self.height, self.width)
        return mask_to_tensor(np.stack([self(i) for i in indices]))
