"""``python -m inpaintkit`` — the same as the ``inpaintkit`` command."""

from inpaintkit.cli import main

main()
