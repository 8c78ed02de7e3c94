"""Evaluate any set of inpainting methods on the same images and masks (the paper's Table 1).

The workflow behind ``inpaintkit evaluate`` (docs/evaluate.md):

1. ground truth: a prepared HDF5 file's split (centre ``size x size`` crop, as the
   validation split of :class:`~inpaintkit.data.InpaintingDataset`) or a folder of images
   (shorter side resized to ``size``, then centre-cropped, as ``prepare --resize shorter``);
2. holes: mask files paired by name (as ``fill`` pairs them), or masks generated from
   ``(kind, seed, image index)`` and written to ``REPORT_DIR/masks/`` for reuse;
3. every method gets the image with its holes erased (0 in ``[-1, 1]``) and the mask; its
   output is composited into the known pixels, quantised to 8 bits (what a saved fill is) and
   scored against the ground truth with :mod:`inpaintkit.metrics`;
4. each (image, method) result is appended to ``REPORT_DIR/results.jsonl`` as it finishes
   (flushed and fsynced), so an interrupted run resumes without recomputing anything;
5. the report (:mod:`inpaintkit.report`): metrics.json, metrics.csv, comparison.png,
   comparison.html, all written atomically.

With a :class:`~inpaintkit.sharding.Shard` (a job array) a run evaluates only the images its
shard owns and writes all of the above into ``REPORT_DIR/shards/K-of-N/``; :func:`merge_shards`
then writes, from the N shard reports, the report a single run would have written.

Images are streamed one at a time; memory does not grow with the dataset apart from the set
of finished (image, method) names read back from the log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from inpaintkit import io
from inpaintkit.blend import BLEND_CHOICES, DEFAULT_BLEND
from inpaintkit.data import InpaintingDataset
from inpaintkit.devices import resolve_device
from inpaintkit.geometry import resize_and_crop
from inpaintkit.masks import MaskConfig, generate_mask
from inpaintkit.methods import (
    BiharmonicMethod,
    DeepFillMethod,
    InpaintMethod,
    MeanColorMethod,
    PatchMatchMethod,
)
from inpaintkit.metrics import METRICS, image_metrics, tv_loss
from inpaintkit.pairing import MaskFolder, pair_masks
from inpaintkit.report import (
    MethodSummary,
    comparison_html,
    comparison_sheet,
    encode_value,
    masked_input,
    summarize,
    write_metrics_csv,
    write_metrics_json,
    write_png,
)
from inpaintkit.sharding import Shard, shard_of
from inpaintkit.tensors import (
    composite,
    image_to_tensor,
    mask_to_tensor,
    tensor_to_image,
    uint8_to_unit,
)
from inpaintkit.texture import TEXTURE_CHOICES, GuidedPatchMatchMethod

#: Generated mask kinds (``masks.MaskConfig.kind`` values that need no files).
GENERATED_MASK_KINDS = ("rect", "freeform", "mixed")

#: The split of a prepared HDF5 file evaluated when none is asked for (see :func:`choose_split`).
DEFAULT_SPLIT = "val"

#: Files of a report folder.
RESULTS_LOG = "results.jsonl"
RUN_FILE = "evaluation.json"
#: Each method's settings (:func:`method_settings`), so a re-run never mixes two versions.
METHODS_FILE = "methods.json"
MASKS_DIR = "masks"
SAMPLES_DIR = "samples"
#: Where the shards of a job array write their reports: ``REPORT_DIR/shards/K-of-N/``.
SHARDS_DIR = "shards"


class EvaluateError(ValueError):
    """The evaluation cannot run as asked; the message says why in one line."""


@dataclass
class EvaluateOptions:
    """What to evaluate on and where the report goes (the ``inpaintkit evaluate`` options).

    ``masks``: a folder of mask files (white = hole) paired with the images by name; when
    None, masks of ``mask_kind`` are generated from ``seed`` and the image's index.
    ``limit``: evaluate only the first N images. ``samples``: images in the comparison sheet.
    ``warmup``: run each method once, untimed, before its first timed image (CUDA start-up,
    numba compilation), so s/image is the steady-state cost. ``shard``: evaluate only the
    images this shard of a job array owns, into :attr:`folder`.
    """

    data: Path
    output: Path
    split: str = DEFAULT_SPLIT
    size: int = 256
    masks: Path | None = None
    mask_kind: str = "rect"
    seed: int = 0
    limit: int | None = None
    samples: int = 8
    warmup: bool = True
    shard: Shard | None = None

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)
        self.masks = None if self.masks is None else Path(self.masks)
        if self.mask_kind not in GENERATED_MASK_KINDS:
            raise EvaluateError(
                f"mask kind must be one of {', '.join(GENERATED_MASK_KINDS)}, got {self.mask_kind!r}"
            )
        if self.size < 11:
            raise EvaluateError(f"--size must be at least 11 (the SSIM window), got {self.size}")
        if self.limit is not None and self.limit < 1:
            raise EvaluateError(f"--limit must be at least 1, got {self.limit}")
        if self.samples < 0:
            raise EvaluateError(f"--samples must be >= 0, got {self.samples}")

    def identity(self) -> dict:
        """What makes two runs comparable: results of a different identity are never mixed."""
        masks = (
            {"masks": str(self.masks.resolve())}
            if self.masks is not None
            else {"mask_kind": self.mask_kind, "seed": self.seed}
        )
        return {"data": str(self.data.resolve()), "split": self.split, "size": self.size, **masks}

    @property
    def folder(self) -> Path:
        """Where this run's files go: ``output``, or ``output/shards/K-of-N`` for a shard."""
        if self.shard is None:
            return self.output
        return self.output / SHARDS_DIR / self.shard.name


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


@dataclass
class EvaluateResult:
    """What a run did: the summary per method, new results computed, images skipped."""

    summary: dict
    images: int
    computed: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, one-line reason)


# --------------------------------------------------------------------------- methods


#: A checkpoint to evaluate: its file, or ``(report name, file)``.
CheckpointSpec = str | os.PathLike | tuple[str, str | os.PathLike]

#: Report names of the methods that are not checkpoints; no checkpoint is given one of them,
#: so that results.jsonl never mixes a checkpoint with one of these from an earlier run.
BUILT_IN_METHODS = ("mean-color", "biharmonic", "patchmatch", "deepfill")


def name_checkpoints(checkpoints: Sequence[CheckpointSpec]) -> list[tuple[str, Path]]:
    """``(report name, file)`` per checkpoint, in order.

    A ``(name, file)`` pair keeps its name. A bare file is named by its stem, or by its run
    folder when another file given has the same stem or the stem is a built-in method's name:
    ``runs/a/generator.safetensors`` and ``runs/b/generator.safetensors`` are ``a`` and ``b``.
    A name that is still taken, or cannot be a folder name, is an error saying to use
    ``--checkpoint NAME=FILE``.
    """
    entries = [(c[0], Path(c[1])) if isinstance(c, tuple) else (None, Path(c)) for c in checkpoints]
    stems = [path.stem for _, path in entries]
    named: list[tuple[str, Path]] = []
    for name, path in entries:
        if name is None:
            name = path.stem
            if stems.count(name) > 1 or name in BUILT_IN_METHODS:
                name = path.resolve().parent.name
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise EvaluateError(
                f"{path}: {name!r} cannot be a method name; name it with --checkpoint NAME={path}"
            )
        if name in BUILT_IN_METHODS:
            raise EvaluateError(
                f"{path}: {name!r} is a built-in method's name; name it with --checkpoint NAME={path}"
            )
        for other_name, other in named:
            if other_name == name:
                raise EvaluateError(
                    f"{path}: would be named {name!r} like {other}; "
                    "name them with --checkpoint NAME=FILE"
                )
        named.append((name, path))
    return named


def build_methods(
    checkpoints: Sequence[CheckpointSpec] = (),
    patchmatch: bool = False,
    deepfill_default: bool = False,
    floors: bool = True,
    device: str = "auto",
    patch_size: int | None = None,
    blends: Sequence[str] = (DEFAULT_BLEND,),
    textures: Sequence[str] = ("network",),
) -> dict[str, InpaintMethod]:
    """The methods of one evaluation by report name, weakest first.

    Floors (``mean-color``, ``biharmonic``), ``patchmatch``, the bundled model (``deepfill``),
    then each checkpoint, named as :func:`name_checkpoints` says (its own name, its file stem,
    or its run folder when stems collide). ``blends``: how every DeepFill method puts its
    prediction into the hole (:mod:`inpaintkit.blend`); given both, each DeepFill method is
    two rows, ``NAME`` Poisson-blended and ``NAME-pasted`` as the paper pastes it.
    ``textures``: ``"network"`` keeps the network's own output; ``"patchmatch"`` adds, after
    each DeepFill row, ``NAME+patchmatch``: PatchMatch guided by that row's fill
    (:mod:`inpaintkit.texture`), which shares the row's network.
    """
    if not blends or any(blend not in BLEND_CHOICES for blend in blends):
        raise EvaluateError(f"blends must be some of {list(BLEND_CHOICES)}, got {list(blends)}")
    if not textures or any(texture not in TEXTURE_CHOICES for texture in textures):
        raise EvaluateError(
            f"textures must be some of {list(TEXTURE_CHOICES)}, got {list(textures)}"
        )
    blends = list(dict.fromkeys(blends))

    def deepfill_rows(name: str, checkpoint: Path | None) -> None:
        for blend in blends:
            row = name if len(blends) == 1 or blend == "poisson" else f"{name}-pasted"
            # This checkpoint and blend's rows, one per texture, named before any is loaded.
            rows = {"network": row, "patchmatch": f"{row}+patchmatch"}
            for texture in textures:
                if rows[texture] in methods:
                    raise EvaluateError(
                        f"{checkpoint}: a row would be named {rows[texture]!r} like another "
                        "method; name them with --checkpoint NAME=FILE"
                    )
            network = DeepFillMethod(checkpoint, device=resolved, blend=blend)
            if "network" in textures:
                methods[row] = network
            if "patchmatch" in textures:
                methods[rows["patchmatch"]] = GuidedPatchMatchMethod(network, patch_size=patch_size)

    resolved = resolve_device(device)
    methods: dict[str, InpaintMethod] = {}
    if floors:
        methods["mean-color"] = MeanColorMethod()
        methods["biharmonic"] = BiharmonicMethod()
    if patchmatch:
        methods["patchmatch"] = PatchMatchMethod(patch_size=patch_size, device=resolved.type)
    if deepfill_default:
        deepfill_rows("deepfill", None)
    for name, checkpoint in name_checkpoints(checkpoints):
        deepfill_rows(name, checkpoint)
    if not methods:
        raise EvaluateError("nothing to evaluate: give --checkpoint, --method or keep --floors")
    return methods


# --------------------------------------------------------------------------- ground truth and masks


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


def _mask_file_name(key: str) -> str:
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
        path = self.folder / _mask_file_name(key)
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


# --------------------------------------------------------------------------- the results log


class ResultsLog:
    """``results.jsonl``: one JSON row per finished (image, method), durable once written.

    A last line cut short by an interruption is dropped (the file is truncated back to the
    last complete line) before new rows are appended.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[tuple[str, str]] = set()
        if path.exists():
            self._recover()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def _recover(self) -> None:
        good_end = 0
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    break  # truncated by an interruption: redo that result
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise EvaluateError(
                        f"{self.path}: line {number} is not JSON; delete the file to start over"
                    ) from None
                self.done.add((row["image"], row["method"]))
                good_end += len(line)
        if good_end != self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def append(self, row: dict) -> None:
        """Write one row and make it durable before returning."""
        self._file.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done.add((row["image"], row["method"]))

    def close(self) -> None:
        self._file.close()

    def rows(self, methods: Sequence[str], images: int) -> Iterator[dict]:
        """Rows of ``methods`` for the first ``images`` images (as stored), in log order."""
        return read_rows(self.path, methods, images)


def read_rows(path: Path, methods: Sequence[str], images: int) -> Iterator[dict]:
    """Rows of ``methods`` for the first ``images`` images of the log at ``path``, in log order.

    Complete lines only: a last line cut short by an interruption is not a result.
    """
    wanted = set(methods)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            row = json.loads(line)
            if row["method"] in wanted and row["index"] < images:
                yield row


# --------------------------------------------------------------------------- the run


def _check_identity(options: EvaluateOptions, folder: Path) -> None:
    """Refuse to mix results of a different dataset or mask set into ``folder``."""
    path = folder / RUN_FILE
    identity = options.identity()
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise EvaluateError(f"{path}: unreadable ({err}); delete it to start over") from None
        for key in sorted(set(identity) | set(previous)):
            if identity.get(key) != previous.get(key):
                raise EvaluateError(
                    f"{folder}: holds an evaluation with {key}={previous.get(key)!r}, "
                    f"not {identity.get(key)!r}; use another output folder"
                )
        return
    io.write_text(path, json.dumps(identity, indent=1) + "\n")


def method_settings(method: InpaintMethod) -> dict[str, str]:
    """What a method's results depend on beyond its name (a DeepFill checkpoint and blend)."""
    settings = getattr(method, "settings", None)
    return settings() if callable(settings) else {}


def _check_method_settings(
    output: Path, methods: dict[str, InpaintMethod], record: bool = True
) -> None:
    """Refuse to add results under a name the report holds with other settings, then record them.

    Without this a re-run with another ``--checkpoint`` file or ``--blend`` under the same name
    would skip the images already done and report a mix of two methods as one. ``record``:
    write the settings into ``output``'s methods.json (a shard report being merged is only read).
    """
    path = output / METHODS_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, json.JSONDecodeError) as err:
        raise EvaluateError(f"{path}: unreadable ({err}); delete it to start over") from None
    for name, method in methods.items():
        settings = method_settings(method)
        if name in recorded and recorded[name] != settings:
            differences = ", ".join(
                f"{key}={recorded[name].get(key)!r} there, {settings.get(key)!r} now"
                for key in sorted(set(settings) | set(recorded[name]))
                if settings.get(key) != recorded[name].get(key)
            )
            raise EvaluateError(
                f"{output}: holds results of {name!r} with other settings ({differences}); "
                "name it differently (--checkpoint NAME=FILE) or use another output folder"
            )
        recorded[name] = settings
    if record:
        io.write_text(path, json.dumps(recorded, indent=1, sort_keys=True) + "\n")


def _sample_paths(output: Path, key: str, names: Sequence[str]) -> dict[str, Path]:
    """Where the comparison-sheet tiles of image ``key`` live: input, each method, ground truth."""
    name = _mask_file_name(key)
    folder = output / SAMPLES_DIR
    paths = {"input": folder / "input" / name}
    paths.update({method: folder / "methods" / method / name for method in names})
    paths["ground truth"] = folder / "ground_truth" / name
    return paths


def _score(
    method: InpaintMethod,
    image: torch.Tensor,
    erased: torch.Tensor,
    mask: torch.Tensor,
    target: torch.Tensor,
) -> tuple[np.ndarray, float, dict[str, float]]:
    """Run ``method`` once, timed; return its 8-bit fill, seconds and metrics."""
    start = time.perf_counter()
    output = method(erased, mask).cpu()  # .cpu() waits for any GPU work: it belongs to the time
    seconds = time.perf_counter() - start
    if output.shape != image.shape:
        raise EvaluateError(
            f"{getattr(method, 'name', method)}: returned shape {tuple(output.shape)}, expected {tuple(image.shape)}"
        )
    filled = tensor_to_image(composite(image, output.float(), mask))  # (1, S, S, 3) uint8
    values = image_metrics(uint8_to_unit(filled), target, mask.double())
    return filled[0], seconds, {key: float(v[0]) for key, v in values.items()}


def evaluate(
    options: EvaluateOptions,
    methods: dict[str, InpaintMethod],
    console: Console | None = None,
    progress: bool = True,
) -> EvaluateResult:
    """Run every method on every image, log results, and write the report into ``options.folder``.

    With ``options.shard``, only the images that shard owns (:func:`owned_indexes`).
    """
    if not methods:
        raise EvaluateError("nothing to evaluate")
    console = console or Console(stderr=True)
    truth = GroundTruth(options)
    folder = options.folder
    folder.mkdir(parents=True, exist_ok=True)
    _check_identity(options, folder)
    _check_method_settings(folder, methods)
    holes = Holes(options, truth)
    log = ResultsLog(folder / RESULTS_LOG)
    indexes = owned_indexes(truth, options.shard)
    names = list(methods)
    warmed: set[str] = set()
    skipped: list[tuple[str, str]] = []
    sample_keys: list[str] = []
    computed = 0
    columns = (TextColumn("evaluate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        # No bar in logs: only on a terminal.
        with Progress(
            *columns, console=console, disable=not progress or not console.is_terminal
        ) as bar:
            task = bar.add_task("evaluate", total=len(indexes))
            for sample in iter_samples(truth, holes, indexes):
                bar.advance(task)
                if sample.problem is not None:
                    skipped.append((sample.key, sample.problem))
                    console.print(
                        f"skipped {sample.problem}", markup=False, highlight=False, soft_wrap=True
                    )
                    continue
                is_sample = sample.index < options.samples
                tiles = _sample_paths(folder, sample.key, names) if is_sample else {}
                pending = [
                    name
                    for name in names
                    if (sample.key, name) not in log.done
                    or (is_sample and not tiles[name].exists())
                ]
                if not pending:
                    if is_sample:
                        sample_keys.append(sample.key)
                    continue
                image = image_to_tensor(sample.image)
                mask = mask_to_tensor(sample.hole)
                # Methods never see the ground truth inside the hole.
                erased = composite(image, torch.zeros_like(image), mask)
                target = uint8_to_unit(sample.image)
                tv_truth = float(tv_loss(target)[0])
                scored = {}
                try:
                    for name in pending:
                        if options.warmup and name not in warmed:
                            methods[name](erased, mask)
                            warmed.add(name)
                        scored[name] = _score(methods[name], image, erased, mask, target)
                except Exception as err:  # noqa: BLE001 - e.g. PatchMatch on an all-hole mask
                    # Skip the whole image, so every method is compared on the same images.
                    problem = f"{sample.key}: {name} failed ({type(err).__name__}: {' '.join(str(err).split())})"
                    skipped.append((sample.key, problem))
                    console.print(
                        f"skipped {problem}", markup=False, highlight=False, soft_wrap=True
                    )
                    continue
                if is_sample:
                    sample_keys.append(sample.key)
                    for what, picture in (
                        ("input", masked_input(sample.image, sample.hole)),
                        ("ground truth", sample.image),
                    ):
                        if not tiles[what].exists():
                            write_png(tiles[what], picture)
                for name, (filled, seconds, values) in scored.items():
                    if is_sample:
                        write_png(tiles[name], filled)
                    if (sample.key, name) in log.done:
                        continue  # only its sheet tile was missing
                    row = {
                        "image": sample.key,
                        "index": sample.index,
                        "method": name,
                        "seconds": seconds,
                        "tv_ground_truth": tv_truth,
                    }
                    row.update({spec.key: encode_value(values[spec.key]) for spec in METRICS})
                    log.append(row)
                    computed += 1
    finally:
        log.close()

    run = _run_config(options, len(indexes), names, skipped)
    if options.shard is not None:
        run["shard"] = str(options.shard)
    summary = write_report(folder, run, len(truth), sample_keys)
    return EvaluateResult(summary=summary, images=len(indexes), computed=computed, skipped=skipped)


def _run_config(
    options: EvaluateOptions, images: int, names: list[str], skipped: list[tuple[str, str]]
) -> dict:
    """metrics.json's ``config``: what was evaluated, on how many images, what was skipped."""
    return {
        **options.identity(),
        "limit": options.limit,
        "images": images,
        "methods": names,
        "skipped": [{"image": k, "reason": r} for k, r in skipped],
    }


def write_report(
    folder: Path, run: dict, images: int, sample_keys: Sequence[str]
) -> dict[str, MethodSummary]:
    """metrics.json, metrics.csv and the comparison sheet of ``folder``, from its results.jsonl.

    ``run``: the run's config (metrics.json's ``config``; its ``methods`` are the report's
    rows); ``images``: rows of images from this index on (past ``--limit``) are left out;
    ``sample_keys``: the images of the sheet, whose tiles are in ``folder/samples``.
    """
    names = run["methods"]
    log = folder / RESULTS_LOG
    summary = summarize(read_rows(log, names, images), names)
    write_metrics_json(folder / "metrics.json", run, summary, lambda: read_rows(log, names, images))
    write_metrics_csv(folder / "metrics.csv", summary, lambda: read_rows(log, names, images))
    if sample_keys:
        labels = ["input", *names, "ground truth"]
        tiles = [
            [io.read_rgb(path) for path in _sample_paths(folder, key, names).values()]
            for key in sample_keys
        ]
        write_png(folder / "comparison.png", comparison_sheet(tiles, labels))
        io.write_text(
            folder / "comparison.html", comparison_html(tiles, labels, sample_keys, summary)
        )
    return summary


# --------------------------------------------------------------------------- shards


def shard_folders(output: Path) -> tuple[int, dict[int, Path]]:
    """The shard reports of a job array under ``output/shards``: N, and each shard's folder.

    Every shard ``0 .. N-1`` must have a folder, and all of one N.
    """
    found: dict[int, dict[int, Path]] = {}
    for path in sorted((output / SHARDS_DIR).glob("*-of-*")):
        match = re.fullmatch(r"(\d+)-of-(\d+)", path.name)
        if match and path.is_dir():
            found.setdefault(int(match[2]), {})[int(match[1])] = path
    if not found:
        raise EvaluateError(
            f"{output / SHARDS_DIR}: no shard reports; run evaluate --shard K/N -o {output} first"
        )
    if len(found) > 1:
        counts = ", ".join(str(n) for n in sorted(found))
        raise EvaluateError(
            f"{output / SHARDS_DIR}: holds shards of job arrays of different sizes (N = {counts}); "
            "keep the folders of one"
        )
    ((count, folders),) = found.items()
    missing = [f"{k}/{count}" for k in range(count) if k not in folders]
    if missing:
        raise EvaluateError(f"{output}: no report yet from shard {', '.join(missing)}; run it")
    return count, folders


def _finished_config(folder: Path, shard: Shard) -> dict:
    """The config of the last run of ``shard`` that finished (its metrics.json)."""
    path = folder / "metrics.json"
    if not path.exists():
        raise EvaluateError(
            f"{folder}: shard {shard} has not finished (no metrics.json); re-run it with --shard {shard}"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))["config"]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise EvaluateError(f"{path}: unreadable ({err}); re-run shard {shard}") from None


def _copy(source: Path, target: Path) -> None:
    """Copy a file, atomically."""
    with io.atomic_write(target) as tmp:
        shutil.copyfile(source, tmp)


def merge_shards(options: EvaluateOptions, methods: dict[str, InpaintMethod]) -> EvaluateResult:
    """Write into ``options.output`` the report one run would have written, from its shards'.

    ``options`` and ``methods`` are those the shards ran with (``--shard`` aside). Every
    shard must have finished with these methods and ``--limit``, and together they must hold
    a result for every (image, method) but the images they skipped; otherwise an error names
    the shard to re-run. results.jsonl gets the shards' rows in the order one run logs them
    (image by image, methods in order), so every mean and deviation is one run's to the
    last bit (s/image aside, which differs between any two runs); generated masks and the
    sheet's tiles are copied from the shards. A row the report already holds and the shards
    do not (an earlier run without --shard) is never dropped: that is an error.
    """
    if not methods:
        raise EvaluateError("nothing to evaluate")
    if options.shard is not None:
        raise EvaluateError("merging takes every shard: leave --shard out")
    truth = GroundTruth(options)
    names = list(methods)
    count, folders = shard_folders(options.output)
    rows: dict[tuple[int, int], dict] = {}
    problems: dict[str, str] = {}  # skipped image -> why
    for index, folder in sorted(folders.items()):
        shard = Shard(index, count)
        config = _finished_config(folder, shard)
        _check_identity(options, folder)
        _check_method_settings(folder, methods, record=False)
        if (
            sorted(config.get("methods", [])) != sorted(names)
            or config.get("limit") != options.limit
        ):
            raise EvaluateError(
                f"{folder}: the last finished run evaluated {config.get('methods')} with limit "
                f"{config.get('limit')}, not {names} with limit {options.limit}; re-run shard "
                f"{shard} with these methods"
            )
        problems.update((entry["image"], entry["reason"]) for entry in config["skipped"])
        for row in read_rows(folder / RESULTS_LOG, names, len(truth)):
            rows.setdefault((row["index"], names.index(row["method"])), row)
    for i, key in enumerate(truth.keys):
        for position, name in enumerate(names):
            if key not in problems and (i, position) not in rows:
                raise EvaluateError(
                    f"{folders[shard_of(key, count)]}: no result for {key} with {name}; "
                    "re-run that shard"
                )

    output = options.output
    _check_identity(options, output)
    _check_method_settings(output, methods)
    merged = [rows[position] for position in sorted(rows)]
    _refuse_to_drop(output / RESULTS_LOG, {(row["image"], row["method"]) for row in merged})
    with io.atomic_write(output / RESULTS_LOG) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in merged:
            f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
    if options.masks is None:  # generated masks, for --masks REPORT_DIR/masks
        for folder in folders.values():
            for mask in sorted((folder / MASKS_DIR).rglob("*.png")):
                target = output / MASKS_DIR / mask.relative_to(folder / MASKS_DIR)
                if not io.is_temporary(mask) and not target.exists():
                    _copy(mask, target)
    sample_keys = [key for key in truth.keys[: options.samples] if key not in problems]
    for key in sample_keys:
        shard_tiles = _sample_paths(folders[shard_of(key, count)], key, names)
        for what, target in _sample_paths(output, key, names).items():
            if not shard_tiles[what].exists():
                raise EvaluateError(
                    f"{shard_tiles[what]}: missing; re-run its shard with --samples {options.samples}"
                )
            _copy(shard_tiles[what], target)
    skipped = [(key, problems[key]) for key in truth.keys if key in problems]
    run = _run_config(options, len(truth), names, skipped)
    summary = write_report(output, run, len(truth), sample_keys)
    return EvaluateResult(summary=summary, images=len(truth), computed=0, skipped=skipped)


def _refuse_to_drop(log: Path, merged: set[tuple[str, str]]) -> None:
    """Raise if the results.jsonl at ``log`` holds a result that ``merged`` lacks."""
    if not log.exists():
        return
    with open(log, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            row = json.loads(line)
            if (row["image"], row["method"]) not in merged:
                raise EvaluateError(
                    f"{log}: holds a result the shards do not ({row['image']} with "
                    f"{row['method']}); merge into another -o, or delete it"
                )
