"""How good are ``inpaintkit serve``'s time estimates? Estimate against actual, fill after fill.

A fill queue as the server builds it (the default model and PatchMatch on the CPU, the start-up
measurement on) fills a photo (scikit-image's astronaut) at several sizes with a square hole of
a quarter of the shorter side, in the order a user might: each fill's estimate is what the page
showed (``Job.estimate``), its time the worker's (``finished - started``).

Usage: python benchmarks/bench_serve_estimate.py [--methods deepfill patchmatch]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from PIL import Image
from skimage import data

from inpaintkit.serve.app import build_methods
from inpaintkit.serve.jobs import FillQueue
from inpaintkit.serve.store import ImageStore

#: (height, width) of each fill, in order; the 2048 px ones go through ``auto``'s crop.
SIZES = [(512, 512), (768, 1024), (512, 512), (1536, 2048), (768, 1024), (1536, 2048)]


def photo_and_hole(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.asarray(Image.fromarray(data.astronaut()).resize((width, height)))
    hole = np.zeros((height, width), bool)
    side = min(height, width) // 4
    top, left = height // 3, width // 2
    hole[top : top + side, left : left + side] = True
    return pixels, hole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["deepfill", "patchmatch"])
    args = parser.parse_args()
    methods, _ = build_methods(None, "cpu")
    methods = {name: methods[name] for name in args.methods}
    queue = FillQueue(methods, ImageStore(), calibrate=True)
    print(f"load average at start: {os.getloadavg()}")
    print("| method | size | strategy | estimate (s) | actual (s) | actual / estimate | basis |")
    print("|---|---|---|---|---|---|---|")
    try:
        for name in methods:
            for height, width in SIZES:
                pixels, hole = photo_and_hole(height, width)
                job = queue.submit(name, pixels, hole, f"{width}x{height}.png")
                while not job.final:
                    time.sleep(0.05)
                actual = job.finished - job.started
                estimate = "none" if job.estimate is None else f"{job.estimate:.2f}"
                ratio = "" if job.estimate is None else f"{actual / job.estimate:.2f}"
                print(f"| {name} | {width}×{height} | {job.plan.strategy} | {estimate} | "
                      f"{actual:.2f} | {ratio} | {job.estimate_basis} |", flush=True)  # fmt: skip
    finally:
        queue.close()
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
