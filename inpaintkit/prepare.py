"""Pack an image folder or file list into one HDF5 file with train/val splits.

The workflow behind ``inpaintkit prepare`` (docs/prepare.md has the layout and options):
decode in a process pool, commit the results in input order from this process as whole part
files under ``.OUT.h5.parts/`` (so that a run killed at any moment keeps every committed part
and ``resume=True`` writes only the rest), assemble ``OUT.h5`` from the parts under
``.OUT.h5.partial``, then publish the file and its split lists
``OUT.train.txt``/``OUT.val.txt`` (:func:`split_list_path`). Same inputs and options give
byte-identical outputs.

The options are :mod:`inpaintkit.prepare_options`, the inputs and their decoding
:mod:`inpaintkit.prepare_sources`, the rows, parts and datasets :mod:`inpaintkit.prepare_store`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from inpaintkit import __version__, io
from inpaintkit.prepare_options import PrepareError, PrepareOptions
from inpaintkit.prepare_sources import Decoded, collect_sources, decoded_stream
from inpaintkit.prepare_store import (
    PART_BYTES,
    Parts,
    Rows,
    append_rows,
    check_room,
    create_datasets,
    fixed_layout,
    option_attrs,
    partial_path,
    parts_path,
)

#: Results are written in batches of this many; fixed so that file bytes never depend on timing.
WRITE_BATCH = 64


def split_list_path(out: str | os.PathLike, split: str) -> Path:
    """The key list of ``split`` written beside ``out``: ``photos.h5`` -> ``photos.train.txt``.

    Named after the output, so that several datasets prepared into one folder keep their own.
    """
    out = Path(out)
    return out.with_name(f"{out.stem}.{split}.txt")


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
    fixed = fixed_layout(options)
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
    check_room(partial, parts.size(), f"the {summary.written} images")
    f = h5py.File(partial, "w", libver="latest", track_order=False)
    try:
        for name, value in option_attrs(options).items():
            f.attrs[name] = value
        create_datasets(f, options)
        pending: Rows | None = None
        for rows in parts.committed():
            pending = rows if pending is None else pending + rows
            while len(pending) >= WRITE_BATCH:
                append_rows(f, pending[:WRITE_BATCH])
                pending = pending[WRITE_BATCH:]
        if pending is not None and len(pending):
            append_rows(f, pending)
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
