"""``inpaintkit export``: parse options, call :func:`inpaintkit.export.export_onnx`."""

from __future__ import annotations

from pathlib import Path

import click

from inpaintkit.checkpoint import CheckpointError
from inpaintkit.cli.options import checkpoint_option
from inpaintkit.export import ExportError, export_onnx


@click.command("export", short_help="Write the generator as an ONNX model (attention included).")
@checkpoint_option
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .onnx file to write (atomically: a temporary name, renamed when checked).",
)
@click.option("--quiet", is_flag=True, help="Print nothing on success (there is no progress bar).")
def export_command(checkpoint: Path | None, output: Path, quiet: bool) -> None:
    """Export the generator, contextual attention included, to ONNX for onnxruntime.

    Batch, height and width are dynamic (H and W multiples of 8, at least 72); the image and
    mask convention and the checkpoint's SHA-256 are in the model's metadata (docs/deploy.md).

    \b
    inpaintkit export -o deepfill.onnx
    inpaintkit fill photos --masks masks -o filled --runtime onnxruntime --onnx deepfill.onnx
    """
    try:
        summary = export_onnx(output, checkpoint)
    except (ExportError, CheckpointError, OSError) as err:
        raise click.ClickException(str(err)) from None
    if not quiet:
        click.echo(str(summary))
