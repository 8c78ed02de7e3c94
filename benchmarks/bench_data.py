"""samples/s of InpaintingDataset at 256x256: one process, and a DataLoader with 2 workers.

Data: 200 crops of 320x320 from four scikit-image photos (every crop really 320x320, so no
sample takes the small-image upscale path), packed by prepare three ways: raw with one fixed
size (``--resize fixed --resize-to 320x320``: the crop window is read straight from HDF5), raw
with variable sizes (``--resize none``) and encoded (``--resize none --store encoded``: the
original PNG bytes, decoded per sample). Workers start and warm up before the clock starts.
Usage: python benchmarks/bench_data.py [--quick]
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
from torch.utils.data import DataLoader, Dataset

from inpaintkit.data import InpaintingDataset
from inpaintkit.prepare import PrepareOptions, prepare_dataset

SIDE = 320
LAYOUTS = {
    "raw, fixed size": PrepareOptions(size=None, resize="fixed", resize_to=(SIDE, SIDE)),
    "raw, variable sizes": PrepareOptions(size=None, resize="none"),
    "encoded (PNG)": PrepareOptions(size=None, resize="none", store="encoded"),
}


def make_inputs(folder: Path, count: int = 200) -> None:
    """``count`` distinct 320x320 PNG crops of photos at least 320 on each side."""
    photos = [skdata.astronaut(), skdata.coffee(), skdata.rocket(), skdata.hubble_deep_field()]
    for i in range(count):
        photo = photos[i % len(photos)]
        y = (i * 7) % (photo.shape[0] - SIDE)
        x = (i * 13) % (photo.shape[1] - SIDE)
        crop = photo[y : y + SIDE, x : x + SIDE]
        assert crop.shape == (SIDE, SIDE, 3)
        Image.fromarray(crop).save(folder / f"p{i:03d}.png")


def single_process_rate(dataset: Dataset, samples: int) -> float:
    """samples/s of ``dataset[i]`` in this process (no DataLoader)."""
    dataset[0]  # open the file
    start = time.perf_counter()
    for i in range(samples):
        dataset[i % len(dataset)]
    return samples / (time.perf_counter() - start)


def loader_rate(dataset: Dataset, samples: int, workers: int = 2, batch_size: int = 16) -> float:
    """samples/s of a shuffling DataLoader, timed after the workers have started and warmed up."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=True,
        prefetch_factor=4,
    )
    batches = _endless(loader)
    for _ in range(8):  # warm-up: worker start-up, file opening, first reads
        next(batches)
    seen, start = 0, time.perf_counter()
    while seen < samples:
        seen += len(next(batches))
    return seen / (time.perf_counter() - start)


def _endless(loader: DataLoader):
    while True:
        yield from loader


class ConstantSamples(Dataset):
    """No work per sample: what the DataLoader alone costs to move a sample of this dtype."""

    def __init__(self, dtype: torch.dtype, size: int = 256) -> None:
        self.sample = torch.zeros(3, size, size, dtype=dtype)

    def __len__(self) -> int:
        return 200

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.sample.clone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the main process (default 1: it only receives batches; with "
        "the cores busy in workers, OpenMP spin-waiting slows it down)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = 2000 if args.quick else 10000
    rows = []
    for dtype in ("float32", "uint8"):
        constant = ConstantSamples(getattr(torch, dtype))
        rows.append(
            (
                "none (constant tensor)",
                "-",
                dtype,
                0.0,
                single_process_rate(constant, samples),
                loader_rate(constant, samples),
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "src").mkdir()
        make_inputs(tmp / "src")
        for number, (name, options) in enumerate(LAYOUTS.items()):
            out = tmp / f"{number}" / "d.h5"
            prepare_dataset(tmp / "src", out, options, workers=2)
            for dtype in ("float32", "uint8"):
                dataset = InpaintingDataset(out, crop_size=256, dtype=dtype)
                single = single_process_rate(dataset, samples // 5)
                loader = loader_rate(dataset, samples)
                mb = out.stat().st_size / 1e6
                rows.append((name, dataset.layout, dtype, mb, single, loader))
    print("## data: samples/s at 256x256\n")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )
    print(f"Command: `python benchmarks/bench_data.py{' --quick' if args.quick else ''}`")
    print(
        f"Data: 200 scikit-image photo crops of {SIDE}x{SIDE}, random 256 crop + flip; "
        f"DataLoader: batch 16, 2 workers, shuffled, {samples} samples timed after warm-up. "
        '`dtype uint8`: `InpaintingDataset(dtype="uint8")`, converted on the GPU with '
        "`tensors.uint8_to_signed` (not timed here).\n"
    )
    print(
        "| storage | layout | dtype | file MB | 1 process samples/s "
        "| DataLoader 2 workers samples/s | workers vs 1 process | vs same storage float32 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for i, (name, layout, dtype, mb, single, loader) in enumerate(rows):
        float_rate = rows[i - 1][5] if dtype == "uint8" else loader
        print(
            f"| {name} | {layout} | {dtype} | {mb:.1f} | {single:.0f} | {loader:.0f} "
            f"| {loader / single:.2f}x | {loader / float_rate:.2f}x |"
        )


if __name__ == "__main__":
    main()
