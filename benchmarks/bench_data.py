"""samples/s of InpaintingDataset at 256x256 through a DataLoader with 2 workers, raw vs encoded.

Data: 200 generated 320x320 images (smooth noise, PNG-compressible like photos) packed by
prepare with --resize none. Usage: python benchmarks/bench_data.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from skimage import data as skdata
from torch.utils.data import DataLoader

from inpaintkit.data import InpaintingDataset
from inpaintkit.prepare import PrepareOptions, prepare_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the main process, which collates batches (default 1: "
        "with spare cores busy, OpenMP spin-waiting made collation 100x slower here)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = 1000 if args.quick else 5000
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "src").mkdir()
        for i in range(200):
            photo = photos[i % len(photos)]
            y, x = (i * 7) % (photo.shape[0] - 320), (i * 13) % (photo.shape[1] - 320)
            Image.fromarray(photo[y : y + 320, x : x + 320]).save(tmp / "src" / f"p{i:03d}.png")
        for store in ("raw", "encoded"):
            out = tmp / store / "d.h5"
            prepare_dataset(
                tmp / "src", out, PrepareOptions(size=None, resize="none", store=store), workers=2
            )
            dataset = InpaintingDataset(out, crop_size=256)
            loader = DataLoader(
                dataset, batch_size=16, shuffle=True, num_workers=2, persistent_workers=True
            )
            seen = 0
            for batch in loader:  # warm-up: worker start and first reads
                seen += len(batch)
                if seen >= 64:
                    break
            seen, start = 0, time.perf_counter()
            while seen < samples:
                for batch in loader:
                    seen += len(batch)
                    if seen >= samples:
                        break
            rows.append((store, out.stat().st_size / 1e6, seen / (time.perf_counter() - start)))
    print("## data: DataLoader samples/s at 256x256\n")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"Command: `python benchmarks/bench_data.py{' --quick' if args.quick else ''}`")
    print(
        "Data: 200 scikit-image photo crops of 320x320, random 256 crop + flip, batch 16, 2 workers.\n"
    )
    print("| storage | file MB | samples/s | vs raw |\n|---|---|---|---|")
    for store, mb, rate in rows:
        print(f"| {store} | {mb:.1f} | {rate:.0f} | {rate / rows[0][2]:.2f}x |")


if __name__ == "__main__":
    main()
