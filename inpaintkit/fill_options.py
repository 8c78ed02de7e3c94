"""What a ``fill`` run is asked to do and what it did: its options, one job per image, the summary.

:class:`FillOptions` (the ``inpaintkit fill`` options), :class:`FillJob` (an image, its mask and
its output), :class:`FillSummary` and :class:`FillError`; shared by the file side
(:mod:`inpaintkit.fill_images`), the planning (:mod:`inpaintkit.fill_plan`) and the run
(:mod:`inpaintkit.fill`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from inpaintkit.hd_strategy import DEFAULT_STRATEGY, StrategyError, resize_limit

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


class FillError(ValueError):
    """The run as a whole cannot start (no images, an option that does not apply, ...)."""


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
