"""What a ``prepare`` run is asked to do: :class:`PrepareOptions`, checked as it is built.

Shared by the workflow (:mod:`inpaintkit.prepare`), the decoding of sources
(:mod:`inpaintkit.prepare_sources`) and the HDF5 storage (:mod:`inpaintkit.prepare_store`);
:class:`PrepareError` is every refusal of theirs, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from inpaintkit import io
from inpaintkit.geometry import RESIZE_MODES

STORE_MODES = ("raw", "encoded")
#: ``--encode`` formats: ``png`` and ``webp`` alone are lossless; ``jpeg:Q`` and ``webp:Q`` are
#: lossy at quality Q (1-100); ``jpeg`` alone is ``jpeg:95``.
ENCODE_FORMATS = ("png", "jpeg", "webp")
DEFAULT_JPEG_QUALITY = 95
#: Source formats whose bytes are stored as they are when no pixel needs to change.


class PrepareError(RuntimeError):
    """The run cannot go on (bad option, no readable image, incompatible partial file)."""


@dataclass(frozen=True)
class PrepareOptions:
    """Geometry, storage and split options of one ``prepare`` run.

    Geometry (applied by :func:`inpaintkit.geometry.resize_and_crop`): ``resize="shorter"``
    scales the shorter side to ``size`` and centre-crops ``size x size``; ``"fixed"`` scales to
    ``resize_to = (H, W)`` (CelebA: 315 x 256, the paper's appendix A) and centre-crops
    ``size x size`` when ``size`` is set; ``"none"`` keeps every image as it is (variable sizes
    allowed). Downscaling uses Lanczos, upscaling bicubic.

    Splits: ``val_count`` images (or ``round(val_fraction * N)``) chosen by ``seed``; or
    ``train_list``/``val_list`` files name the members (then no source folder is given).

    Storage (``store="encoded"``): a JPEG, PNG or WebP source that needs no pixel change (8-bit
    RGB, no EXIF rotation, geometry unchanged) is stored as its original bytes; any other image
    is encoded as ``encode`` says: ``"png"`` or ``"webp"`` (lossless), ``"jpeg:Q"`` or
    ``"webp:Q"`` (lossy, quality Q); ``"jpeg"`` means ``"jpeg:95"``. The value is kept in its
    canonical spelling (see :func:`parse_encode`).
    """

    size: int | None = 256
    resize: str = "shorter"
    resize_to: tuple[int, int] | None = None
    store: str = "raw"
    encode: str = "png"
    val_fraction: float = 0.0
    val_count: int | None = None
    seed: int = 0
    max_pixels: int | None = io.DEFAULT_MAX_PIXELS
    train_list: str | None = None
    val_list: str | None = None

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise PrepareError(
                f"--resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}"
            )
        if self.store not in STORE_MODES:
            raise PrepareError(
                f"--store must be one of {', '.join(STORE_MODES)}, got {self.store!r}"
            )
        fmt, quality = parse_encode(self.encode)
        object.__setattr__(self, "encode", fmt if quality is None else f"{fmt}:{quality}")
        if self.resize == "shorter" and not self.size:
            raise PrepareError("--resize shorter needs --size")
        if self.resize == "fixed" and self.resize_to is None:
            raise PrepareError("--resize fixed needs --resize-to HxW")
        if self.resize == "none" and self.size is not None:
            raise PrepareError("--resize none keeps every image's size; drop --size")
        if self.size is not None and self.size <= 0:
            raise PrepareError(f"--size must be positive, got {self.size}")
        if self.resize_to is not None:
            if self.resize != "fixed" or min(self.resize_to) <= 0:
                raise PrepareError("--resize-to HxW needs --resize fixed and positive sides")
            if self.size is not None and self.size > min(self.resize_to):
                raise PrepareError(
                    f"--size {self.size} does not fit in --resize-to {self.resize_to}"
                )
        if not 0.0 <= self.val_fraction < 1.0:
            raise PrepareError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if (self.train_list is None) != (self.val_list is None):
            raise PrepareError("give both --train-list and --val-list, or neither")

    @property
    def output_shape(self) -> tuple[int, int] | None:
        """``(H, W)`` of every stored image, or None for variable sizes."""
        if self.resize == "shorter":
            return (self.size, self.size)
        if self.resize == "fixed":
            return (self.size, self.size) if self.size else self.resize_to
        return None


def parse_encode(spec: str) -> tuple[str, int | None]:
    """``"png" | "webp" | "jpeg[:Q]" | "webp:Q"`` -> ``(format, quality or None for lossless)``."""
    fmt, _, quality = str(spec).strip().lower().partition(":")
    if fmt == "jpg":
        fmt = "jpeg"
    usage = "expected png, webp, jpeg:Q or webp:Q (Q = quality 1-100)"
    if fmt not in ENCODE_FORMATS:
        raise PrepareError(f"--encode {spec!r}: unknown format; {usage}")
    if not quality:
        return fmt, DEFAULT_JPEG_QUALITY if fmt == "jpeg" else None
    if fmt == "png":
        raise PrepareError(f"--encode {spec!r}: png is lossless and takes no quality; {usage}")
    if not quality.isdigit() or not 1 <= int(quality) <= 100:
        raise PrepareError(f"--encode {spec!r}: quality must be a whole number in 1..100")
    return fmt, int(quality)
