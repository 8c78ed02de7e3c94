"""``inpaintkit fill``: parse options, build the method, call :mod:`inpaintkit.fill`."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click
from rich.console import Console

from inpaintkit.cli.options import (
    blend_option,
    checkpoint_option,
    device_option,
    hd_strategy_option,
    memory_budget_option,
    patch_size_option,
)
from inpaintkit.devices import resolve_device
from inpaintkit.distributed import init_distributed
from inpaintkit.fill import fill_files
from inpaintkit.fill_options import OUTPUT_FORMATS, FillError, FillOptions
from inpaintkit.fill_plan import pair_files, shard_jobs
from inpaintkit.methods import PRECISION_CHOICES, DeepFillMethod, PatchMatchMethod
from inpaintkit.onnx_method import OnnxMethod
from inpaintkit.sharding import ShardError, parse_shard
from inpaintkit.texture import TEXTURE_CHOICES, with_texture


@click.command("fill", short_help="Inpaint the holes of images given by mask files.")
@click.argument("images", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--masks",
    "-m",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Mask folder (paired by file stem, or STEM_mask) or one mask file for every image. White = hole.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder (sub-folders mirror IMAGES); with one input image, a file name also works.",
)
@click.option(
    "--method",
    type=click.Choice(["deepfill", "patchmatch"]),
    default="deepfill",
    show_default=True,
    help="DeepFill generator, or the PatchMatch baseline (no model needed).",
)
@checkpoint_option
@patch_size_option
@device_option()
@click.option(
    "--precision",
    type=click.Choice(PRECISION_CHOICES),
    default="auto",
    show_default=True,
    help="DeepFill autocast precision; auto = bf16 where the device computes it natively "
    "(CUDA, CPUs with AVX512-BF16/AMX), else fp32.",
)
@click.option(
    "--runtime",
    type=click.Choice(["torch", "onnxruntime"]),
    default="torch",
    show_default=True,
    help="DeepFill: the PyTorch generator, or a model from `inpaintkit export` (--onnx) run by "
    "onnxruntime on the CPU (pip install 'inpaintkit[onnx]'; docs/deploy.md).",
)
@click.option(
    "--onnx",
    "onnx_model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The .onnx model `inpaintkit export` wrote, for --runtime onnxruntime.",
)
@blend_option
@click.option(
    "--texture",
    type=click.Choice(TEXTURE_CHOICES),
    default="network",
    show_default=True,
    help="The network's own texture; patchmatch: PatchMatch copies patches of the photo onto "
    "the network's fill; transfer: the fill's low-pass plus detail copied from the photo "
    "(sharpest; docs/model.md, 'Texture from the photo', 'Texture transfer').",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Images of the same size inpainted together. Default: 16 on CUDA, 1 on CPU "
    "(where batching measured slower; docs/benchmarks.md).",
)
@click.option(
    "--attention",
    "attention_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write each image's attention map and attended-region overlay here (deepfill only).",
)
@click.option("--invert-masks", is_flag=True, help="Black = hole instead of white = hole.")
@click.option(
    "--dilate",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Grow every hole by N pixels (a disk of radius N).",
)
@click.option(
    "--resize-masks",
    is_flag=True,
    help="Resize a mask of the wrong size to its image (nearest) instead of failing that file.",
)
@click.option(
    "--max-size",
    type=click.IntRange(min=8),
    help="Inpaint at a working size with the longer side <= N, paste the upsampled fill into the "
    "original: the limit of --hd-strategy resize (auto with it is resize).",
)
@hd_strategy_option
@memory_budget_option()
@click.option(
    "--format",
    "format_",
    type=click.Choice(sorted(OUTPUT_FORMATS), case_sensitive=False),
    help="Output format (default: the input's).",
)
@click.option(
    "--overwrite", is_flag=True, help="Redo outputs that already exist (default: skip them)."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=min(4, os.cpu_count() or 1),
    show_default=True,
    help="Threads decoding input files (and as many encoding outputs) while the method runs.",
)
@click.option(
    "--shard",
    metavar="K/N|auto",
    help="Fill only shard K of N (K from 0) of a job array, without torch.distributed; "
    "auto: SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT. Shards never overlap (docs/scale.md).",
)
@click.option(
    "--quiet", is_flag=True, help="No progress bar (there is none when stderr is not a terminal)."
)
def fill_command(
    images: Path,
    masks: Path,
    output: Path,
    method: str,
    checkpoint: Path | None,
    patch_size: int | None,
    device: str,
    precision: str,
    runtime: str,
    onnx_model: Path | None,
    blend: str,
    texture: str,
    batch_size: int | None,
    attention_dir: Path | None,
    invert_masks: bool,
    dilate: int,
    resize_masks: bool,
    max_size: int | None,
    hd_strategy: str,
    memory_budget: int | None,
    format_: str | None,
    overwrite: bool,
    workers: int,
    shard: str | None,
    quiet: bool,
) -> None:
    """Fill the holes of IMAGES (a file or a folder) given by mask files.

    Outputs that exist are skipped, so a re-run of an interrupted command continues it.
    Under torchrun each rank fills its share; --shard K/N splits the work of a job array.

    \b
    inpaintkit fill photos --masks masks -o filled
    inpaintkit fill photo.jpg --masks hole.png -o photo_filled.png --method patchmatch
    """
    if runtime == "onnxruntime":
        _check_onnx_options(method, onnx_model, checkpoint, device, precision, attention_dir)
    elif onnx_model is not None:
        raise click.UsageError("--onnx needs --runtime onnxruntime")
    if texture != "network" and method != "deepfill":
        raise click.UsageError(
            f"--texture {texture} needs a network to guide it: --method deepfill"
        )
    if attention_dir is not None and method != "deepfill":
        raise click.UsageError(
            "--attention needs --method deepfill (PatchMatch computes no attention map)"
        )
    try:
        part = None if shard is None else parse_shard(shard)
    except ShardError as err:
        raise click.BadParameter(str(err), param_hint="--shard") from None
    console = Console(stderr=True)
    rerun = (
        "re-run the same command" + (" without --overwrite" if overwrite else "") + " to continue"
    )
    # Under torchrun (WORLD_SIZE > 1): this rank's place and device (cuda:LOCAL_RANK or the CPU).
    ranks, rank_device, summary = None, device, None
    try:
        jobs = pair_files(images, masks, output, format_, attention_dir)
        if not jobs:
            raise FillError(f"{images}: no images found")
        jobs = shard_jobs(jobs, part)
        ranks, torch_device = init_distributed(resolve_device(device).type == "cuda")
        if ranks.world > 1:
            rank_device = str(torch_device)
        if runtime == "onnxruntime":
            inpainter = OnnxMethod(onnx_model, blend=blend)
        elif method == "deepfill":
            inpainter = DeepFillMethod(
                checkpoint, device=rank_device, precision=precision, blend=blend
            )
            if attention_dir is not None and not inpainter.generator.config.contextual_attention:
                raise click.UsageError(
                    f"{inpainter.checkpoint}: a baseline model without contextual "
                    "attention; --attention has no attention map to draw"
                )
        else:
            inpainter = PatchMatchMethod(patch_size=patch_size, device=rank_device)
        inpainter = with_texture(inpainter, texture, patch_size)
        options = FillOptions(
            invert_masks=invert_masks,
            dilate=dilate,
            resize_masks=resize_masks,
            max_size=max_size,
            hd_strategy=hd_strategy,
            memory_budget=memory_budget,
            format=format_,
            overwrite=overwrite,
            batch_size=batch_size or (16 if inpainter.device.type == "cuda" else 1),
            workers=workers,
            attention_dir=attention_dir,
        )
        # One progress bar and one summary per job: rank 0's (every rank prints its own errors).
        summary = fill_files(
            jobs,
            inpainter,
            options,
            console=console,
            progress=not quiet and ranks.main,
            ranks=ranks,
        )
    except (FillError, ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    except KeyboardInterrupt:  # before the first image, or a second Ctrl-C while stopping
        console.print(f"Interrupted; {rerun}", markup=False, highlight=False)
        sys.exit(128 + signal.SIGINT)
    finally:
        if summary is None and ranks is not None:  # stopped early: no rank to wait for
            ranks.close()
    # Every rank exits with the whole job's code (summed over the ranks); rank 0 says it.
    prefix = "" if part is None else f"shard {part}: "
    if summary.interrupted:
        message = f"{prefix}Interrupted: {summary.done} of {summary.total} done; {rerun}"
        code = 128 + signal.SIGINT
    else:
        message, code = prefix + str(summary), 1 if summary.failed else 0
    if ranks.main:
        console.print(message, markup=False, highlight=False, soft_wrap=True)
    # torchrun stops every rank as soon as one exits non-zero: not before rank 0 has spoken.
    ranks.barrier()
    ranks.close()
    if code:
        sys.exit(code)


def _check_onnx_options(
    method: str,
    onnx_model: Path | None,
    checkpoint: Path | None,
    device: str,
    precision: str,
    attention_dir: Path | None,
) -> None:
    """Refuse what ``--runtime onnxruntime`` cannot do, one line each."""
    if onnx_model is None:
        raise click.UsageError(
            "--runtime onnxruntime needs --onnx MODEL (from `inpaintkit export`)"
        )
    if method != "deepfill":
        raise click.UsageError("--runtime onnxruntime runs DeepFill; --method must be deepfill")
    if checkpoint is not None:
        raise click.UsageError(
            "--checkpoint does not apply to --runtime onnxruntime: the weights are in the "
            "--onnx model (export that checkpoint with `inpaintkit export --checkpoint`)"
        )
    if device == "cuda" or precision not in ("auto", "fp32"):
        raise click.UsageError("--runtime onnxruntime runs in fp32 on the CPU")
    if attention_dir is not None:
        raise click.UsageError("--attention needs --runtime torch (the ONNX model has no offsets)")
