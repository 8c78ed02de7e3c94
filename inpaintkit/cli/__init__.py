"""The ``inpaintkit`` command-line tool: a thin Click layer over the library.

Each subcommand lives in its own module of this package and only parses options and
calls the library; no numerical work happens here.
"""

import click

from inpaintkit import __version__
from inpaintkit.cli.evaluate import evaluate_command
from inpaintkit.cli.export import export_command
from inpaintkit.cli.fill import fill_command
from inpaintkit.cli.prepare import prepare_command
from inpaintkit.cli.serve import serve_command
from inpaintkit.cli.train import train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="inpaintkit")
def main() -> None:
    """Generative image inpainting with contextual attention (DeepFill v1)."""


# Subcommands register themselves below, one import and one add_command each. Each sets a
# short_help, which `inpaintkit --help` shows whole (Click would cut a long docstring line).
main.add_command(evaluate_command)
main.add_command(export_command)
main.add_command(fill_command)
main.add_command(prepare_command)
main.add_command(serve_command)
main.add_command(train_command)
