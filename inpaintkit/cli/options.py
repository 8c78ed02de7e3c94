"""Click options that several commands declare alike, written once so their help stays the same."""

from __future__ import annotations

from pathlib import Path

import click


def device_option(help: str = "auto = CUDA when available."):
    """``--device auto|cpu|cuda`` (default auto), the rule of :func:`inpaintkit.devices.resolve_device`."""
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help=help,
    )


#: ``--checkpoint FILE``: one generator; without it, the default model that ships in the package.
checkpoint_option = click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Generator weights (.safetensors from `inpaintkit train`). "
    "Default: the model that ships with inpaintkit (docs/model-card.md).",
)
