"""``python -m inpaintkit.cli`` — what ``torchrun -m inpaintkit.cli train ...`` runs."""

from inpaintkit.cli import main

main()
