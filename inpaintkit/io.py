"""Reading images and masks from files, and writing any output atomically.

Images come in as uint8 RGB ``(H, W, 3)`` arrays with EXIF orientation applied; masks as
bool ``(H, W)`` arrays with ``True = hole``. Every file inpaintkit writes goes through
:func:`atomic_write`, so an interrupted run never leaves a truncated output behind.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

#: Image file suffixes inpaintkit reads (lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

#: Default ceiling on decoded pixels; larger files are refused as decompression bombs.
#: 16384 x 16384 is more than any camera produces. Pixels are not bytes: filling an image this
#: large can need tens of GB, which inpaintkit.memory's budget refuses from the header.
DEFAULT_MAX_PIXELS = 16384 * 16384


class ImageReadError(ValueError):
    """A file could not be read as an image (corrupt, truncated, too large, wrong type)."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary file lives in the same folder (so the rename is atomic on POSIX) and keeps
    the suffix of ``path`` (so writers that pick a format from the suffix still work). On any
    exception it is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A SIGKILL between mkstemp and the rename leaves a temporary behind; the next write of the
    # same target sweeps it away (one writer per target is assumed, as everywhere here). The
    # eight '?' are mkstemp's random part: exact length, so ".a.b.png"'s temporaries never
    # match those of "a.png".
    pattern = f".{glob.escape(path.stem)}.????????.tmp{glob.escape(path.suffix)}"
    for stale in path.parent.glob(pattern):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the output the permissions a plain open() would.
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_temporary(path: str | os.PathLike) -> bool:
    """True for the names :func:`atomic_write` gives its temporary files."""
    name = Path(path).name
    return name.startswith(".") and ".tmp" in name


def open_image(
    path: str | os.PathLike | BinaryIO,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> Image.Image:
    """Open and fully decode an image, EXIF orientation applied.

    With ``draft_size``, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (in the DCT, several
    times faster) as long as both sides stay at least ``draft_size``; for callers that
    downscale anyway. Raises :class:`ImageReadError` with a one-line reason for anything unreadable, including
    images of more than ``max_pixels`` pixels (``None`` disables the check). ``path`` may also
    be a binary file object (e.g. ``io.BytesIO`` of an upload), checked the same way.
    """
    source = path if hasattr(path, "read") else Path(path)
    try:
        with Image.open(source) as image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ImageReadError(
                    f"{image.width}x{image.height} image exceeds the {max_pixels}-pixel limit "
                    "(possible decompression bomb)"
                )
            if draft_size is not None and image.format == "JPEG":
                image.draft(image.mode, (draft_size, draft_size))
            image.load()
            return ImageOps.exif_transpose(image)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError("no such file") from None
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"refused as a decompression bomb: {err}") from None
    except (OSError, ValueError, SyntaxError) as err:
        # Pillow names a file object by its repr ("<_io.BytesIO object at 0x...>"): drop it.
        reason = (
            str(err).replace(f" {source!r}", "") if hasattr(source, "read") else str(err)
        ) or type(err).__name__
        raise ImageReadError(f"not a readable image ({reason})") from None


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> uint8 RGB ``(H, W, 3)``.

    Grayscale, palette, CMYK and YCbCr are converted by Pillow; 16-bit and 32-bit integer
    modes are scaled to 8 bits by their full range; alpha is flattened onto white, as image
    viewers show transparent areas.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        data = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(data.max()), 1.0)
        gray = np.clip(np.round(data / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        data = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.round(data * 255.0 if data.max() <= 1.0 else data), 0, 255).astype(
            np.uint8
        )
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def read_rgb(
    path: str | os.PathLike | BinaryIO, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read an image file as uint8 RGB ``(H, W, 3)`` (see :func:`open_image`, :func:`to_rgb8`)."""
    return to_rgb8(open_image(path, max_pixels))


def read_mask(
    path: str | os.PathLike | BinaryIO,
    invert: bool = False,
    threshold: int = 127,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read a mask file (or binary file object) as bool ``(H, W)``, ``True = hole``.

    White (> ``threshold``) is a hole; grey or anti-aliased edges are thresholded. With
    ``invert`` black is the hole. Colour masks are judged by their luminance; an alpha
    channel, when present, is ignored.
    """
    image = open_image(path, max_pixels)
    if image.mode in ("1", "L"):  # the usual mask: one channel, its mean is itself
        hole = np.asarray(image.convert("L")) > threshold
    else:
        rgb = to_rgb8(image.convert("RGB") if "A" in image.mode else image)
        # mean > threshold, as the integer sum > 3 * threshold: no float64 copy of a large mask.
        hole = rgb.sum(axis=2, dtype=np.uint16) > 3 * threshold
    return ~hole if invert else hole


def list_images(
    folder: str | os.PathLike, on_problem: Callable[[Path, str], None] | None = None
) -> list[Path]:
    """All image files below ``folder`` (recursively), sorted, skipping hidden and temporary files.

    Linked folders are not descended into. A symbolic link that loops (a link to itself or a
    chain back to it, or a linked folder containing the link) is skipped and, with
    ``on_problem``, reported as ``on_problem(path, one-line reason)``, once per link.
    """
    folder = Path(folder)
    found = []
    for p in folder.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.is_symlink() and (loop := _link_loop(p)) is not None:
            if on_problem is not None:
                on_problem(p, loop)
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            found.append(p)
    return sorted(found)


def _link_loop(link: Path) -> str | None:
    """Why following the symbolic link ``link`` goes round in a circle, or None if it does not."""
    try:
        target = link.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop so
        return "symbolic link loop (the link leads back to itself), skipped"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself), skipped"
        return None  # a dangling link: not an image, as before
    if target.is_dir() and link.parent.resolve().is_relative_to(target):
        return f"symbolic link loop (it leads back to {target}, a folder it is in), skipped"
    return None
