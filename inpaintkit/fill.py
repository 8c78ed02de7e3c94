"""Fill the holes of image files: pairing with mask files, batching, resumable output.

The workflow behind ``inpaintkit fill``. :func:`pair_files` pairs each image with its mask
(``photos/sub/a.jpg`` ↔ ``masks/sub/a.png`` or ``masks/sub/a_mask.png``, the convention of
LaMa and IOPaint; :mod:`inpaintkit.pairing`), :func:`fill_files` decodes them in background threads, groups same-size
images into batches for the inpainting method (:mod:`inpaintkit.methods`), and encodes and
writes the results in background threads through :func:`inpaintkit.io.atomic_write`.

File-side guarantees: the output has the input's mode (L, LA, RGB, RGBA; palette becomes RGB,
or RGBA when it has a transparent colour,
16-bit and float grey become 8-bit L, other modes RGB), alpha is copied as is, EXIF orientation is
applied (outputs are stored upright without EXIF), and every known pixel is copied bit-exactly
(lossless formats keep it so on disk). A bad file is reported in one line and the run goes on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from scipy.ndimage import distance_transform_edt

from inpaintkit.distributed import Distributed
from inpaintkit.hd_strategy import (
    DEFAULT_STRATEGY,
    BoxAttention,
    HDPlan,
    StrategyError,
    fill_method_crops,
    plan_image,
    resize_limit,
    work_bound,
    working_size,
)
from inpaintkit.io import (
    IMAGE_SUFFIXES,
    ImageReadError,
    atomic_write,
    open_image,
    read_mask,
    to_rgb8,
)
from inpaintkit.memory import MemoryBudgetError, check_fill, default_budget
from inpaintkit.methods import AttentionMethod, InpaintMethod
from inpaintkit.model.visualize import attended_overlay, flow_to_color
from inpaintkit.pairing import PairingError, pair_masks
from inpaintkit.sharding import Shard, all_gather_json, interleave
from inpaintkit.tensors import image_to_tensor, mask_to_tensor, tensor_to_image

#: ``--format`` choices -> Pillow format name.
OUTPUT_FORMATS = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "bmp": "BMP",
    "tif": "TIFF",
    "tiff": "TIFF",
}

#: Encoder settings per Pillow format: JPEG at high quality without chroma subsampling; the
#: others lossless, so known pixels stay bit-exact on disk.
SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "PNG": {"compress_level": 6},
    "WEBP": {"lossless": True, "quality": 100},
    "BMP": {},
    "TIFF": {"compression": "tiff_lzw"},
}


class FillError(ValueError):
    """The run as a whole cannot start (no images, an option that does not apply, ...)."""


class FileError(ValueError):
    """One file cannot be filled; the message says why in one line."""


@dataclass
class FillOptions:
    """How masks are read and outputs written (the ``inpaintkit fill`` options)."""

    invert_masks: bool = False  # black = hole instead of white = hole
    dilate: int = 0  # grow every hole by this many pixels (Euclidean disk of that radius)
    # Nearest-neighbour resize a mask of the wrong size instead of failing that file.
    resize_masks: bool = False
    max_size: int | None = None  # inpaint at a working size whose longer side is at most this
    # How a large photo is filled (inpaintkit.hd_strategy): auto, original, resize or crop.
    hd_strategy: str = DEFAULT_STRATEGY
    format: str | None = None  # output format (a key of OUTPUT_FORMATS); None = the input's
    overwrite: bool = False  # redo outputs that already exist
    batch_size: int = 4  # images of the same working size inpainted together
    workers: int = 2  # threads decoding and (separately) encoding files
    attention_dir: Path | None = None  # write attention pictures here (methods with offsets only)
    # Bytes one image's fill may need (inpaintkit.memory's estimate from its header); an image
    # over it fails with the size and the option that allows it. None: memory.default_budget().
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        if self.dilate < 0:
            raise FillError(f"dilate must be >= 0, got {self.dilate}")
        if self.max_size is not None and self.max_size < 8:
            raise FillError(f"max size must be at least 8 pixels, got {self.max_size}")
        try:
            resize_limit(self.hd_strategy, self.max_size)
        except StrategyError as err:
            raise FillError(str(err)) from None
        if self.format is not None and self.format.lower() not in OUTPUT_FORMATS:
            raise FillError(
                f"unknown output format {self.format!r}; choose from {', '.join(OUTPUT_FORMATS)}"
            )
        if self.batch_size < 1 or self.workers < 1:
            raise FillError("batch size and workers must be at least 1")


@dataclass
class FillJob:
    """One image to fill: where it comes from, its mask (None if unpaired), where it goes."""

    image: Path
    mask: Path | None
    output: Path
    relative: Path  # the image's path relative to IMAGES (its name when IMAGES is a file)
    problem: str | None = None  # why it cannot be filled, found while pairing


@dataclass
class FillSummary:
    """What a run did. ``failures`` holds ``(image path, one-line reason)``."""

    filled: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    # Stopped by KeyboardInterrupt (SIGINT); the outputs written are complete.
    interrupted: bool = False
    total: int = 0  # jobs the run was given (under torchrun: the whole job's, summed over ranks)

    @classmethod
    def combine(cls, parts: Iterable[dict]) -> FillSummary:
        """One summary from the ``asdict`` of each rank's: counts summed, failures in rank order."""
        combined = cls()
        for part in parts:
            combined.filled += part["filled"]
            combined.skipped += part["skipped"]
            combined.failures.extend((image, reason) for image, reason in part["failures"])
            combined.interrupted |= part["interrupted"]
            combined.total += part["total"]
        return combined

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def done(self) -> int:
        """Outputs that exist: filled by this run or skipped as already done."""
        return self.filled + self.skipped

    def __str__(self) -> str:
        return f"filled {self.filled}, skipped {self.skipped} (already done), failed {self.failed}"


# --------------------------------------------------------------------------- pairing


def output_path(relative: Path, output: Path, format: str | None, single_file: bool) -> Path:
    """Where the image at ``relative`` (under IMAGES) is written.

    With a single input file, an ``output`` that has an image suffix is the output file itself;
    otherwise ``output`` is a folder mirroring IMAGES. ``format`` replaces the suffix.
    """
    if single_file and output.suffix.lower() in IMAGE_SUFFIXES:
        target = output
    else:
        target = output / relative
    return target.with_suffix(f".{format.lower()}") if format else target


def pair_files(
    images: str | os.PathLike,
    masks: str | os.PathLike,
    output: str | os.PathLike,
    format: str | None = None,
    attention_dir: str | os.PathLike | None = None,
) -> list[FillJob]:
    """Pair every image below ``images`` (or the one file) with its mask: one job each.

    The pairing is :func:`inpaintkit.pairing.pair_masks`: ``masks`` is either one file used
    for every image, or a folder searched at the image's relative sub-folder for ``<stem>.*``
    and ``<stem>_mask.*``; exactly one candidate must exist, none or several make a job with a
    ``problem``. Files inside ``output`` or ``attention_dir`` are not inputs (so a re-run does
    not fill its own outputs), and when images and masks share a folder, files serving as
    masks are not filled themselves.
    """
    images, output = Path(images), Path(output)
    try:
        pairs = pair_masks(
            images, masks, exclude=(output if output.is_dir() else None, attention_dir)
        )
    except PairingError as err:
        raise FillError(str(err)) from None
    single = images.is_file()
    return [
        FillJob(
            pair.image,
            pair.mask,
            output_path(pair.relative, output, format, single),
            pair.relative,
            pair.problem,
        )
        for pair in pairs
    ]


def shard_jobs(jobs: list[FillJob], shard: Shard | None) -> list[FillJob]:
    """The jobs of ``shard`` of a job array (every job without one), in order.

    A job belongs to the shard that owns its image's relative path (:meth:`Shard.owns`), so
    the split does not depend on which outputs exist: a re-run of a shard is the same shard.
    """
    return jobs if shard is None else [j for j in jobs if shard.owns(j.relative.as_posix())]


# --------------------------------------------------------------------------- masks and sizes


def dilate_mask(hole: np.ndarray, radius: int) -> np.ndarray:
    """Grow a bool ``(H, W)`` hole mask by a disk of ``radius`` pixels.

    A pixel becomes a hole when its Euclidean distance to a hole pixel is at most ``radius``;
    the distance transform makes this cost the same for any radius.
    """
    if radius <= 0 or not hole.any():
        return hole.copy()
    return distance_transform_edt(~hole) <= radius


def header_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` after EXIF orientation from the file header alone, or None if unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            # Orientations 5-8 rotate by 90 degrees: exif_transpose swaps the sides.
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
            return height, width
    # A decompression bomb is refused with its one-line reason when the file is decoded.
    except (OSError, ValueError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError):
        return None


# --------------------------------------------------------------------------- decoding


@dataclass
class DecodedImage:
    """An image ready to inpaint, and what is needed to write it back in its own mode."""

    job: FillJob
    pixels: np.ndarray  # uint8 (H, W, 3): the colour channels that are filled
    alpha: np.ndarray | None  # uint8 (H, W), copied to the output unchanged
    mode: str  # output mode: "L", "LA", "RGB" or "RGBA"
    hole: np.ndarray  # bool (H, W), True = hole, at full resolution
    work_pixels: np.ndarray  # uint8 (h, w, 3) at the working resolution
    work_hole: np.ndarray  # bool (h, w)
    icc_profile: bytes | None
    # How it is filled; under crop, work_pixels and work_hole are pixels and hole themselves.
    plan: HDPlan = field(default_factory=lambda: HDPlan("original"))


def split_channels(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, str]:
    """A Pillow image -> ``(uint8 RGB (H, W, 3), uint8 alpha (H, W) or None, output mode)``.

    The RGB of RGBA is the stored colour (not flattened) so known pixels survive unchanged.
    A palette image with a transparent colour becomes RGBA, its transparency kept as alpha.
    """
    if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode in ("L", "LA"):
        data = np.asarray(image)
        gray = data if image.mode == "L" else data[..., 0]
        alpha = None if image.mode == "L" else np.ascontiguousarray(data[..., 1])
        return np.repeat(gray[..., None], 3, axis=2), alpha, image.mode
    if image.mode in ("RGB", "RGBA"):
        data = np.asarray(image)
        alpha = np.ascontiguousarray(data[..., 3]) if image.mode == "RGBA" else None
        return np.ascontiguousarray(data[..., :3]), alpha, image.mode
    # 1-bit, 16-bit and float grey stay grey; palette, CMYK, YCbCr, ... become RGB.
    mode = "L" if image.mode in ("1", "I", "F") or image.mode.startswith("I;16") else "RGB"
    return to_rgb8(image), None, mode


def _resize(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize a uint8 ``(H, W)`` or ``(H, W, 3)`` array to ``size = (h, w)``."""
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))


def _decode(job: FillJob, options: FillOptions) -> DecodedImage:
    """Read the image and its mask; raise FileError with a one-line reason."""
    assert job.mask is not None
    try:
        image = open_image(job.image)
    except ImageReadError as err:
        raise FileError(str(err)) from None
    pixels, alpha, mode = split_channels(image)
    try:
        hole = read_mask(job.mask, invert=options.invert_masks)
    except ImageReadError as err:
        raise FileError(f"mask {job.mask}: {err}") from None
    height, width = pixels.shape[:2]
    if hole.shape != (height, width):
        if not options.resize_masks:
            raise FileError(
                f"mask {job.mask} is {hole.shape[1]}x{hole.shape[0]} but the image is "
                f"{width}x{height} (pass --resize-masks to resize masks)"
            )
        hole = _resize(hole.astype(np.uint8) * 255, (height, width), Image.Resampling.NEAREST) > 127
    hole = dilate_mask(hole, options.dilate)
    plan = plan_image(options.hd_strategy, hole, options.max_size)
    work_pixels, work_hole = (
        (pixels, hole) if plan.strategy == "crop" else to_working(pixels, hole, plan.limit)
    )
    return DecodedImage(
        job,
        pixels,
        alpha,
        mode,
        hole,
        work_pixels,
        work_hole,
        image.info.get("icc_profile"),
        plan,
    )


def to_working(
    pixels: np.ndarray, hole: np.ndarray, max_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 (h, w, 3), bool (h, w))``: an image and its hole at :func:`working_size`.

    Returned as is when no downscaling is needed. The image is downscaled with LANCZOS; a
    working pixel is a hole if any full-resolution pixel under it is, so the upsampled fill
    (:func:`paste_fill`) covers every full-resolution hole pixel.
    """
    size = working_size(*hole.shape, max_size)
    if size == hole.shape:
        return pixels, hole
    work_pixels = _resize(pixels, size, Image.Resampling.LANCZOS)
    work_hole = _resize(hole.astype(np.uint8) * 255, size, Image.Resampling.BOX) > 0
    return work_pixels, work_hole


# --------------------------------------------------------------------------- encoding


def merge_fill(decoded: DecodedImage, work_filled: np.ndarray) -> Image.Image:
    """Composite a working-resolution fill ``uint8 (h, w, 3)`` into the full-resolution original.

    Known pixels (and alpha) come from the original, bit for bit; hole pixels from the fill,
    upsampled (bicubic) when the working resolution is smaller, and reduced to grey (Pillow's
    ITU-R 601 luma) for grey outputs.
    """
    out = paste_fill(decoded.pixels, decoded.hole, work_filled)
    if decoded.mode in ("L", "LA"):
        filled_gray = np.asarray(Image.fromarray(out).convert("L"))
        out = np.where(decoded.hole, filled_gray, decoded.pixels[..., 0])
    if decoded.alpha is not None:
        out = np.dstack([out, decoded.alpha])
    return Image.fromarray(np.ascontiguousarray(out), decoded.mode)


def paste_fill(pixels: np.ndarray, hole: np.ndarray, work_filled: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)``: ``pixels`` with its ``hole`` taken from a working-resolution fill.

    ``work_filled`` (uint8 ``(h, w, 3)``, from :func:`to_working`'s inputs) is upsampled
    bicubically when smaller; known pixels stay ``pixels``' own, bit for bit.
    """
    if work_filled.shape[:2] != hole.shape:
        work_filled = _resize(work_filled, hole.shape, Image.Resampling.BICUBIC)
    return np.where(hole[..., None], work_filled, pixels)


def attention_pictures(
    work_filled: np.ndarray, offsets: np.ndarray, work_hole: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The two attention pictures of a fill, uint8 ``(h, w, 3)`` at the working resolution.

    ``(flow, overlay)``: the offsets ``(2, h/4, w/4)`` colour-coded as optical flow (paper
    fig. 4, nearest-upscaled to the image) and appendix C's attended-region overlay.
    """
    colors = flow_to_color(offsets[None])[0]
    flow = _resize(np.ascontiguousarray(colors), work_filled.shape[:2], Image.Resampling.NEAREST)
    return flow, attended_overlay(work_filled, offsets, work_hole)


def save_image(image: Image.Image, path: Path, icc_profile: bytes | None = None) -> None:
    """Write ``image`` atomically in the format its suffix names (see SAVE_OPTIONS)."""
    fmt = OUTPUT_FORMATS.get(path.suffix.lower().lstrip("."))
    if fmt is None:
        raise FileError(f"cannot write {path.suffix!r} files; pass --format png")
    if fmt == "JPEG" and image.mode in ("LA", "RGBA"):
        raise FileError(
            f"JPEG cannot keep the alpha channel of this {image.mode} image; pass --format png"
        )
    options = dict(SAVE_OPTIONS[fmt])
    if icc_profile and fmt != "BMP":
        options["icc_profile"] = icc_profile
    try:
        with atomic_write(path) as tmp:
            image.save(tmp, format=fmt, **options)
    except (OSError, ValueError, KeyError) as err:
        raise FileError(f"cannot write {path} ({err or type(err).__name__})") from None


def attention_paths(relative: Path, attention_dir: Path) -> tuple[Path, Path]:
    """The attention-map and attended-overlay PNGs for the image at ``relative``."""
    base = attention_dir / relative.with_suffix("")
    return base.with_name(base.name + "_attention.png"), base.with_name(base.name + "_overlay.png")


def _encode(
    decoded: DecodedImage,
    work_filled: np.ndarray,
    offsets: np.ndarray | None,
    attention_dir: Path | None,
    box: BoxAttention | None = None,
) -> None:
    """Write the fill and, into ``attention_dir``, the pictures of ``offsets`` (or, under
    ``crop``, of the largest box's attention ``box``, drawn over that box's working fill)."""
    save_image(merge_fill(decoded, work_filled), decoded.job.output, decoded.icc_profile)
    if box is not None:
        work_filled, offsets, work_hole = box.work_filled, box.offsets, box.work_hole
    else:
        work_hole = decoded.work_hole
    if attention_dir is not None and offsets is not None:
        flow_path, overlay_path = attention_paths(decoded.job.relative, attention_dir)
        flow, overlay = attention_pictures(work_filled, offsets, work_hole)
        save_image(Image.fromarray(flow), flow_path)
        save_image(Image.fromarray(overlay), overlay_path)


# --------------------------------------------------------------------------- planning


@dataclass
class FillPlan:
    """What a run will do with its jobs, decided before any image is decoded."""

    failed: list[tuple[FillJob, str]]  # jobs pairing could not serve, with its reason, in job order
    skipped: list[FillJob]  # outputs that exist already (and are not to be overwritten)
    # To fill: same working sizes together (from the file headers), then by path.
    todo: list[FillJob]

    def __len__(self) -> int:
        return len(self.failed) + len(self.skipped) + len(self.todo)

    def part(self, rank: int, world: int) -> FillPlan:
        """Rank ``rank``'s share of every list (:func:`inpaintkit.sharding.interleave`).

        The failures and skips are shared out too, so the ranks' summaries add up to the
        single process's.
        """
        return FillPlan(
            *(interleave(items, rank, world) for items in (self.failed, self.skipped, self.todo))
        )


def plan_fill(jobs: list[FillJob], options: FillOptions) -> FillPlan:
    """Sort ``jobs`` into failures, skips and work, and order the work (reads file headers only).

    Header sizes only order the work so that same-size images arrive together; the batches
    themselves are formed from the decoded sizes.
    """
    plan = FillPlan(failed=[], skipped=[], todo=[])
    for job in jobs:
        if job.problem is not None:
            plan.failed.append((job, job.problem))
        elif job.output.exists() and not options.overwrite:
            plan.skipped.append(job)
        else:
            plan.todo.append(job)

    def order(job: FillJob) -> tuple[tuple[int, int], str]:
        size = header_size(job.image) or (0, 0)
        return work_bound(size, options.hd_strategy, options.max_size), str(job.relative)

    plan.todo.sort(key=order)
    return plan


# --------------------------------------------------------------------------- the run

T = TypeVar("T")
R = TypeVar("R")


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], depth: int
) -> Iterator[Future[R]]:
    """Submit ``fn(item)`` ahead of the consumer, at most ``depth`` in flight, yield in order.

    The bound keeps memory flat: decoding runs ahead of the network by ``depth`` files only.
    """
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


def fill_arrays(
    method: InpaintMethod,
    pixels: Sequence[np.ndarray],
    holes: Sequence[np.ndarray],
    offsets: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inpaint same-size images with ``method`` as one batch, from arrays to arrays.

    ``pixels``: uint8 ``(H, W, 3)`` each; ``holes``: bool ``(H, W)``, True = hole. Returns
    uint8 ``(N, H, W, 3)`` and, with ``offsets`` (an :class:`AttentionMethod` only), the
    attention offsets ``(N, 2, h, w)`` as a numpy array, else ``None``.
    """
    images = image_to_tensor(np.stack(pixels))
    masks = mask_to_tensor(np.stack(holes))
    if offsets:
        if not isinstance(method, AttentionMethod):
            raise TypeError(f"{type(method).__name__} computes no attention offsets")
        filled, flows = method.fill_with_offsets(images, masks)
    else:
        filled, flows = method(images, masks), None
    return tensor_to_image(filled), None if flows is None else flows.cpu().numpy()


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


class FillPipeline:
    """One running fill: decode threads ahead of the method, encode threads behind it, a progress bar.

    :meth:`run` takes a :class:`FillPlan` and returns the :class:`FillSummary`. Images go
    through in the plan's order: decoded up to ``depth`` files ahead, batched by working size
    (up to ``options.batch_size``), inpainted, and written in the background.
    """

    def __init__(
        self,
        method: InpaintMethod,
        options: FillOptions,
        console: Console,
        progress: bool,
        total: int,
    ) -> None:
        self.method = method
        # The method's attention offsets, when pictures of them are asked for.
        self.attention = (
            method
            if options.attention_dir is not None and isinstance(method, AttentionMethod)
            else None
        )
        self.options = options
        self.summary = FillSummary()
        self.depth = options.batch_size + 2 * options.workers
        try:
            self.budget = options.memory_budget or default_budget()
        except MemoryBudgetError as err:
            raise FillError(str(err)) from None
        self.reader = ThreadPoolExecutor(options.workers, "decode")
        self.writer = ThreadPoolExecutor(options.workers, "encode")
        self.writes: deque[tuple[FillJob, Future[None]]] = deque()  # submitted, not yet counted
        self.submitted: list[Future[None]] = []  # every write, for the exact count on Ctrl-C
        self.bar = Progress(
            TextColumn("filling"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not progress or not console.is_terminal,  # no bar in logs
            transient=True,
        )
        self.task = self.bar.add_task("fill", total=total)

    def run(self, plan: FillPlan) -> FillSummary:
        """Report the plan's failures and skips, fill its work; stop cleanly on KeyboardInterrupt."""
        self.summary.total = len(plan)
        for job, reason in plan.failed:
            self.fail(job, reason)
        for _ in plan.skipped:
            self.summary.skipped += 1
            self.bar.advance(self.task)
        with self.bar, self.reader, self.writer:
            try:
                self._fill(plan.todo)
            except BaseException as err:
                interrupted = isinstance(err, KeyboardInterrupt)
                self._shut_down(interrupted)
                if not interrupted:
                    raise
        return self.summary

    def fail(self, job: FillJob, reason: str) -> None:
        """Count ``job`` as failed and say why in one line."""
        self.summary.failures.append((str(job.image), one_line(reason)))
        self.bar.console.print(
            f"error: {job.image}: {one_line(reason)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        self.bar.advance(self.task)

    def _fill(self, todo: list[FillJob]) -> None:
        """Decode ahead, batch same-size images, inpaint, write behind; wait for the last write."""
        batch: list[DecodedImage] = []
        for future in _ordered_map(self.reader, self._decode, todo, self.depth):
            decoded = future.result()
            if isinstance(decoded, tuple):
                self.fail(*decoded)
                continue
            if decoded.plan.strategy == "crop":  # boxes of their own sizes: never batched
                self._inpaint_crops(decoded)
                continue
            if batch and decoded.work_pixels.shape != batch[0].work_pixels.shape:
                self._inpaint(batch)
                batch = []
            batch.append(decoded)
            if len(batch) == self.options.batch_size:
                self._inpaint(batch)
                batch = []
        if batch:
            self._inpaint(batch)
        self._collect(0)

    def _decode(self, job: FillJob) -> DecodedImage | tuple[FillJob, str]:
        """Runs in a decode thread: the decoded image, or ``(job, one-line reason)``."""
        try:
            # Refused from the header, before any pixel is decoded (inpaintkit.memory).
            if (size := header_size(job.image)) is not None:
                # The mask is not read yet: the largest working size its strategy may use.
                work = work_bound(size, self.options.hd_strategy, self.options.max_size)
                device = str(getattr(self.method, "device", "cpu"))
                check_fill(size, work, self.method.name, self.budget, device=device)
            return _decode(job, self.options)
        except (FileError, MemoryBudgetError) as err:
            return job, str(err)
        except (OSError, ValueError) as err:  # e.g. an image mode Pillow cannot convert
            return job, f"cannot read ({type(err).__name__}: {err})"

    def _inpaint(self, batch: list[DecodedImage]) -> None:
        """Inpaint one same-size batch and hand each result to an encode thread."""
        try:
            pictures, flows = fill_arrays(
                self.method,
                [d.work_pixels for d in batch],
                [d.work_hole for d in batch],
                offsets=self.attention is not None,
            )
        except Exception as err:  # noqa: BLE001 - one bad image must not stop the run
            if len(batch) > 1:
                # Retry one by one so only the image that caused it (e.g. an all-hole mask
                # PatchMatch cannot fill) fails.
                for d in batch:
                    self._inpaint([d])
            else:
                self.fail(batch[0].job, f"inpainting failed: {type(err).__name__}: {err}")
            return
        if flows is None:
            flows = [None] * len(batch)
        for d, picture, flow in zip(batch, pictures, flows, strict=True):
            self._write(d, picture, flow)
        self._collect(self.depth)

    def _inpaint_crops(self, decoded: DecodedImage) -> None:
        """Fill one image box by box (``crop``) and hand it to an encode thread."""
        try:
            filled, attention = fill_method_crops(
                self.method,
                decoded.pixels,
                decoded.hole,
                decoded.plan.boxes,
                attention=self.attention is not None,
                sides=decoded.plan.sides,
            )
        except Exception as err:  # noqa: BLE001 - one bad image must not stop the run
            self.fail(decoded.job, f"inpainting failed: {type(err).__name__}: {err}")
            return
        self._write(decoded, filled, None, attention)
        self._collect(self.depth)

    def _write(
        self,
        decoded: DecodedImage,
        filled: np.ndarray,
        offsets: np.ndarray | None,
        box: BoxAttention | None = None,
    ) -> None:
        """Hand one result to an encode thread (:func:`_encode`) and keep its future."""
        future = self.writer.submit(
            _encode, decoded, filled, offsets, self.options.attention_dir, box
        )
        self.submitted.append(future)
        self.writes.append((decoded.job, future))

    def _collect(self, limit: int) -> None:
        """Count finished writes, oldest first, until at most ``limit`` are outstanding."""
        while len(self.writes) > limit:
            job, future = self.writes.popleft()
            try:
                future.result()
            except FileError as err:
                self.fail(job, str(err))
            except KeyboardInterrupt:
                self.writes.appendleft((job, future))  # not counted yet: _shut_down does
                raise
            else:
                self.summary.filled += 1
                self.bar.advance(self.task)

    def _shut_down(self, interrupted: bool) -> None:
        """Stop the threads after an exception; on Ctrl-C finish and count the writes under way."""
        self.reader.shutdown(wait=False, cancel_futures=True)
        # On Ctrl-C the images already inpainted are still written: that work is done.
        self.writer.shutdown(wait=True, cancel_futures=not interrupted)
        if not interrupted:
            return
        self.summary.interrupted = True
        for job, future in self.writes:
            if isinstance(future.exception(), FileError):
                self.summary.failures.append((str(job.image), one_line(str(future.exception()))))
        # Counted from every write rather than the running tally: a Ctrl-C that lands between
        # a write's end and its tally in _collect must not leave a written image uncounted.
        self.summary.filled = sum(
            1 for f in self.submitted if not f.cancelled() and f.exception() is None
        )


def fill_files(
    jobs: list[FillJob],
    method: InpaintMethod,
    options: FillOptions | None = None,
    console: Console | None = None,
    progress: bool = True,
    ranks: Distributed | None = None,
) -> FillSummary:
    """Fill every job with ``method``; report each bad file in one line and carry on.

    Same-size images (at the working resolution) are batched, up to ``options.batch_size``;
    decoding runs ``options.workers`` threads ahead of the method and encoding runs behind it.
    Existing outputs are skipped unless ``options.overwrite``. Returns the counts. A
    KeyboardInterrupt (SIGINT, Ctrl-C) stops the run: the images already inpainted are still
    written (each output atomically), then the summary comes back with ``interrupted=True``;
    a re-run skips what was done. ``options.attention_dir`` needs an :class:`AttentionMethod`.

    ``ranks``: this process's place in a torchrun job, which every rank calls with the same
    ``jobs``. Each rank fills its interleaved share of the plan (:meth:`FillPlan.part`) and
    every rank gets back the whole job's summary (a collective at the end).
    """
    options = options or FillOptions()
    if options.attention_dir is not None and not isinstance(method, AttentionMethod):
        raise FillError(
            f"--attention needs --method deepfill (the {method.name} method has no attention)"
        )
    ranks = ranks or Distributed()
    plan = plan_fill(jobs, options)
    if ranks.world > 1:
        # No rank writes before every rank has planned: an output written meanwhile would be
        # skipped by a slower rank's plan, and the ranks' interleaves would no longer agree.
        ranks.barrier()
        plan = plan.part(ranks.rank, ranks.world)
    pipeline = FillPipeline(
        method, options, console or Console(stderr=True), progress, total=len(plan)
    )
    summary = pipeline.run(plan)
    if ranks.world == 1:
        return summary
    # Interrupted ranks take part too, so that no rank waits for one that left.
    return FillSummary.combine(all_gather_json(ranks, asdict(summary)))
