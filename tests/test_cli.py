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


def test_command_summaries_are_whole_and_quiet_is_spelled_one_way():
    result = CliRunner().invoke(main, ["--help"], terminal_width=80)
    commands = result.output.split("Commands:")[1].strip().splitlines()
    assert len(commands) == len(main.commands), result.output
    for line in commands:  # Click cuts a long first docstring line with "..." or mid-sentence
        assert line.endswith(".") and not line.endswith("..."), line
    for name, command in main.commands.items():
        visible = {
            opt
            for param in command.params
            if not getattr(param, "hidden", False)
            for opt in param.opts
        }
        assert "--quiet" in visible and "--no-progress" not in visible, name
