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

This module builds the methods and runs them; steps 1-2 are :mod:`inpaintkit.evaluate_samples`,
steps 4-5 :mod:`inpaintkit.evaluate_folder`, the merging :mod:`inpaintkit.evaluate_shards`, and
the options :mod:`inpaintkit.evaluate_options`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from inpaintkit.blend import BLEND_CHOICES, DEFAULT_BLEND
from inpaintkit.devices import resolve_device
from inpaintkit.evaluate_folder import (
    ResultsLog,
    check_identity,
    check_method_settings,
    run_config,
    sample_paths,
    write_report,
)
from inpaintkit.evaluate_options import RESULTS_LOG, EvaluateError, EvaluateOptions, EvaluateResult
from inpaintkit.evaluate_samples import GroundTruth, Holes, iter_samples, owned_indexes
from inpaintkit.methods import (
    BiharmonicMethod,
    DeepFillMethod,
    InpaintMethod,
    MeanColorMethod,
    PatchMatchMethod,
)
from inpaintkit.metrics import METRICS, image_metrics, tv_loss
from inpaintkit.report import encode_value, masked_input, write_png
from inpaintkit.tensors import (
    composite,
    image_to_tensor,
    mask_to_tensor,
    tensor_to_image,
    uint8_to_unit,
)
from inpaintkit.texture import TEXTURE_CHOICES, with_texture

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
    ``textures``: ``"network"`` keeps the network's own output; ``"patchmatch"`` and
    ``"transfer"`` add, after each DeepFill row, ``NAME+patchmatch`` or ``NAME+transfer``: that
    row's fill with its texture replaced (:mod:`inpaintkit.texture`), sharing the row's network.
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
            rows = {
                texture: row if texture == "network" else f"{row}+{texture}" for texture in textures
            }
            for texture in textures:
                if rows[texture] in methods:
                    raise EvaluateError(
                        f"{checkpoint}: a row would be named {rows[texture]!r} like another "
                        "method; name them with --checkpoint NAME=FILE"
                    )
            network = DeepFillMethod(checkpoint, device=resolved, blend=blend)
            for texture in textures:
                methods[rows[texture]] = with_texture(network, texture, patch_size)

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


# --------------------------------------------------------------------------- the run


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
    check_identity(options, folder)
    check_method_settings(folder, methods)
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
                tiles = sample_paths(folder, sample.key, names) if is_sample else {}
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

    run = run_config(options, len(indexes), names, skipped)
    if options.shard is not None:
        run["shard"] = str(options.shard)
    summary = write_report(folder, run, len(truth), sample_keys)
    return EvaluateResult(summary=summary, images=len(indexes), computed=computed, skipped=skipped)
