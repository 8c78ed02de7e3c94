"""``inpaintkit evaluate``: parse options, build the methods, call :mod:`inpaintkit.evaluate`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import click
from rich.console import Console

from inpaintkit.blend import BLEND_CHOICES, DEFAULT_BLEND
from inpaintkit.checkpoint import BUNDLED_MODELS, CheckpointError, resolve_checkpoint
from inpaintkit.cli.options import device_option, patch_size_option
from inpaintkit.devices import resolve_device
from inpaintkit.distributed import init_distributed
from inpaintkit.evaluate import build_methods, evaluate
from inpaintkit.evaluate_options import GENERATED_MASK_KINDS, EvaluateError, EvaluateOptions
from inpaintkit.evaluate_samples import choose_split
from inpaintkit.evaluate_shards import merge_shards
from inpaintkit.report import summary_table
from inpaintkit.sharding import Shard, ShardError, parse_shard
from inpaintkit.texture import TEXTURE_CHOICES


class CheckpointParam(click.ParamType):
    """``FILE``, ``NAME=FILE`` or a bundled model's name -> ``FILE`` or ``(NAME, FILE)``; the
    file must exist. A bundled model is labelled by its name."""

    name = "[NAME=]FILE|MODEL"

    def convert(
        self,
        value: str | tuple[str, Path],
        param: click.Parameter | None,
        ctx: click.Context | None,
    ) -> Path | tuple[str, Path]:
        if isinstance(value, tuple):
            return value
        name, path = None, Path(value)
        if not path.exists() and value in BUNDLED_MODELS:
            try:
                return value, resolve_checkpoint(value)
            except CheckpointError as err:
                self.fail(str(err), param, ctx)
        if not path.exists() and "=" in value:
            name, _, rest = value.partition("=")
            path = Path(rest)
        if not path.is_file():
            self.fail(f"{path}: no such file", param, ctx)
        return path if name is None else (name, path)


@click.command("evaluate", short_help="Score methods on the same images and holes (Table 1).")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder: results.jsonl, metrics.json/.csv, comparison.png/.html, masks/.",
)
@click.option(
    "--split",
    type=click.Choice(["val", "train", "all"]),
    help="Split of a prepared HDF5 DATA (ignored for a folder). Default: val, or train when "
    "the file has no val images.",
)
@click.option(
    "--masks",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Mask folder paired with the images by name (as fill pairs them). White = hole.",
)
@click.option(
    "--mask-kind",
    type=click.Choice(GENERATED_MASK_KINDS),
    default="rect",
    show_default=True,
    help="Without --masks: generate these holes (saved to OUTPUT/masks for reuse).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated masks.")
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    type=CheckpointParam(),
    help="A generator (.safetensors from `inpaintkit train`) or a bundled model by name "
    f"({', '.join(BUNDLED_MODELS)}), repeatable. Named NAME if given as NAME=FILE, a bundled "
    "model by its name, else by its file stem, or by its run folder when stems collide.",
)
@click.option(
    "--method",
    "extra_methods",
    multiple=True,
    type=click.Choice(["patchmatch", "deepfill"]),
    help="patchmatch: the PatchMatch baseline; deepfill: the bundled model. Repeatable.",
)
@click.option(
    "--floors/--no-floors",
    default=True,
    show_default=True,
    help="Also run the two floors every method must beat: mean colour and biharmonic diffusion.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N images.")
@click.option(
    "--size",
    type=click.IntRange(min=11),
    default=256,
    show_default=True,
    help="Ground truth at SIZE x SIZE: a folder's images are resized (shorter side) and "
    "centre-cropped; an HDF5's are centre-cropped, and upscaled first if smaller.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="Images shown in the comparison sheet.",
)
@patch_size_option
@click.option(
    "--blend",
    type=click.Choice(BLEND_CHOICES),
    multiple=True,
    default=[DEFAULT_BLEND],
    show_default=True,
    help="How DeepFill methods put their prediction into the hole: Poisson blending or "
    "pasted as the paper does (docs/model.md, 'Blending'). Given twice, each DeepFill method is "
    "two rows, NAME blended and NAME-pasted.",
)
@click.option(
    "--texture",
    type=click.Choice(TEXTURE_CHOICES),
    multiple=True,
    default=["network"],
    show_default=True,
    help="DeepFill methods' texture: the network's own; patchmatch: PatchMatch copies known "
    "patches onto the network's fill; transfer: the fill's low-pass plus detail copied from "
    "the photo (docs/model.md, 'Texture from the photo'). Given more than once, each DeepFill "
    "row is followed by NAME+patchmatch and NAME+transfer rows.",
)
@device_option()
@click.option(
    "--shard",
    metavar="K/N|auto",
    help="Evaluate only shard K of N (K from 0) of a job array, into OUTPUT/shards/K-of-N; "
    "auto: SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT (docs/scale.md).",
)
@click.option(
    "--merge-shards",
    "merge",
    is_flag=True,
    help="Write OUTPUT's report from its finished shards (same options, without --shard): "
    "the report one run would have written.",
)
@click.option(
    "--quiet", is_flag=True, help="No progress bar (there is none when stderr is not a terminal)."
)
# The old spelling of --quiet, kept working.
@click.option("--no-progress", is_flag=True, hidden=True)
def evaluate_command(
    data: Path,
    output: Path,
    split: str | None,
    masks: Path | None,
    mask_kind: str,
    seed: int,
    checkpoints: tuple[Path | tuple[str, Path], ...],
    extra_methods: tuple[str, ...],
    floors: bool,
    limit: int | None,
    size: int,
    samples: int,
    patch_size: int | None,
    blend: tuple[str, ...],
    texture: tuple[str, ...],
    device: str,
    shard: str | None,
    merge: bool,
    quiet: bool,
    no_progress: bool,
) -> None:
    """Score methods on the same images and masks: a Table 1 of the paper, and a comparison sheet.

    DATA is a prepared HDF5 file (its --split) or a folder of ground-truth images. A re-run
    with the same OUTPUT continues where the last one stopped. Under torchrun each rank
    evaluates a shard and rank 0 merges them (docs/scale.md).

    \b
    inpaintkit evaluate val.h5 --method patchmatch --checkpoint full.safetensors -o report
    inpaintkit evaluate photos/ --masks holes/ --checkpoint runs/a/generator.safetensors --checkpoint b=runs/b/generator.safetensors -o report
    """
    if shard is not None and merge:
        raise click.UsageError("--merge-shards merges every shard: leave --shard out")
    try:
        part = None if shard is None else parse_shard(shard)
    except ShardError as err:
        raise click.BadParameter(str(err), param_hint="--shard") from None
    ranks = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if shard is not None or merge:
            raise click.UsageError(
                "under torchrun every rank evaluates a shard of its own and rank 0 merges "
                "them: leave --shard and --merge-shards out"
            )
        # The ranks only wait for each other once, at the end, so gloo on the CPU (and its
        # 30-minute timeout rather than NCCL's 10) whatever the device; each rank takes its
        # own GPU.
        ranks, _ = init_distributed(use_cuda=False)
        part = Shard(ranks.rank, ranks.world)
        if resolve_device(device).type == "cuda":
            device = f"cuda:{ranks.local_rank}"
    console = Console(stderr=True)
    try:
        split, note = choose_split(data, split)
        if note:
            console.print(note, markup=False, highlight=False, soft_wrap=True)
        options = EvaluateOptions(
            data=data,
            output=output,
            split=split,
            size=size,
            masks=masks,
            mask_kind=mask_kind,
            seed=seed,
            limit=limit,
            samples=samples,
            shard=part,
        )
        methods = build_methods(
            checkpoints,
            patchmatch="patchmatch" in extra_methods,
            deepfill_default="deepfill" in extra_methods,
            floors=floors,
            device=device,
            patch_size=patch_size,
            blends=blend,
            textures=texture,
        )
        if merge:
            result = merge_shards(options, methods)
        else:
            progress = not (quiet or no_progress) and (ranks is None or ranks.main)
            result = evaluate(options, methods, console=console, progress=progress)
        if ranks is not None:
            ranks.barrier()  # every shard has finished
            if ranks.main:
                options = dataclasses.replace(options, shard=None)
                result, part, merge = merge_shards(options, methods), None, True
    except (EvaluateError, ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    finally:
        if ranks is not None:
            ranks.close()
    if ranks is not None and not ranks.main:
        return  # rank 0 shows the merged report
    # Piped or redirected output has no terminal width; do not let rich squeeze the table to 80.
    out = Console() if Console().is_terminal else Console(width=200)
    title = f"{data.name}: {result.images} images" + (f", shard {part}" if part else "")
    out.print(summary_table(result.summary, title=title))
    done = "merged from the shards" if merge else f"{result.computed} new results"
    console.print(
        f"{result.images} images, {done}, {len(result.skipped)} skipped; "
        f"report in {options.folder}",
        markup=False,
        highlight=False,
        soft_wrap=True,  # a path cut in two cannot be pasted
    )
