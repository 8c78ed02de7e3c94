"""The inputs of a ``prepare`` run, and each one decoded into what is stored.

Sources come from a folder, a file list or ``--train-list``/``--val-list``, each keyed by its
path (:func:`collect_sources`); :func:`decode_one` reads, hashes, resizes and (for
``store="encoded"``) encodes one, and :func:`decoded_stream` runs it on a process pool,
yielding results in input order so that the written file never depends on timing.
"""

from __future__ import annotations

import hashlib
import io as _bytes_io
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inpaintkit import io
from inpaintkit.geometry import resize_and_crop
from inpaintkit.prepare_options import PrepareError, PrepareOptions, parse_encode

#: Source formats whose bytes are stored as they are when no pixel needs to change.
ORIGINAL_FORMATS = ("JPEG", "PNG", "WEBP")
LIST_SUFFIXES = (".txt", ".flist", ".lst", ".list")


@dataclass(frozen=True)
class Source:
    """One input image: its key in the file (unique, ``/``-separated) and its path."""

    key: str
    path: Path


# --------------------------------------------------------------------------- inputs


def read_list(path: str | os.PathLike) -> list[Path]:
    """Paths of a file list (one per line, ``#`` comments and blank lines skipped).

    Relative paths are relative to the list's folder. Accepts the official code's ``.flist``
    (absolute paths, possibly followed by other columns, separated by whitespace).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PrepareError(f"{path}: cannot read file list ({err})") from None
    entries = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line if Path(line).exists() else line.split()[0])
        entries.append(entry if entry.is_absolute() else path.parent / entry)
    return entries


def _keys_for(paths: list[Path], root: Path | None = None) -> list[Source]:
    """Key every path by its path relative to ``root`` (default: their common folder)."""
    if not paths:
        return []
    if root is None:
        resolved = [p.resolve() for p in paths]
        root = Path(os.path.commonpath([p.parent for p in resolved]))
        paths = resolved
    sources, seen = [], set()
    for p in paths:
        key = p.relative_to(root).as_posix()
        if key in seen:  # the same file listed twice counts once
            continue
        seen.add(key)
        sources.append(Source(key, p))
    return sources


def collect_sources(
    src: str | os.PathLike | None,
    options: PrepareOptions,
    on_skip: Callable[[str, str], None] | None = None,
) -> tuple[list[Source], set[str] | None]:
    """The inputs in order, and the keys of the given validation list (None: split by seed).

    ``on_skip(path, reason)`` hears of each symbolic link loop in a source folder (skipped).
    """
    if options.train_list is not None:
        if src is not None:
            raise PrepareError("give either SRC or --train-list/--val-list, not both")
        train = read_list(options.train_list)
        val = read_list(options.val_list)
        sources = _keys_for(train + val)
        val_paths = {p.resolve() for p in val}
        return sources, {s.key for s in sources if s.path in val_paths}
    if src is None:
        raise PrepareError("no input: give SRC (a folder or a file list)")
    src = Path(src)
    if src.is_dir():
        report = None if on_skip is None else (lambda path, why: on_skip(str(path), why))
        return _keys_for(io.list_images(src, on_problem=report), root=src), None
    if src.is_file() and src.suffix.lower() in LIST_SUFFIXES:
        return _keys_for(read_list(src)), None
    raise PrepareError(f"{src}: not a folder or a file list ({', '.join(LIST_SUFFIXES)})")


# --------------------------------------------------------------------------- one image


@dataclass
class Decoded:
    """A worker's answer for one source: either ``error`` or the data to store."""

    key: str
    source: str
    error: str | None = None
    sha256: str = ""
    original_size: tuple[int, int] = (0, 0)
    size: tuple[int, int] = (0, 0)
    pixels: np.ndarray | None = None
    encoded: bytes | None = None
    source_bytes: int = 0
    kept_original: bool = False  # ``encoded`` is the source file's own bytes

    @property
    def stored_bytes(self) -> int:
        return self.pixels.nbytes if self.pixels is not None else len(self.encoded or b"")


def decode_one(source: Source, options: PrepareOptions) -> Decoded:
    """Read, hash, transform and (for ``store="encoded"``) encode one image; never raises."""
    result = Decoded(key=source.key, source=str(source.path))
    try:
        data = source.path.read_bytes()
    except OSError as err:
        result.error = f"cannot read ({err.strerror or err})"
        return result
    result.sha256 = hashlib.sha256(data).hexdigest()
    result.source_bytes = len(data)
    draft = (
        None if options.resize == "none" else max(options.size or 0, *(options.resize_to or (0,)))
    )
    try:
        image = io.open_image(source.path, options.max_pixels, draft_size=draft or None)
        # The size before any draft-mode reduction, with EXIF orientation applied.
        header = _header(data)
        fitted = resize_and_crop(image, options.size, options.resize, options.resize_to)
        pixels = io.to_rgb8(fitted)
    except io.ImageReadError as err:
        result.error = str(err)
        return result
    except (OSError, ValueError) as err:  # anything Pillow raises late, e.g. in resize
        result.error = f"not a readable image ({err})"
        return result
    result.original_size = header.size
    result.size = (int(pixels.shape[0]), int(pixels.shape[1]))
    if options.store == "raw":
        result.pixels = pixels
    elif fitted is image and header.keeps_pixels and image.size == (header.size[1], header.size[0]):
        # Decoding the file gives exactly the stored pixels (not even a draft-mode reduction
        # happened): its own bytes are smaller than any re-encoding and lose nothing.
        result.encoded = data
        result.kept_original = True
    else:
        result.encoded = _encode(pixels, options.encode)
    return result


@dataclass(frozen=True)
class _Header:
    """What an image file's header says: format, mode, EXIF orientation, ``(H, W)`` as displayed."""

    format: str | None
    mode: str
    orientation: int
    animated: bool
    size: tuple[int, int]

    @property
    def keeps_pixels(self) -> bool:
        """Whether decoding the file gives 8-bit RGB pixels as displayed, with no conversion."""
        return (
            self.format in ORIGINAL_FORMATS
            and self.mode == "RGB"
            and self.orientation == 1
            and not self.animated
        )


def _header(data: bytes) -> _Header:
    with Image.open(_bytes_io.BytesIO(data)) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
        return _Header(
            format=image.format,
            mode=image.mode,
            orientation=orientation,
            animated=bool(getattr(image, "is_animated", False)),
            size=(width, height) if orientation in (5, 6, 7, 8) else (height, width),
        )


def _encode(pixels: np.ndarray, encode: str) -> bytes:
    """uint8 RGB ``(H, W, 3)`` -> file bytes in the format of ``encode`` (deterministic)."""
    fmt, quality = parse_encode(encode)
    buffer = _bytes_io.BytesIO()
    picture = Image.fromarray(pixels)
    if fmt == "png":
        picture.save(buffer, format="PNG", compress_level=6)
    elif fmt == "jpeg":
        picture.save(buffer, format="JPEG", quality=quality, subsampling=0)
    elif quality is None:
        picture.save(buffer, format="WEBP", lossless=True, quality=100, method=4)
    else:
        picture.save(buffer, format="WEBP", quality=quality, method=4)
    return buffer.getvalue()


def _decode_task(task: tuple[Source, PrepareOptions]) -> Decoded:
    return decode_one(*task)


def decoded_stream(
    sources: list[Source], options: PrepareOptions, workers: int
) -> Iterator[Decoded]:
    """Decode ``sources`` on ``workers`` processes, yielding results in input order."""
    tasks = [(s, options) for s in sources]
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_decode_task, tasks)
        return
    # Ordered imap keeps the writer deterministic; small chunks keep all workers busy.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_decode_task, tasks, chunksize=4)
