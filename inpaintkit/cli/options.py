"""Click options that several commands declare alike, written once so their help stays the same."""

from __future__ import annotations

from pathlib import Path

import click

from inpaintkit.blend import BLEND_CHOICES, DEFAULT_BLEND
from inpaintkit.checkpoint import BUNDLED_MODELS, DEFAULT_MODEL, CheckpointError, resolve_checkpoint
from inpaintkit.hd_strategy import DEFAULT_STRATEGY, STRATEGIES
from inpaintkit.memory import BUDGET_ENV, MemoryBudgetError, parse_bytes


def device_option(help: str = "auto = CUDA when available."):
    """``--device auto|cpu|cuda`` (default auto), the rule of :func:`inpaintkit.devices.resolve_device`."""
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help=help,
    )


class ModelParam(click.ParamType):
    """A bundled model's name (``BUNDLED_MODELS``) or a generator file -> the weights file."""

    name = "NAME|FILE"

    def convert(
        self, value: str | Path, param: click.Parameter | None, ctx: click.Context | None
    ) -> Path:
        try:
            return resolve_checkpoint(value)
        except CheckpointError as err:
            self.fail(str(err), param, ctx)


#: ``--checkpoint NAME|FILE``: one generator; without it, the default model that ships in the package.
checkpoint_option = click.option(
    "--checkpoint",
    type=ModelParam(),
    help=f"A bundled model by name ({', '.join(BUNDLED_MODELS)}; docs/model-card.md) or "
    "generator weights (.safetensors from `inpaintkit train`). "
    f"Default: {DEFAULT_MODEL}.",
)


def _odd(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value % 2 == 0:
        raise click.BadParameter(f"{value} is even; patches are centred, so the side must be odd")
    return value


#: ``--patch-size N``: PatchMatch's patch side; ``None`` keeps the library default.
patch_size_option = click.option(
    "--patch-size",
    type=click.IntRange(min=1),
    default=None,
    callback=_odd,
    help="PatchMatch's square patch side, odd (default 5; 9 continues regular textures "
    "such as stripes and checks better, docs/patchmatch.md).",
)


#: ``--blend poisson|none``: how a DeepFill prediction goes into the holes.
blend_option = click.option(
    "--blend",
    type=click.Choice(BLEND_CHOICES),
    default=DEFAULT_BLEND,
    show_default=True,
    help="DeepFill: Poisson-blend the prediction into the holes, which hides the seams "
    "(GLCIC's post-processing; +0.7 dB hole PSNR on free-form holes, docs/model.md), or "
    "'none' to paste it as the paper does.",
)


#: ``--hd-strategy auto|original|resize|crop``: how a photo larger than the training scale is filled.
hd_strategy_option = click.option(
    "--hd-strategy",
    type=click.Choice(STRATEGIES),
    default=DEFAULT_STRATEGY,
    show_default=True,
    help="Large photos: 'crop' fills a box around each hole region at the model's scale and "
    "pastes it back; 'resize' fills the whole photo scaled to --max-size (default 1024); "
    "'original' at full size; 'auto' picks per image (docs/scale.md, 'Big photos').",
)


def _memory_budget(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_bytes(value)
    except MemoryBudgetError as err:
        raise click.BadParameter(str(err)) from None


def memory_budget_option(
    help: str = "Memory one image may need, e.g. 8G or 512M; larger ones are refused from their "
    "header with the working size that fits",
):
    """``--memory-budget SIZE`` -> bytes or None (inpaintkit.memory; None: its default budget)."""
    return click.option(
        "--memory-budget",
        metavar="SIZE",
        callback=_memory_budget,
        help=f"{help} (default: {BUDGET_ENV}, else half the memory available at start).",
    )
