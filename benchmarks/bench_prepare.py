"""images/s of `inpaintkit prepare` against a single-process Pillow loop doing the same work.

Inputs: /work/shared/data/eval/photos upscaled (bicubic) to 1280x960 JPEG q90 in a temp dir,
so every input is >= 1 MP. Both sides decode, resize (shorter side 256, Lanczos), centre-crop
and store raw uint8 in HDF5. Usage: python benchmarks/bench_prepare.py [--quick] [--count N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from inpaintkit import io
from inpaintkit.prepare import PrepareOptions, prepare_dataset

PHOTOS = Path("/work/shared/data/eval/photos")


def make_inputs(folder: Path, count: int) -> list[Path]:
    photos = io.list_images(PHOTOS)
    paths = []
    for i in range(count):
        path = folder / f"photo{i:04d}.jpg"
        with Image.open(photos[i % len(photos)]) as image:
            big = image.convert("RGB").resize((1280, 960), Image.Resampling.BICUBIC)
            # Vary each copy so no two files share a hash (duplicates would be skipped).
            big.putpixel((i % 1280, i // 1280), (i % 256, 0, 0))
            big.save(path, quality=90)
        paths.append(path)
    return paths


def pillow_loop(paths: list[Path], out: Path, size: int = 256) -> None:
    """The plain way: open, decode in full, resize, crop, append to one HDF5 dataset."""
    with h5py.File(out, "w") as f:
        images = f.create_dataset(
            "images", (len(paths), size, size, 3), np.uint8, chunks=(1, size, size, 3)
        )
        for i, path in enumerate(paths):
            with Image.open(path) as image:
                image = image.convert("RGB")
                scale = size / min(image.size)
                image = image.resize(
                    (round(image.width * scale), round(image.height * scale)),
                    Image.Resampling.LANCZOS,
                )
                left, top = (image.width - size) // 2, (image.height - size) // 2
                images[i] = np.asarray(image.crop((left, top, left + size, top + size)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="60 images instead of 500")
    parser.add_argument("--count", type=int)
    args = parser.parse_args()
    count = args.count or (60 if args.quick else 500)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        src.mkdir()
        paths = make_inputs(src, count)
        start = time.perf_counter()
        pillow_loop(paths, tmp / "loop.h5")
        loop_rate = count / (time.perf_counter() - start)
        rows = [("single-process Pillow loop (full decode)", 1, loop_rate)]
        for workers in sorted({1, os.cpu_count() or 1}):
            start = time.perf_counter()
            prepare_dataset(
                src, tmp / f"w{workers}" / "d.h5", PrepareOptions(size=256), workers=workers
            )
            rows.append(
                (
                    f"inpaintkit prepare --workers {workers}",
                    workers,
                    count / (time.perf_counter() - start),
                )
            )
    print("## prepare: images/s on >= 1 MP photos\n")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"Command: `python benchmarks/bench_prepare.py{' --quick' if args.quick else ''}`")
    print(
        f"Inputs: {count} JPEGs (q90) made by upscaling {PHOTOS} to 1280x960 (bicubic); output 256x256 raw.\n"
    )
    print("| pipeline | processes | images/s | vs Pillow loop |\n|---|---|---|---|")
    for name, workers, rate in rows:
        print(f"| {name} | {workers} | {rate:.1f} | {rate / loop_rate:.2f}x |")


if __name__ == "__main__":
    main()
