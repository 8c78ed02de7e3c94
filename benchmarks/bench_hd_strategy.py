"""HD strategies on real photos: hole PSNR, hole TV / ground truth and time, per strategy.

On the photos of ``/work/shared/data/eval`` (``photos/``: shorter side 512; ``large/``: the
Debian wallpapers, up to 2048 px; and wallpapers upscaled to 4000 px on the longer side), each
with two seeded holes of realistic size (a 256 x 256 rectangle; free-form strokes drawn in a
512 x 512 window, DeepFill v2's brush at that scale), every strategy fills the same hole with
the default model (:mod:`inpaintkit.hd_strategy`):

- ``original`` (the whole photo; skipped above 2048 px, where it needs over 12 GB),
- ``resize-1024`` and ``resize-512`` (``fill --max-size``),
- ``crop-m{ratio}-s{side}``: crop with a context margin of ``ratio`` x the hole's longer side
  (at least MIN_MARGIN px) and a working side of at most ``side``,
- and two references: the 512 x 512 crop of the photo centred on the hole, filled at 512
  (``ref-512``) and downscaled to 256 (``ref-256``): what the model does with the hole's
  neighbourhood alone, at its own scale and at the training scale.

The configurations of one photo and hole run back to back, in a rotating order, so that the
machine's load (shared) falls on all of them alike; times are compared as ratios to ``ref-512``
of the same hole. Metrics are over the hole's pixels (hole TV over the neighbour pairs that
touch it), the same pixels for every row.

    python benchmarks/bench_hd_strategy.py -o /tmp/hd              # the measurement
    python benchmarks/bench_hd_strategy.py -o /tmp/hd --quick      # 1 photo per set
    python benchmarks/bench_hd_strategy.py -o /tmp/hd --target     # the 4000x3000 vs 512x512 check only
    python benchmarks/bench_hd_strategy.py -o /tmp/hd --measure-only   # all but that check

Writes ``results.jsonl``, ``summary.md`` and ``sheet.png`` (hole neighbourhoods side by side) to
the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from inpaintkit.fill import fill_files
from inpaintkit.fill_images import paste_fill, to_working
from inpaintkit.fill_options import FillOptions
from inpaintkit.fill_plan import pair_files
from inpaintkit.hd_strategy import Box, context_boxes, fill_crops, fill_method_crops, plan_image
from inpaintkit.masks import deepfill_stroke_mask
from inpaintkit.methods import DeepFillMethod
from inpaintkit.metrics import hole_tv, psnr
from inpaintkit.tensors import image_to_tensor, mask_to_tensor, signed_to_unit, tensor_to_image

DATA = Path("/work/shared/data/eval")
#: The grid's crop boxes: at least this much context on every side (and no least box side).
MIN_MARGIN = 64
#: Above this longer side, ``original`` is not run (a 4000 px photo needs ~13 GB on the CPU).
ORIGINAL_LIMIT = 2048
UPSCALED_SIDE = 4000
REFERENCE = "ref-512"

Filler = Callable[[np.ndarray, np.ndarray], np.ndarray]


def load_sets(
    photos: int, wallpapers: int, upscaled: int, skip: int = 0
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """``set name -> [(image name, uint8 (H, W, 3))]``: files of each folder by name, after the
    first ``skip`` (the upscaled copies are of the last wallpapers, before the last ``skip``)."""

    def read(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path).convert("RGB"))

    large = sorted((DATA / "large").glob("*.jpg"))
    small = sorted((DATA / "photos").glob("*.jpg"))
    sets = {
        "photos": [(p.name, read(p)) for p in small[skip : skip + photos]],
        "wallpapers": [(p.name, read(p)) for p in large[skip : skip + wallpapers]],
        "upscaled-4000": [],
    }
    for path in large[len(large) - skip - upscaled : len(large) - skip]:
        image = Image.open(path).convert("RGB")
        scale = UPSCALED_SIDE / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        sets["upscaled-4000"].append(
            (path.name, np.asarray(image.resize(size, Image.Resampling.BICUBIC)))
        )
    return sets


def holes(shape: tuple[int, int], seed: int) -> dict[str, np.ndarray]:
    """A seeded 256 x 256 rectangle and seeded strokes in a 512 x 512 window of a ``(H, W)`` image."""
    height, width = shape
    rng = np.random.default_rng(seed)
    rect = np.zeros(shape, bool)
    top, left = rng.integers(0, height - 256 + 1), rng.integers(0, width - 256 + 1)
    rect[top : top + 256, left : left + 256] = True
    strokes = np.zeros(shape, bool)
    window = min(512, height, width)
    top, left = rng.integers(0, height - window + 1), rng.integers(0, width - window + 1)
    strokes[top : top + window, left : left + window] = deepfill_stroke_mask(window, window, rng)
    return {"rect256": rect, "strokes512": strokes}


def hole_box(hole: np.ndarray, pad: int = 1) -> Box:
    """The hole's bounding box grown by ``pad`` (clipped): where the metrics look."""
    rows, cols = np.nonzero(hole)
    return Box(
        max(0, rows.min() - pad),
        max(0, cols.min() - pad),
        min(hole.shape[0], rows.max() + 1 + pad),
        min(hole.shape[1], cols.max() + 1 + pad),
    )


def centred_box(hole: np.ndarray, side: int) -> Box:
    """A ``side`` x ``side`` box (clipped to the image) centred on the hole's bounding box."""
    box = hole_box(hole, 0)
    height, width = hole.shape
    rows, cols = min(side, height), min(side, width)
    top = min(max(0, (box.top + box.bottom - rows) // 2), height - rows)
    left = min(max(0, (box.left + box.right - cols) // 2), width - cols)
    return Box(top, left, top + rows, left + cols)


def strategies(
    method: DeepFillMethod, ratios: list[float], sides: list[int], names: list[str] | None
) -> dict[str, Filler]:
    """Every configuration measured: name -> ``(pixels, hole) -> filled uint8 (H, W, 3)``."""

    def fill(x: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        return [method(x, m)]

    def whole(max_size: int | None) -> Filler:
        def run(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
            work_pixels, work_hole = to_working(pixels, hole, max_size)
            filled = tensor_to_image(
                method(image_to_tensor(work_pixels), mask_to_tensor(work_hole))
            )
            return paste_fill(pixels, hole, filled[0])

        return run

    def crop(ratio: float, side: int) -> Filler:
        def run(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
            boxes = context_boxes(hole, ratio, MIN_MARGIN, min_side=0)
            return fill_crops(fill, pixels, hole, boxes, [side] * len(boxes))

        return run

    def reference(side: int | None) -> Filler:
        def run(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
            return fill_crops(fill, pixels, hole, [centred_box(hole, 512)], [side])

        return run

    def shipped(strategy: str) -> Filler:  # what fill does with --hd-strategy STRATEGY
        def run(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
            plan = plan_image(strategy, hole)
            if plan.strategy == "crop":
                return fill_method_crops(method, pixels, hole, plan.boxes, sides=plan.sides)[0]
            return whole(plan.limit)(pixels, hole)

        return run

    configs: dict[str, Filler] = {
        "auto": shipped("auto"),
        "crop": shipped("crop"),
        "original": whole(None),
        "resize-1024": whole(1024),
        "resize-512": whole(512),
    }
    for ratio in ratios:
        for side in sides:
            configs[f"crop-m{ratio}-s{side}"] = crop(ratio, side)
    configs["ref-512"] = reference(None)
    configs["ref-256"] = reference(256)
    return {name: run for name, run in configs.items() if names is None or name in names}


def hole_metrics(filled: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    """Hole PSNR (dB) and hole TV / ground truth's, over the hole's bounding box + 1 px."""
    box = hole_box(hole)
    completed = signed_to_unit(image_to_tensor(filled[box.slices]))
    target = signed_to_unit(image_to_tensor(truth[box.slices]))
    mask = mask_to_tensor(hole[box.slices])
    return {
        "hole_psnr": float(psnr(completed, target, mask)[0]),
        "hole_tv_ratio": float(hole_tv(completed, mask)[0] / hole_tv(target, mask)[0]),
    }


def tile(image: np.ndarray, hole: np.ndarray, label: str, size: int = 256) -> Image.Image:
    """The hole's 512 x 512 neighbourhood at ``size``, captioned (the hole outlined in red)."""
    box = centred_box(hole, 512)
    picture = Image.fromarray(np.ascontiguousarray(image[box.slices])).resize(
        (size, size), Image.Resampling.LANCZOS
    )
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, size - 1, 14), fill=(0, 0, 0))
    draw.text((3, 1), label, fill=(255, 255, 255))
    return picture


def measure(args: argparse.Namespace, method: DeepFillMethod) -> None:
    configs = strategies(
        method,
        [float(r) for r in args.ratios.split(",")],
        [int(s) for s in args.sides.split(",")],
        args.configs.split(",") if args.configs else None,
    )
    sets = load_sets(args.photos, args.wallpapers, args.upscaled, args.skip)
    rows: list[dict] = []
    sheet_rows: list[list[Image.Image]] = []
    turn = 0
    with open(args.output / "results.jsonl", "w") as log:
        for set_name, images in sets.items():
            for index, (name, truth) in enumerate(images):
                for hole_name, hole in holes(truth.shape[:2], seed=index).items():
                    names = [
                        n
                        for n in configs
                        if n != "original" or max(truth.shape[:2]) <= ORIGINAL_LIMIT
                    ]
                    names = names[turn % len(names) :] + names[: turn % len(names)]
                    turn += 1
                    tiles = {"truth": tile(truth, hole, "ground truth")}
                    for config in names:
                        start = time.perf_counter()
                        filled = configs[config](truth, hole)
                        seconds = time.perf_counter() - start
                        assert np.array_equal(filled[~hole], truth[~hole]), config
                        row = {
                            "set": set_name,
                            "image": name,
                            "size": list(truth.shape[:2]),
                            "hole": hole_name,
                            "config": config,
                            "seconds": seconds,
                            "auto": plan_image("auto", hole).strategy,
                            **hole_metrics(filled, truth, hole),
                        }
                        rows.append(row)
                        log.write(json.dumps(row) + "\n")
                        log.flush()
                        tiles[config] = tile(filled, hole, f"{config} {row['hole_psnr']:.1f} dB")
                        print(
                            f"{set_name:13s} {name:20s} {hole_name:10s} {config:16s} "
                            f"{row['hole_psnr']:6.2f} dB tv {row['hole_tv_ratio']:.3f} "
                            f"{seconds:6.2f} s",
                            flush=True,
                        )
                    if index < args.sheet_images:
                        order = ["truth", *configs]
                        sheet_rows.append([tiles[n] for n in order if n in tiles])
    write_sheet(sheet_rows, args.output / "sheet.png")
    write_summary(rows, args.output / "summary.md")


def write_summary(rows: list[dict], path: Path) -> None:
    """Per set and hole kind: mean hole PSNR, hole TV ratio, seconds, and time / ref-512's."""
    reference = {
        (r["set"], r["image"], r["hole"]): r["seconds"] for r in rows if r["config"] == REFERENCE
    }
    lines = []
    for set_name in dict.fromkeys(r["set"] for r in rows):
        for hole_name in dict.fromkeys(r["hole"] for r in rows):
            part = [r for r in rows if r["set"] == set_name and r["hole"] == hole_name]
            if not part:
                continue
            count = len({r["image"] for r in part})
            lines += [
                f"\n{set_name}, {hole_name} ({count} images)\n",
                "| strategy | hole PSNR (dB) | hole TV / truth | s/image | time / ref-512 |",
                "|---|---|---|---|---|",
            ]
            for config in dict.fromkeys(r["config"] for r in part):
                chosen = [r for r in part if r["config"] == config]
                ratios = [
                    r["seconds"] / reference[key]
                    for r in chosen
                    if (key := (r["set"], r["image"], r["hole"])) in reference
                ]
                ratio = f"{statistics.median(ratios):.2f}" if ratios else "-"
                lines.append(
                    f"| {config} | {statistics.mean(r['hole_psnr'] for r in chosen):.2f} | "
                    f"{statistics.mean(r['hole_tv_ratio'] for r in chosen):.3f} | "
                    f"{statistics.mean(r['seconds'] for r in chosen):.2f} | {ratio} |"
                )
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    print(text)


def write_sheet(rows: list[list[Image.Image]], path: Path) -> None:
    """The tiles of each photo and hole in one row."""
    if not rows:
        return
    size = rows[0][0].width
    sheet = Image.new("RGB", (size * max(map(len, rows)), size * len(rows)), (255, 255, 255))
    for y, row in enumerate(rows):
        for x, picture in enumerate(row):
            sheet.paste(picture, (x * size, y * size))
    sheet.save(path)


def target(args: argparse.Namespace, method: DeepFillMethod) -> None:
    """``inpaintkit fill`` end to end (JPEG in and out, the default strategy): a 4000 x 3000 photo
    with a 256 x 256 hole against the 512 x 512 photo around the same hole, interleaved."""
    big = Image.open(DATA / "large" / "wood.jpg").convert("RGB")  # 2048 x 1536: 4:3
    big = big.resize((4000, 3000), Image.Resampling.BICUBIC)
    hole = np.zeros((3000, 4000), bool)
    hole[1400:1656, 2100:2356] = True
    box = centred_box(hole, 512)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, picture, mask in (
            ("big", big, hole),
            ("small", big.crop((box.left, box.top, box.right, box.bottom)), hole[box.slices]),
        ):
            (root / name).mkdir()
            picture.save(root / name / "photo.jpg", quality=95)
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / name / "mask.png")
        times: dict[str, list[float]] = {"big": [], "small": []}
        for _ in range(args.repeats):
            for name in ("small", "big"):
                jobs = pair_files(
                    root / name / "photo.jpg", root / name / "mask.png", root / "out.jpg"
                )
                start = time.perf_counter()
                summary = fill_files(jobs, method, FillOptions(overwrite=True), progress=False)
                times[name].append(time.perf_counter() - start)
                assert summary.filled == 1, summary
        big_s, small_s = statistics.median(times["big"]), statistics.median(times["small"])
        print(
            f"fill, default strategy: 4000x3000 {big_s:.2f} s, 512x512 {small_s:.2f} s, "
            f"ratio {big_s / small_s:.2f} (medians of {args.repeats}; each: "
            f"{[round(t, 2) for t in times['big']]} / {[round(t, 2) for t in times['small']]})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", "-o", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--wallpapers", type=int, default=6)
    parser.add_argument("--upscaled", type=int, default=2)
    parser.add_argument("--skip", type=int, default=0, help="start after this many per folder")
    parser.add_argument("--ratios", default="0.25,0.5,1.0", help="crop margins, x hole side")
    parser.add_argument("--sides", default="256,512", help="crop working sides")
    parser.add_argument("--configs", help="only these configurations (comma-separated names)")
    parser.add_argument("--sheet-images", type=int, default=2, help="photos per set on the sheet")
    parser.add_argument("--quick", action="store_true", help="one photo per set")
    parser.add_argument("--target", action="store_true", help="only the 4000x3000 time check")
    parser.add_argument("--measure-only", action="store_true", help="no 4000x3000 time check")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.quick:
        args.photos = args.wallpapers = args.upscaled = 1
    args.output.mkdir(parents=True, exist_ok=True)
    print(
        f"$ {shlex.join([sys.executable.split('/')[-1], *sys.argv])}\n"
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        flush=True,
    )
    method = DeepFillMethod(device=args.device)
    if not args.target:
        measure(args, method)
    if not args.measure_only:
        target(args, method)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
