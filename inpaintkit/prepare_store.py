"""How ``prepare`` stores images in HDF5: rows of columns, committed in parts that survive a kill.

:class:`Rows` are stored images column by column (:data:`COLUMNS`); :class:`Parts` commits them
as whole little HDF5 files under ``.OUT.h5.parts/`` (what ``--resume`` keeps); the workflow
(:mod:`inpaintkit.prepare`) assembles OUT.h5 from them with :func:`create_datasets` and
:func:`append_rows`. Every write first checks the disk has room (:func:`check_room`).
"""

from __future__ import annotations

import io as _bytes_io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from inpaintkit import io
from inpaintkit.prepare_options import PrepareError, PrepareOptions
from inpaintkit.prepare_sources import Decoded


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


def create_datasets(f: h5py.File, options: PrepareOptions) -> None:
    """The empty, growable per-image datasets of an OUT.h5 (:data:`COLUMNS`)."""
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
    if fixed_layout(options):
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


def fixed_layout(options: PrepareOptions) -> bool:
    """Raw pixels of one size: ``images`` is ``(N, H, W, 3)``; otherwise one flat row per image."""
    return options.store == "raw" and options.output_shape is not None


_OPTION_ATTRS = ("size", "resize", "resize_to", "store", "encode", "max_pixels")


def option_attrs(options: PrepareOptions) -> dict[str, str]:
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


def check_room(path: Path, nbytes: int, what: str) -> None:
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
        wanted = json.dumps(option_attrs(options), sort_keys=True)
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
        check_room(self.folder, len(data), f"the next {len(rows)} images")
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


def append_rows(f: h5py.File, rows: Rows) -> None:
    """Append ``rows`` to the datasets :func:`create_datasets` made, then flush."""
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
