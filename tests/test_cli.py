"""The command-line entry point."""

import subprocess
import sys

from click.testing import CliRunner

from inpaintkit import __version__
from inpaintkit.cli import main


def test_version_and_help():
    runner = CliRunner()
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "inpainting" in result.output.lower()


def test_console_script_runs_as_a_module():
    out = subprocess.run(
        [sys.executable, "-c", "from inpaintkit.cli import main; main()", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert __version__ in out.stdout
