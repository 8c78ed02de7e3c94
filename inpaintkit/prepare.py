"""Pack an image folder or file list into one HDF5 file with train/val splits.

The workflow behind ``inpaintkit prepare`` (docs/prepare.md has the layout and options):
decode in a process pool, commit the results in input order from this process as whole part
files under ``.OUT.h5.parts/`` (so that a run killed at any moment keeps every committed part
and ``resume=True`` writes only the rest), assemble ``OUT.h5`` from the parts under
``.OUT.h5.partial``, then publish the file and its split lists
``OUT.train.txt``/``OUT.val.txt`` (:func:`split_list_path`). Same inputs and options give
byte-identical outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io as _bytes_io
import json
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from inpaintkit import __version__, io
from inpaintkit.geometry import RESIZE_MODES, resize_and_crop

STORE_MODES = ("raw", "encoded")
#: ``--encode`` formats: ``png`` and ``webp`` alone are lossless; ``jpeg:Q`` and ``webp:Q`` are
#: lossy at quality Q (1-100); ``jpeg`` alone is ``jpeg:95``.
ENCODE_FORMATS = ("png", "jpeg", "webp")
DEFAULT_JPEG_QUALITY = 95
#: Source formats whose bytes are stored as they are when no pixel needs to change.
ORIGINAL_FORMATS = ("JPEG", "PNG", "WEBP")
LIST_SUFFIXES = (".txt", ".flist", ".lst", ".list")
#: Results are written in batches of this many; fixed so that file bytes never depend on timing.
WRITE_BATCH = 64


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


def split_list_path(out: str | os.PathLike, split: str) -> Path:
    """The key list of ``split`` written beside ``out``: ``photos.h5`` -> ``photos.train.txt``.

    Named after the output, so that several datasets prepared into one folder keep their own.
    """
    out = Path(out)
    return out.with_name(f"{out.stem}.{split}.txt")


@dataclass(frozen=True)
class Source:
    """One input image: its key in the file (unique, ``/``-separated) and its path."""

    key: str
    path: Path


@dataclass
class PrepareSummary:
    """What a run did; also stored as file attributes."""

    output: Path
    inputs: int = 0
    written: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    train: int = 0
    val: int = 0
    resumed: int = 0
    # Of the images written by this run (not the resumed ones): their source files' bytes, the
    # bytes stored for them, and how many were stored as their original file bytes.
    source_bytes: int = 0
    stored_bytes: int = 0
    kept_original: int = 0
    # Row numbers of each split in OUT.h5 (sorted).
    train_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    val_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


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


# --------------------------------------------------------------------------- the HDF5 file


def partial_path(out: str | os.PathLike) -> Path:
    """Where a run assembles ``out`` before publishing it: ``.OUT.h5.partial`` beside it."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


def parts_path(out: str | os.PathLike) -> Path:
    """The folder of a run's committed parts, ``.OUT.h5.parts`` beside ``out`` (what ``--resume`` reads)."""
    out = Path(out)
    return out.with_name(f".{out.name}.parts")


_STR = h5py.string_dtype("utf-8")
_BYTES = h5py.vlen_dtype(np.uint8)
#: The per-image datasets, in the order they are written.
COLUMNS = ("keys", "sources", "sha256", "original_sizes", "sizes", "images")
#: A part is committed once it holds this many bytes of images, even before WRITE_BATCH rows,
#: so that memory stays bounded and a kill loses little work with large (``--resize none``) images.
PART_BYTES = 128 * 1024**2
#: The options a part folder was started with (compared by ``--resume``).
PARTS_OPTIONS = "options.json"


def _create_datasets(f: h5py.File, options: PrepareOptions) -> None:
    # track_times=False: HDF5 otherwise stamps each object with its creation time, and two runs
    # on the same input would differ in those bytes.
    common = {"track_times": False, "maxshape": (None,), "chunks": (256,)}
    f.create_dataset("keys", (0,), dtype=_STR, **common)
    f.create_dataset("sources", (0,), dtype=_STR, **common)
    f.create_dataset("sha256", (0,), dtype="S64", **common)
    f.create_dataset(
        "original_sizes",
        (0, 2),
        dtype=np.int32,
        track_times=False,
        maxshape=(None, 2),
        chunks=(256, 2),
    )
    f.create_dataset(
        "sizes", (0, 2), dtype=np.int32, track_times=False, maxshape=(None, 2), chunks=(256, 2)
    )
    shape = options.output_shape
    if _fixed_layout(options):
        f.create_dataset(
            "images",
            (0, *shape, 3),
            dtype=np.uint8,
            track_times=False,
            maxshape=(None, *shape, 3),
            chunks=(1, *shape, 3),
        )
    else:
        # Variable-size raw pixels (flattened, shape in "sizes") or encoded file bytes.
        f.create_dataset(
            "images", (0,), dtype=_BYTES, track_times=False, maxshape=(None,), chunks=(64,)
        )


def _fixed_layout(options: PrepareOptions) -> bool:
    """Raw pixels of one size: ``images`` is ``(N, H, W, 3)``; otherwise one flat row per image."""
    return options.store == "raw" and options.output_shape is not None


_OPTION_ATTRS = ("size", "resize", "resize_to", "store", "encode", "max_pixels")


def _option_attrs(options: PrepareOptions) -> dict[str, str]:
    """The options that decide what is stored, as JSON strings (None-safe, comparable)."""
    values = asdict(options)
    if options.store == "raw":
        values["encode"] = None  # raw pixels are never encoded: any --encode resumes them
    return {f"option_{k}": json.dumps(values[k]) for k in _OPTION_ATTRS}


@dataclass
class Rows:
    """Stored images, column by column: what one part holds and what OUT.h5 is built from.

    ``images`` is uint8 ``(n, H, W, 3)`` for the fixed layout, else a list of flat uint8 rows
    (raw pixels flattened, shape in ``sizes``; or encoded file bytes).
    """

    keys: list[str]
    sources: list[str]
    sha256: np.ndarray  # S64 (n,)
    original_sizes: np.ndarray  # int32 (n, 2)
    sizes: np.ndarray  # int32 (n, 2)
    images: np.ndarray | list[np.ndarray]

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        if isinstance(self.images, np.ndarray):
            return self.images.nbytes
        return sum(row.nbytes for row in self.images)

    @classmethod
    def of(cls, batch: list[Decoded], fixed: bool) -> Rows:
        """The rows of decoded images (in order)."""
        images = (
            np.stack([d.pixels for d in batch])
            if fixed
            else [
                d.pixels.reshape(-1) if d.pixels is not None else np.frombuffer(d.encoded, np.uint8)
                for d in batch
            ]
        )
        return cls(
            keys=[d.key for d in batch],
            sources=[d.source for d in batch],
            sha256=np.array([d.sha256.encode() for d in batch], dtype="S64"),
            original_sizes=np.array([d.original_size for d in batch], dtype=np.int32).reshape(
                -1, 2
            ),
            sizes=np.array([d.size for d in batch], dtype=np.int32).reshape(-1, 2),
            images=images,
        )

    def __getitem__(self, rows: slice) -> Rows:
        return Rows(*(getattr(self, name)[rows] for name in COLUMNS))

    def __add__(self, other: Rows) -> Rows:
        def join(a, b):
            return np.concatenate([a, b]) if isinstance(a, np.ndarray) else [*a, *b]

        return Rows(*(join(getattr(self, n), getattr(other, n)) for n in COLUMNS))

    @classmethod
    def read(cls, path: Path) -> Rows:
        """The rows of a part file."""
        with h5py.File(path, "r") as f:
            images = f["images"][:]
            return cls(
                keys=list(f["keys"].asstr()[:]),
                sources=list(f["sources"].asstr()[:]),
                sha256=f["sha256"][:],
                original_sizes=f["original_sizes"][:],
                sizes=f["sizes"][:],
                images=images if images.dtype != object else list(images),
            )

    def to_bytes(self) -> bytes:
        """The rows as a small HDF5 file (built in memory: HDF5 never writes to disk here)."""
        buffer = _bytes_io.BytesIO()
        with h5py.File(buffer, "w") as f:
            f.create_dataset("keys", data=np.array(self.keys, dtype=object), dtype=_STR)
            f.create_dataset("sources", data=np.array(self.sources, dtype=object), dtype=_STR)
            for name in ("sha256", "original_sizes", "sizes"):
                f.create_dataset(name, data=getattr(self, name))
            if isinstance(self.images, np.ndarray):
                f.create_dataset("images", data=self.images)
            else:
                images = f.create_dataset("images", (len(self),), dtype=_BYTES)
                for i, row in enumerate(self.images):
                    images[i] = row
        return buffer.getvalue()


#: Room kept free beyond a batch's bytes, for HDF5's metadata and the final flush.
WRITE_HEADROOM = 1 << 20


def _check_room(path: Path, nbytes: int, what: str) -> None:
    """Refuse a write of about ``nbytes`` the disk at ``path`` has no room for, before it starts.

    HDF5 handles a failed write badly: the datasets it could not flush stay open in the
    library, which crashes the interpreter at exit. So the free space is checked first.
    """
    needed = nbytes + nbytes // 20 + WRITE_HEADROOM
    free = shutil.disk_usage(path.parent if not path.is_dir() else path).free
    if free < needed:
        raise PrepareError(
            f"cannot write {path}: No space left on device ({free // 1024} KiB free, "
            f"{what} need about {needed // 1024} KiB); free some and re-run with --resume"
        )


class Parts:
    """The committed work of a run: ``part-NNNNNN.h5`` files in :func:`parts_path`'s folder.

    Each part is a complete little HDF5 file of consecutive rows, built in memory and renamed
    into place (:func:`inpaintkit.io.atomic_write`), so a part either exists whole or not at
    all, whatever kills the run and whenever. ``--resume`` keeps every part; OUT.h5 is only
    assembled from them at the end. (A partial HDF5 file cannot be reopened after a SIGKILL:
    HDF5 leaves its "open for write" status flags set, and refuses it with or without file
    locking; see docs/prepare.md.)
    """

    def __init__(self, folder: Path, options: PrepareOptions, resume: bool) -> None:
        self.folder = folder
        manifest = folder / PARTS_OPTIONS
        wanted = json.dumps(_option_attrs(options), sort_keys=True)
        if resume and manifest.exists():
            if manifest.read_text(encoding="utf-8") != wanted:
                raise PrepareError(
                    f"{folder}: was started with other options; rerun without --resume"
                )
        else:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            io.write_text(manifest, wanted)
        self.files = sorted(folder.glob("part-[0-9][0-9][0-9][0-9][0-9][0-9].h5"))
        # Parts are numbered from 0 without gaps; anything after a gap is not from this run.
        for i, path in enumerate(self.files):
            if path.name != self._name(i):
                for stale in self.files[i:]:
                    stale.unlink()
                self.files = self.files[:i]
                break

    @staticmethod
    def _name(index: int) -> str:
        return f"part-{index:06d}.h5"

    def committed(self) -> Iterator[Rows]:
        """The rows of every part, in order."""
        for path in self.files:
            yield Rows.read(path)

    def add(self, rows: Rows) -> None:
        """Commit ``rows`` as the next part (whole, or not at all)."""
        data = rows.to_bytes()
        _check_room(self.folder, len(data), f"the next {len(rows)} images")
        path = self.folder / self._name(len(self.files))
        try:
            with io.atomic_write(path) as tmp:
                tmp.write_bytes(data)
        except OSError as err:
            raise PrepareError(
                f"cannot write {self.folder}: {err.strerror or err}; "
                "free some and re-run with --resume"
            ) from None
        self.files.append(path)

    def size(self) -> int:
        """Bytes the parts take on disk."""
        return sum(p.stat().st_size for p in self.files)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _append(f: h5py.File, rows: Rows) -> None:
    start = len(f["keys"])
    end = start + len(rows)
    for name in COLUMNS:
        f[name].resize(end, axis=0)
    f["keys"][start:end] = rows.keys
    f["sources"][start:end] = rows.sources
    for name in ("sha256", "original_sizes", "sizes"):
        f[name][start:end] = getattr(rows, name)
    if isinstance(rows.images, np.ndarray):
        f["images"][start:end] = rows.images
    else:
        for i, payload in enumerate(rows.images):
            f["images"][start + i] = payload
    f.flush()


def choose_split(
    keys: list[str], options: PrepareOptions, val_keys: set[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Train and val row indices (sorted, disjoint, covering every row)."""
    n = len(keys)
    if val_keys is not None:
        is_val = np.array([k in val_keys for k in keys], dtype=bool)
    else:
        count = (
            options.val_count if options.val_count is not None else round(options.val_fraction * n)
        )
        if count > n:
            raise PrepareError(f"--val-count {count} is more than the {n} images stored")
        is_val = np.zeros(n, dtype=bool)
        is_val[np.random.default_rng(options.seed).permutation(n)[:count]] = True
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)


def prepare_dataset(
    src: str | os.PathLike | None,
    out: str | os.PathLike,
    options: PrepareOptions,
    workers: int | None = None,
    resume: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> PrepareSummary:
    """Pack ``src`` (folder or file list, or ``options.train_list``/``val_list``) into ``out``.

    ``on_skip(path, reason)`` is told about every unreadable or duplicate image and
    ``on_progress(done, total)`` once the work is known and after every image (so not before
    the checks that refuse to start: ``out`` exists, no input). Raises :class:`PrepareError` when there is no input image, when none could be
    read (then no file is left behind, not even the parts), or when ``out`` exists and
    neither ``overwrite`` nor ``resume`` is set (with ``resume`` a finished ``out`` is left as it
    is: there is nothing to resume). Work is committed in parts (:class:`Parts`) that
    ``resume`` keeps after any interruption, SIGKILL included; ``out`` is assembled from them.
    Writes ``out`` and its split lists (:func:`split_list_path`). Returns the run's summary.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        if resume:
            shutil.rmtree(parts_path(out), ignore_errors=True)  # killed after publishing
            return _finished_summary(out)
        raise PrepareError(f"{out} already exists; pass --overwrite to replace it")
    sources, val_keys = collect_sources(src, options, on_skip)
    if not sources:
        where = src if src is not None else f"{options.train_list} and {options.val_list}"
        raise PrepareError(
            f"{where}: no images found ({', '.join(io.IMAGE_SUFFIXES)}); nothing written"
        )
    summary = PrepareSummary(output=out, inputs=len(sources))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial_path(out).unlink(missing_ok=True)  # only ever an unfinished assembly
    parts = Parts(parts_path(out), options, resume)
    hashes: dict[str, str] = {}  # sha256 -> key of every stored image
    for rows in parts.committed():
        hashes.update(zip((h.decode() for h in rows.sha256), rows.keys, strict=True))
    summary.resumed = len(hashes)
    done_keys = set(hashes.values())
    todo = [s for s in sources if s.key not in done_keys]
    fixed = _fixed_layout(options)
    done = len(sources) - len(todo)
    if on_progress:
        on_progress(done, len(sources))
    batch: list[Decoded] = []
    batch_bytes = 0
    for decoded in decoded_stream(todo, options, workers or os.cpu_count() or 1):
        done += 1
        if decoded.error is not None:
            summary.unreadable.append((decoded.source, decoded.error))
            if on_skip:
                on_skip(decoded.source, decoded.error)
        elif decoded.sha256 in hashes:
            reason = f"duplicate of {hashes[decoded.sha256]} (same sha256), skipped"
            summary.duplicates.append((decoded.source, hashes[decoded.sha256]))
            if on_skip:
                on_skip(decoded.source, reason)
        else:
            hashes[decoded.sha256] = decoded.key
            summary.source_bytes += decoded.source_bytes
            summary.stored_bytes += decoded.stored_bytes
            summary.kept_original += decoded.kept_original
            batch.append(decoded)
            batch_bytes += decoded.stored_bytes
            if len(batch) == WRITE_BATCH or batch_bytes >= PART_BYTES:
                parts.add(Rows.of(batch, fixed))
                batch, batch_bytes = [], 0
        if on_progress:
            on_progress(done, len(sources))
    if batch:
        parts.add(Rows.of(batch, fixed))
    summary.written = len(hashes)
    if summary.written == 0:
        parts.remove()  # holds nothing worth resuming
        raise PrepareError(f"no readable image among {len(sources)} inputs; nothing written")
    keys = _assemble(parts, partial_path(out), options, summary, val_keys)
    # The key lists first: once OUT.h5 has its final name, the run is complete.
    for split, rows in (("train", summary.train_rows), ("val", summary.val_rows)):
        io.write_text(split_list_path(out, split), "".join(f"{keys[i]}\n" for i in rows))
    # Publish through atomic_write like every other output: the finished partial is moved to
    # atomic_write's temporary name, which is renamed onto OUT.h5 in one step.
    with io.atomic_write(out) as tmp:
        os.replace(partial_path(out), tmp)
    parts.remove()
    return summary


def _assemble(
    parts: Parts,
    partial: Path,
    options: PrepareOptions,
    summary: PrepareSummary,
    val_keys: set[str] | None,
) -> list[str]:
    """Build ``partial`` (the future OUT.h5) from the committed parts; returns its keys.

    Rows are appended in slices of WRITE_BATCH whatever the parts' sizes, so the file's bytes
    depend on the inputs and options only, not on where earlier runs were interrupted.
    """
    _check_room(partial, parts.size(), f"the {summary.written} images")
    f = h5py.File(partial, "w", libver="latest", track_order=False)
    try:
        for name, value in _option_attrs(options).items():
            f.attrs[name] = value
        _create_datasets(f, options)
        pending: Rows | None = None
        for rows in parts.committed():
            pending = rows if pending is None else pending + rows
            while len(pending) >= WRITE_BATCH:
                _append(f, pending[:WRITE_BATCH])
                pending = pending[WRITE_BATCH:]
        if pending is not None and len(pending):
            _append(f, pending)
        keys = list(f["keys"].asstr()[:])
        train, val = choose_split(keys, options, val_keys)
        summary.train, summary.val = len(train), len(val)
        summary.train_rows, summary.val_rows = train, val
        _finish(f, options, summary, train, val)
    except BaseException as err:
        # HDF5 reports a failed write (e.g. a full disk) as either, in a multi-line message.
        write_failed = isinstance(err, (OSError, RuntimeError)) and not isinstance(
            err, PrepareError
        )
        if write_failed:
            # Closing flushes, which would fail again; HDF5 then keeps the file open and crashes
            # the interpreter at exit. The assembly is redone from the parts anyway, so empty
            # it (the flush then has room), close it and drop it.
            os.truncate(partial, 0)
        try:
            f.close()  # a no-op when already closed
        except (OSError, RuntimeError):  # no room even for the final flush: the same remedy
            os.truncate(partial, 0)
            with contextlib.suppress(OSError, RuntimeError):
                f.close()
            write_failed = True
        partial.unlink(missing_ok=True)
        if write_failed:
            raise PrepareError(
                f"cannot write {partial}: {_write_failure(err)}; free some and re-run with --resume"
            ) from None
        raise
    f.close()
    return keys


def _write_failure(err: BaseException) -> str:
    """One line saying why HDF5 could not write (its messages embed the OS error text)."""
    text = str(err)
    found = re.search(r"error message = '([^']*)'", text)
    return found.group(1) if found else (text.splitlines() or [type(err).__name__])[0]


def _finished_summary(out: Path) -> PrepareSummary:
    """The summary of an ``out`` a previous run finished (read from its attributes)."""
    try:
        with h5py.File(out, "r") as f:
            a = f.attrs
            return PrepareSummary(
                output=out,
                inputs=int(a["num_inputs"]),
                written=int(a["num_images"]),
                train=int(a["num_train"]),
                val=int(a["num_val"]),
                resumed=int(a["num_images"]),
            )
    except (OSError, KeyError) as err:
        raise PrepareError(
            f"{out}: exists but is not a finished prepare output ({err}); "
            "pass --overwrite to replace it"
        ) from None


def _finish(
    f: h5py.File,
    options: PrepareOptions,
    summary: PrepareSummary,
    train: np.ndarray,
    val: np.ndarray,
) -> None:
    n = summary.written
    for name, rows in (("train_index", train), ("val_index", val)):
        f.create_dataset(name, data=rows, track_times=False)
    f.attrs["inpaintkit_version"] = __version__
    f.attrs["layout"] = (
        "fixed" if f["images"].ndim == 4 else ("variable" if options.store == "raw" else "encoded")
    )
    f.attrs["options"] = json.dumps(asdict(options), sort_keys=True)
    f.attrs["num_images"] = n
    f.attrs["num_train"] = len(train)
    f.attrs["num_val"] = len(val)
    f.attrs["num_inputs"] = summary.inputs
    f.attrs["num_unreadable"] = len(summary.unreadable)
    f.attrs["num_duplicates"] = len(summary.duplicates)


def describe_dataset(path: str | os.PathLike) -> dict[str, object]:
    """What a prepared file holds: counts, layout, sizes, options, version (for ``--info``)."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise PrepareError(f"{path}: not an HDF5 file ({err})") from None
    with f:
        if "images" not in f or "num_images" not in f.attrs:
            raise PrepareError(f"{path}: not a file written by inpaintkit prepare")
        sizes = f["sizes"][:]
        info: dict[str, object] = {
            "file": str(path),
            "file size (MB)": round(path.stat().st_size / 1e6, 2),
            "inpaintkit version": f.attrs["inpaintkit_version"],
            "layout": f.attrs["layout"],
            "images": int(f.attrs["num_images"]),
            "train": int(f.attrs["num_train"]),
            "val": int(f.attrs["num_val"]),
            "inputs": int(f.attrs["num_inputs"]),
            "unreadable (skipped)": int(f.attrs["num_unreadable"]),
            "duplicates (skipped)": int(f.attrs["num_duplicates"]),
            "image sizes (HxW)": _size_range(sizes),
        }
        info.update({f"option {k}": v for k, v in json.loads(f.attrs["options"]).items()})
    return info


def _size_range(sizes: np.ndarray) -> str:
    low, high = sizes.min(axis=0), sizes.max(axis=0)
    if (low == high).all():
        return f"{low[0]}x{low[1]}"
    return f"{low[0]}x{low[1]} .. {high[0]}x{high[1]}"
