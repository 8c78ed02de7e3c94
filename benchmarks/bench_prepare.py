"""images/s of `inpaintkit prepare` against a single-process Pillow loop doing the same work.

Inputs: /work/shared/data/eval/photos upscaled (bicubic) to 1280x960 JPEG q90 in a temp dir,
so every input is >= 1 MP. Every pipeline hashes, decodes, resizes (shorter side 256, Lanczos),
centre-crops and stores raw uint8 in HDF5. The strongest single-process alternative is the loop
with draft (reduced-scale DCT) decoding, the same decoding prepare does: compare against it. Usage: python benchmarks/bench_prepare.py [--quick] [--count N]
"""

from __future__ import annotations

import argparse
import hashlib
import io as _bytes_io
import multiprocessing
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


def pillow_loop(paths: list[Path], out: Path, size: int = 256, draft: bool = False) -> None:
    """The plain way, in one process: per file read, hash, decode, resize, crop, store.

    With ``draft``, JPEGs are decoded at reduced scale in the DCT first (what prepare does),
    so the two loops bracket prepare: the same output, with and without its decoding trick.
    """
    with h5py.File(out, "w") as f:
        images = f.create_dataset(
            "images", (len(paths), size, size, 3), np.uint8, chunks=(1, size, size, 3)
        )
        hashes = []
        for i, path in enumerate(paths):
            data = path.read_bytes()
            hashes.append(hashlib.sha256(data).hexdigest())
            with Image.open(_bytes_io.BytesIO(data)) as image:
                if draft:
                    image.draft("RGB", (size, size))
                image = image.convert("RGB")
                scale = size / min(image.size)
                image = image.resize(
                    (round(image.width * scale), round(image.height * scale)),
                    Image.Resampling.LANCZOS,
                )
                left, top = (image.width - size) // 2, (image.height - size) // 2
                images[i] = np.asarray(image.crop((left, top, left + size, top + size)))
        f.create_dataset("sha256", data=np.array(hashes, dtype="S64"))


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def free_core_speedup(workers: int = 2, n: int = 3_000_000) -> float:
    """Speed-up of ``workers`` processes over one on pure CPU work: how many cores were free.

    On a shared machine this bounds what any parallel pipeline could have shown in this run.
    """
    start = time.perf_counter()
    for _ in range(workers):
        _burn(n)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        start = time.perf_counter()
        pool.map(_burn, [n] * workers, chunksize=1)
        parallel = time.perf_counter() - start
    return serial / parallel


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
        cores_before = free_core_speedup()
        rows = []
        for name, draft in (("full decode", False), ("draft decode, as prepare", True)):
            start = time.perf_counter()
            pillow_loop(paths, tmp / f"loop{int(draft)}.h5", draft=draft)
            rows.append(
                (f"single-process Pillow loop ({name})", 1, count / (time.perf_counter() - start))
            )
        for workers in sorted({1, 2, os.cpu_count() or 1}):
            start = time.perf_counter()
            prepare_dataset(
                src, tmp / f"w{workers}" / "d.h5", PrepareOptions(size=256), workers=workers
            )
            rate = count / (time.perf_counter() - start)
            rows.append((f"inpaintkit prepare --workers {workers}", workers, rate))
        cores_after = free_core_speedup()
    full, drafted = rows[0][2], rows[1][2]
    print("## prepare: images/s on >= 1 MP photos\n")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"Command: `python benchmarks/bench_prepare.py{' --quick' if args.quick else ''}`")
    print(
        f"Inputs: {count} JPEGs (q90) made by upscaling {PHOTOS} to 1280x960 (bicubic); output 256x256 raw.\n"
    )
    print(
        f"Free cores (2 processes vs 1 on a pure-Python loop, same run): "
        f"{cores_before:.2f}x before, {cores_after:.2f}x after."
    )
    print(f"Load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}\n")
    print(
        "| pipeline | processes | images/s | vs loop, full decode | vs loop, draft decode |\n"
        "|---|---|---|---|---|"
    )
    for name, workers, rate in rows:
        print(f"| {name} | {workers} | {rate:.1f} | {rate / full:.2f}x | {rate / drafted:.2f}x |")


if __name__ == "__main__":
    main()
