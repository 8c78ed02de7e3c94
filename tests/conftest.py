"""Helpers shared by the reliability tests: running the real CLI, in process or as a child."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from inpaintkit.cli import main

#: ``python -c`` line that runs the CLI in a child process (what a user's shell runs).
CLI_ENTRY = "from inpaintkit.cli import main; main()"


def cli_argv(*args: str | os.PathLike) -> list[str]:
    """argv for running ``inpaintkit ARGS...`` as a subprocess with this interpreter."""
    return [sys.executable, "-c", CLI_ENTRY, *map(str, args)]


def child_env() -> dict[str, str]:
    """Environment for CLI children: one thread each, the machine is shared."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


@pytest.fixture
def invoke():
    """``invoke(*args) -> click Result``: run ``inpaintkit ARGS...`` in this process.

    stdout and stderr are captured separately (``result.stdout``, ``result.stderr``);
    exceptions other than SystemExit propagate, so a traceback fails the test loudly.
    """

    def run(*args: str | os.PathLike) -> Result:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        return result

    return run


def error_lines(text: str) -> list[str]:
    """The lines of CLI output that report an error: a fatal one (``Error: ...``, as Click
    prints it) or one file that failed (fill's ``error: PATH: reason``)."""
    return [line for line in text.splitlines() if line.startswith(("Error: ", "error: "))]


def files_below(folder: Path) -> list[Path]:
    """Every file below ``folder`` (hidden ones included), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())
