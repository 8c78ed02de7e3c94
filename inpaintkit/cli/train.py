"""``inpaintkit train``: parse options, load the recipe, call :func:`inpaintkit.train.train`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from inpaintkit.cli.options import device_option
from inpaintkit.config import ConfigError, load_recipe, packaged_recipes
from inpaintkit.train import TrainingError, train
from inpaintkit.training_state import TrainingStateError


def _list_recipes(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    recipes = packaged_recipes()
    width = max(map(len, recipes))
    for name, description in recipes.items():
        click.echo(f"{name:<{width}}  {description}")
    ctx.exit()


@click.command(
    "train",
    short_help="Train the generator against global and local WGAN-GP critics.",
    epilog="""\b
Any recipe value can be overridden as KEY.SUB=VALUE after the recipe (docs/training.md):
  inpaintkit train tiny --data d.h5 --out runs/t --steps 20
  inpaintkit train places2 --data d.h5 --out runs/p optimizer.lr=5e-5 data.num_workers=2
  inpaintkit train default --data d.h5 --out runs/d --resume data.image_size=256 data.batch_size=2
""",
)
@click.argument("recipe", metavar="RECIPE")
@click.argument("overrides", nargs=-1, metavar="[KEY.SUB=VALUE]...")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="HDF5 dataset written by `inpaintkit prepare` (train and val splits).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder: config.yaml, generator.safetensors, training state, logs/.",
)
@click.option(
    "--steps", type=click.IntRange(min=1), help="Generator steps in all (same as schedule.steps=N)."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Samples per step and process (same as data.batch_size=N).",
)
@click.option(
    "--resume", is_flag=True, help="Continue the run saved in --out exactly where it stopped."
)
@click.option(
    "--init-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Start a new run's generator from this checkpoint (fresh critics and optimisers).",
)
@device_option("auto = CUDA when available. Under torchrun each rank uses cuda:LOCAL_RANK.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--list-recipes",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_list_recipes,
    help="List the packaged recipes, one line each, and exit.",
)
def train_command(
    recipe: str,
    overrides: tuple[str, ...],
    data: Path,
    out: Path,
    steps: int | None,
    batch_size: int | None,
    resume: bool,
    init_from: Path | None,
    device: str,
    quiet: bool,
) -> None:
    """Train DeepFill v1 (Algorithm 1) with RECIPE: a packaged recipe's name (see --list-recipes) or a YAML file."""
    flags = [f"schedule.steps={steps}"] * (steps is not None) + [
        f"data.batch_size={batch_size}"
    ] * (batch_size is not None)
    try:
        config = load_recipe(recipe, [*overrides, *flags])
        result = train(
            config, data, out, resume=resume, init_from=init_from, device=device, progress=not quiet
        )
    except (ConfigError, TrainingError, TrainingStateError) as err:
        raise click.ClickException(str(err)) from None
    if result.interrupted:
        if result.main:  # under torchrun every rank returns; one line is enough
            name = signal.Signals(result.signal_number).name if result.signal_number else "signal"
            click.echo(
                f"{name}: stopped after step {result.step}; state saved in {out} (continue with --resume)"
            )
        sys.exit(128 + (result.signal_number or 0))
    if result.main:
        click.echo(f"done: {result.step} steps; generator in {result.generator_path}")
