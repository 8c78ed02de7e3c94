"""``inpaintkit train``: parse options, load the recipe, call :func:`inpaintkit.train.train`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from inpaintkit.config import ConfigError, load_recipe
from inpaintkit.train import TrainingError, train
from inpaintkit.training_state import TrainingStateError


@click.command("train", context_settings={"ignore_unknown_options": False})
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1, metavar="[KEY.SUB=VALUE]...")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="HDF5 dataset written by `inpaintkit prepare` (train and val splits).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: config.yaml, generator.safetensors, training state, logs/.")
@click.option("--resume", is_flag=True, help="Continue the run saved in --out exactly where it stopped.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start a new run's generator from this checkpoint (fresh critics and optimisers).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = CUDA when available. Under torchrun each rank uses cuda:LOCAL_RANK.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_command(recipe: Path, overrides: tuple[str, ...], data: Path, out: Path, resume: bool,
                  init_from: Path | None, device: str, quiet: bool) -> None:  # fmt: skip
    """Train DeepFill v1 (Algorithm 1) with RECIPE.yaml, e.g. `loss.gan_loss_alpha=0.002` overrides."""
    try:
        config = load_recipe(recipe, overrides)
        result = train(config, data, out, resume=resume, init_from=init_from, device=device, progress=not quiet)
    except (ConfigError, TrainingError, TrainingStateError) as err:
        raise click.ClickException(str(err)) from None
    if result.interrupted:
        if result.main:  # under torchrun every rank returns; one line is enough
            name = signal.Signals(result.signal_number).name if result.signal_number else "signal"
            click.echo(f"{name}: stopped after step {result.step}; state saved in {out} (continue with --resume)")
        sys.exit(128 + (result.signal_number or 0))
    if result.main:
        click.echo(f"done: {result.step} steps; generator in {result.generator_path}")
