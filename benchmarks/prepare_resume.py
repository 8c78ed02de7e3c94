"""``prepare --resume`` after a SIGKILL at about half the work, against a fresh run.

Runs the real CLI on SRC (``--size 256 --workers 2``) twice per repeat: a fresh run, then a
run killed with SIGKILL once its committed parts hold half the inputs, re-run with
``--resume``; prints the wall seconds of each and whether the two OUT.h5 files are
byte-identical. docs/prepare.md, "Resuming after a crash".

    python benchmarks/prepare_resume.py ../shared/data/train --work /tmp/prepare_resume
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from inpaintkit.io import list_images
from inpaintkit.prepare import WRITE_BATCH, parts_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/prepare_resume"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    half = len(list_images(args.src)) // 2
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    cmd = [sys.executable, "-m", "inpaintkit", "prepare", str(args.src)]
    options = ["--size", "256", "--workers", "2", "--quiet"]
    for repeat in range(args.repeats):
        fresh, killed = args.work / f"fresh{repeat}.h5", args.work / f"killed{repeat}.h5"
        start = time.perf_counter()
        subprocess.run([*cmd, str(fresh), *options], check=True, capture_output=True)
        print(f"fresh run: {time.perf_counter() - start:.1f} s", flush=True)
        child = subprocess.Popen([*cmd, str(killed), *options], stderr=subprocess.DEVNULL)
        while len(list(parts_path(killed).glob("part-*.h5"))) * WRITE_BATCH < half:
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        parts = len(list(parts_path(killed).glob("part-*.h5")))
        start = time.perf_counter()
        rerun = subprocess.run(
            [*cmd, str(killed), *options, "--resume"], capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        print(
            f"killed with {parts} parts; --resume: {seconds:.1f} s ({rerun.stderr.splitlines()[0]})"
        )
        print(f"byte-identical: {killed.read_bytes() == fresh.read_bytes()}", flush=True)
        fresh.unlink()
        killed.unlink()


if __name__ == "__main__":
    main()
