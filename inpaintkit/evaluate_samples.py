"""What an evaluation scores against: the ground-truth images and their holes, one at a time.

Ground truth is a prepared HDF5 file's split (centre ``size x size`` crop, as the validation
split of :class:`~inpaintkit.data.InpaintingDataset`) or a folder of images (shorter side
resized to ``size``, then centre-cropped, as ``prepare --resize shorter``). Holes are mask
files paired by name (as ``fill`` pairs them), or masks generated from ``(kind, seed, image
index)`` and written to ``REPORT_DIR/masks/`` for reuse. :func:`iter_samples` streams them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from inpaintkit import io
from inpaintkit.data import InpaintingDataset
from inpaintkit.evaluate_options import DEFAULT_SPLIT, MASKS_DIR, EvaluateError, EvaluateOptions
from inpaintkit.geometry import resize_and_crop
from inpaintkit.masks import MaskConfig, generate_mask
from inpaintkit.pairing import MaskFolder, pair_masks
from inpaintkit.report import write_png
from inpaintkit.sharding import Shard
from inpaintkit.tensors import tensor_to_image


@dataclass
class Sample:
    """One ground-truth image and its hole: uint8 ``(S, S, 3)`` and bool ``(S, S)``, True = hole.

    ``problem`` (then no image or hole) says in one line why the image cannot be evaluated.
    """

    index: int
    key: str  # unique name: the HDF5 key, or the path relative to the image folder
    image: np.ndarray | None = None
    hole: np.ndarray | None = None
    problem: str | None = None


def split_sizes(data: str | os.PathLike) -> dict[str, int] | None:
    """Images per split (``train``, ``val``, ``all``) of a prepared HDF5 file; None otherwise."""
    try:
        with h5py.File(data, "r") as f:
            return {
                "train": len(f["train_index"]),
                "val": len(f["val_index"]),
                "all": int(f.attrs["num_images"]),
            }
    except (OSError, KeyError):
        return None


def _no_such_images(data: Path, split: str, sizes: dict[str, int]) -> str:
    listed = ", ".join(f"{name} {count}" for name, count in sizes.items())
    usable = [name for name, count in sizes.items() if count and name != "all"]
    hint = f"; choose one with --split {usable[0]}" if usable else ""
    return f"{data}: split {split!r} is empty (images per split: {listed}){hint}"


def choose_split(data: str | os.PathLike, split: str | None) -> tuple[str, str | None]:
    """The split to evaluate and, when it is not the one asked for, a one-line note saying so.

    ``split=None`` (not given) means ``val``, or ``train`` when the file has no val images
    (``prepare``'s default ``--val-fraction 0``). A split given and empty is an error naming
    the splits that exist. Folders have no splits: ``split`` is returned as it is.
    """
    sizes = split_sizes(data) if Path(data).is_file() else None
    if sizes is None:
        return split or DEFAULT_SPLIT, None
    if split is None:
        if sizes[DEFAULT_SPLIT] == 0 and sizes["train"] > 0:
            return "train", (
                f"{data} has no val split (prepared without --val-fraction/--val-count); "
                f"evaluating its {sizes['train']} train images (--split chooses)"
            )
        split = DEFAULT_SPLIT
    if sizes[split] == 0:
        raise EvaluateError(_no_such_images(Path(data), split, sizes))
    return split, None


def mask_file_name(key: str) -> str:
    """``a/b.jpg`` -> ``a/b.png``: where a generated mask of image ``key`` is written."""
    return Path(key).with_suffix(".png").as_posix()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class GroundTruth:
    """The images of ``options.data`` in a fixed order, streamed one at a time."""

    def __init__(self, options: EvaluateOptions) -> None:
        self.options = options
        data = options.data
        if data.is_dir():
            self.hdf5 = None
            # Never evaluate our own report files or mask files kept beside the images.
            outside = [f.resolve() for f in (options.output, options.masks) if f is not None]
            self.files = [
                p
                for p in io.list_images(data)
                if not any(p.resolve().is_relative_to(folder) for folder in outside)
            ]
            if not self.files:
                raise EvaluateError(f"{data}: no images found")
            self.keys = [p.relative_to(data).as_posix() for p in self.files]
        elif data.is_file():
            try:
                self.hdf5 = InpaintingDataset(
                    data,
                    split=options.split,
                    crop_size=options.size,
                    random_crop=False,
                    random_flip=False,
                )
            except ValueError as err:
                raise EvaluateError(str(err)) from None
            with h5py.File(data, "r") as f:
                stored = f["keys"][:]
            self.keys = [_text(stored[row]) for row in self.hdf5.rows]
            if not self.keys:
                raise EvaluateError(_no_such_images(data, options.split, split_sizes(data) or {}))
        else:
            raise EvaluateError(f"{data}: no such file or folder")
        if options.limit is not None:
            self.keys = self.keys[: options.limit]

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, index: int) -> tuple[np.ndarray, tuple[int, int]]:
        """Image ``index`` as uint8 ``(S, S, 3)`` and its original ``(H, W)``."""
        if self.hdf5 is not None:
            tensor = self.hdf5[index]  # centre crop (upscaled first if smaller)
            original = tuple(int(v) for v in self.hdf5.sizes[self.hdf5.rows[index]])
            return tensor_to_image(tensor[None])[0], original
        path = self.files[index]
        try:
            picture = io.open_image(path)
        except io.ImageReadError as err:
            raise EvaluateError(f"{path}: {err}") from None
        original = (picture.height, picture.width)
        fitted = resize_and_crop(picture, self.options.size)  # prepare --resize shorter
        return np.array(
            io.to_rgb8(fitted)
        ), original  # a writable copy: torch warns on read-only arrays

    def fit_mask(self, hole: np.ndarray, original: tuple[int, int], where: Path) -> np.ndarray:
        """A mask for the evaluated crop: ``(S, S)`` as is, or the original image's size cut the same way.

        Folder images: prepare's resize-and-crop, then threshold at 127 (the resampling blurs
        the edge; the threshold puts it back where nearest-neighbour would). HDF5 images: the
        same centre crop as the image.
        """
        size = self.options.size
        if hole.shape == (size, size):
            return hole
        if hole.shape != original or (self.hdf5 is not None and min(original) < size):
            raise EvaluateError(
                f"{where}: mask is {hole.shape[1]}x{hole.shape[0]}, expected {size}x{size} "
                f"or the image's {original[1]}x{original[0]}"
            )
        if self.hdf5 is not None:
            top, left = (original[0] - size) // 2, (original[1] - size) // 2
            return hole[top : top + size, left : left + size]
        picture = Image.fromarray(hole.astype(np.uint8) * 255)
        return np.asarray(resize_and_crop(picture, size)) > 127


class Holes:
    """The hole of each image: from paired mask files, or generated and saved under REPORT_DIR/masks."""

    def __init__(self, options: EvaluateOptions, truth: GroundTruth) -> None:
        self.options = options
        self.truth = truth
        self.folder = options.folder / MASKS_DIR if options.masks is None else options.masks
        self.paired: dict[str, Path | str] = {}
        if options.masks is None:
            self.mask_config = MaskConfig(kind=options.mask_kind)
            return
        if not options.masks.is_dir():
            raise EvaluateError(f"{options.masks}: not a folder of mask files")
        if truth.hdf5 is None:
            # Exactly fill's pairing, keeping images inside the report folder out.
            output = options.output if options.output.is_dir() else None
            for pair in pair_masks(options.data, options.masks, exclude=[output]):
                self.paired[pair.relative.as_posix()] = (
                    pair.mask if pair.mask is not None else (pair.problem or "no mask")
                )
        else:
            # HDF5 keys are not files, but the naming rule is fill's.
            mask_folder = MaskFolder(options.masks)
            for key in truth.keys:
                found, problem = mask_folder.find(key)
                self.paired[key] = found if found is not None else problem

    def hole(self, index: int, key: str, original: tuple[int, int]) -> np.ndarray:
        """bool ``(S, S)`` hole of image ``index``; writes a generated one to ``masks/`` first time."""
        size = self.options.size
        if self.options.masks is not None:
            found = self.paired.get(key, "no mask found")
            if isinstance(found, str):
                raise EvaluateError(f"{key}: {found}")
            return self.truth.fit_mask(self._read(found), original, found)
        path = self.folder / mask_file_name(key)
        if path.exists():  # a resumed run, or masks shared with another run: reuse exactly
            return self.truth.fit_mask(self._read(path), (size, size), path)
        hole = generate_mask(self.mask_config, size, size, self.options.seed, index)
        write_png(path, hole.astype(np.uint8) * 255)
        return hole

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        try:
            return io.read_mask(path)
        except io.ImageReadError as err:
            raise EvaluateError(f"{path}: {err}") from None


def owned_indexes(truth: GroundTruth, shard: Shard | None) -> list[int]:
    """The images ``shard`` evaluates (all without one), by index: those whose key it owns."""
    return [i for i, key in enumerate(truth.keys) if shard is None or shard.owns(key)]


def iter_samples(
    truth: GroundTruth, holes: Holes, indexes: Sequence[int] | None = None
) -> Iterator[Sample]:
    """Each image (of ``indexes``, default all) with its hole, in order.

    One that cannot be used comes with its ``problem``.
    """
    for index in range(len(truth)) if indexes is None else indexes:
        key = truth.keys[index]
        try:
            image, original = truth.read(index)
            hole = holes.hole(index, key, original)
        except EvaluateError as err:
            yield Sample(index, key, problem=str(err))
            continue
        yield Sample(index, key, image, hole)
