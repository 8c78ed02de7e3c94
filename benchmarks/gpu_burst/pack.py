"""The training set that travels with the call: ../shared/data/train packed into one HDF5 file.

A lent machine receives the repository's working tree and the ignored paths a call carries,
64 MiB in all; ``../shared`` does not travel. ``inpaintkit prepare --resize none --store
encoded`` keeps each JPEG's own bytes (no re-encoding, 41 MiB for all 2,233 images) with the
default model's validation split (``--val-count 64 --seed 0``, docs/model-card.md), so the
burst's validation numbers are comparable to the model card's curve and the random 256² crops
are those the default model trained on.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "train"
#: Where ``pack`` writes the training set and ``run`` reads it (ignored by git; carried).
DEFAULT_DATA = ROOT / "data" / "gpu_burst" / "train.h5"
#: What travels to a lent machine at most: the working tree and the carried paths together.
TRAVEL_LIMIT = 64 * 2**20
PREPARE_OPTIONS = ("--resize", "none", "--store", "encoded", "--val-count", "64", "--seed", "0")


def working_tree_bytes() -> int:
    """Bytes of the files that travel without being carried: tracked and untracked-not-ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    paths = (ROOT / name.decode() for name in listed if name)
    return sum(p.stat().st_size for p in paths if p.is_file())


def pack(source: Path, out: Path) -> int:
    """Pack ``source`` into ``out``; print its size and what the call will carry. Returns an exit code."""
    command = [
        sys.executable,
        "-m",
        "inpaintkit.cli",
        "prepare",
        str(source),
        str(out),
        *PREPARE_OPTIONS,
        "--overwrite",
        "--quiet",
    ]
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode != 0:
        return done.returncode
    carried = sum(p.stat().st_size for p in out.parent.iterdir() if p.is_file())
    tree = working_tree_bytes()
    total = carried + tree
    print(
        f"{out}: {out.stat().st_size / 2**20:.1f} MiB; {out.parent} carries "
        f"{carried / 2**20:.1f} MiB, the working tree {tree / 2**20:.1f} MiB: "
        f"{total / 2**20:.1f} of the {TRAVEL_LIMIT // 2**20} MiB a call takes"
    )
    if total > TRAVEL_LIMIT:
        print("too big to travel: pack a subset (a file list as SOURCE)", file=sys.stderr)
        return 1
    return 0
