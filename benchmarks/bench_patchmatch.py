"""PatchMatch inpainting: our numba and batched-torch paths against pypatchmatch, OpenCV Telea
and scikit-image biharmonic, speed and quality in one run; prints a Markdown section.

Speed: real photos (scikit-image's astronaut/coffee/chelsea and /work/shared/data/eval) at
256x256 with a centred 128x128 hole and at 512x512 with centred 128x128 and 256x256 holes.
pypatchmatch's ``patch_size`` is a *radius* (its patches span ``2k+1`` pixels), ours is the
side, so each row pairs pypatchmatch ``k`` with ours at the same extent ``2k+1`` (the fair
comparison) and also lists ours at side ``k``.

Quality: hole-region PSNR and l1 (inpaintkit.metrics) averaged over the rect256 eval images
with their given masks; pypatchmatch at its default (15) and at 3, our path at several patch
sizes (which chose ``DEFAULT_PATCH_SIZE``), Telea (radius 3) and biharmonic.

    python benchmarks/bench_patchmatch.py            # ~8 min on a quiet 2-core machine
    python benchmarks/bench_patchmatch.py --quick    # 1 photo per size, 5 eval images
    python benchmarks/bench_patchmatch.py --photos 6 --repeats 3 --images 49   # everything
    python benchmarks/bench_patchmatch.py --figure docs/images/patchmatch_comparison.png
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numba
import numpy as np
import torch
from patchmatch import patch_match
from PIL import Image
from skimage import data
from skimage.restoration import inpaint_biharmonic

from inpaintkit.io import atomic_write, list_images, read_mask, read_rgb
from inpaintkit.metrics import mean_l1_error, psnr
from inpaintkit.patchmatch import DEFAULT_PATCH_SIZE, patchmatch_inpaint
from inpaintkit.tensors import mask_to_tensor, uint8_to_unit

EVAL = Path("/work/shared/data/eval")
Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


def telea(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return cv2.inpaint(image, mask.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)


def biharmonic(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    filled = inpaint_biharmonic(image, mask, channel_axis=-1)
    return np.clip(np.rint(filled * 255.0), 0, 255).astype(np.uint8)


def pypatchmatch(k: int) -> Method:
    return lambda image, mask: patch_match.inpaint(image, mask, patch_size=k)


def ours(patch_size: int, **options) -> Method:
    return lambda image, mask: patchmatch_inpaint(image, mask, patch_size=patch_size, **options)


def square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (Lanczos) and centre-crop to ``size x size``."""
    picture = Image.fromarray(image)
    scale = size / min(picture.size)
    picture = picture.resize(
        (max(size, round(picture.width * scale)), max(size, round(picture.height * scale))),
        Image.LANCZOS,
    )
    left, top = (picture.width - size) // 2, (picture.height - size) // 2
    return np.asarray(picture.crop((left, top, left + size, top + size)))


def centred_hole(size: int, hole: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    start = (size - hole) // 2
    mask[start : start + hole, start : start + hole] = True
    return mask


def timed(method: Method, image: np.ndarray, mask: np.ndarray, repeats: int) -> float:
    """Median wall time (s) of ``repeats`` calls (JIT warm-up is done once, in ``speed_section``)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        method(image, mask)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compile_times() -> tuple[float, float, float]:
    """(cold first call, cached first call, warm call) seconds for a 256x256 fill, each in a fresh
    interpreter with a private numba cache, so the JIT cost is separated from the run time."""
    code = (
        "import time, numpy as np; from skimage import data;"
        "img = data.astronaut()[::2, ::2].copy(); m = np.zeros((256, 256), bool); m[64:192, 64:192] = True;"
        "t = time.perf_counter(); from inpaintkit.patchmatch import patchmatch_inpaint;"
        "patchmatch_inpaint(img, m); a = time.perf_counter() - t;"
        "t = time.perf_counter(); patchmatch_inpaint(img, m); print(a, time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cold = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        warm = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    cold_first, run = map(float, cold.stdout.split())
    cached_first, _ = map(float, warm.stdout.split())
    return cold_first, cached_first, run


def speed_inputs(count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The first ``count`` photos, alternating bundled and eval ones, at every size/hole pair."""
    bundled = [
        ("astronaut", data.astronaut()),
        ("coffee", data.coffee()),
        ("chelsea", data.chelsea()),
    ]
    eval_photos = list_images(EVAL / "photos")[:3] if (EVAL / "photos").is_dir() else []
    loaded = [(p.stem, read_rgb(p)) for p in eval_photos]
    photos = [pair for i in range(3) for pair in (bundled[i : i + 1] + loaded[i : i + 1])][:count]
    cases = []
    for size, hole in ((256, 128), (512, 128), (512, 256)):
        for name, photo in photos:
            cases.append(
                (f"{name} {size}² / {hole}² hole", square(photo, size), centred_hole(size, hole))
            )
    return cases


def hole_scores(filled: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    completed, target = uint8_to_unit(np.array(filled)), uint8_to_unit(np.array(truth))
    hole = mask_to_tensor(mask)
    return float(psnr(completed, target, hole)), float(mean_l1_error(completed, target, hole))


def eval_set(limit: int | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    names = list_images(EVAL / "rect256" / "images")[:limit]
    return [(p.stem, read_rgb(p), read_mask(EVAL / "rect256" / "masks" / p.name)) for p in names]


def speed_section(args, devices: list[str]) -> None:
    repeats = 1 if args.quick else args.repeats
    sizes = (3,) if args.quick else (3, 5, 7)
    photos = 1 if args.quick else args.photos
    print(
        f"### Speed (s per image, median of {repeats} after one warm-up fill per method; "
        f"{photos} photo(s) per size; numba threads {numba.get_num_threads()})\n"
    )
    cold, cached, run = compile_times()
    warm_image, warm_mask = square(data.astronaut(), 64), centred_hole(64, 16)
    for k in sizes:
        for method in (pypatchmatch(k), ours(2 * k + 1), ours(k)):
            method(warm_image, warm_mask)
    print(
        f"numba JIT: first call in a fresh interpreter {cold:.2f} s with an empty cache (compile), "
        f"{cached:.2f} s with the on-disk cache (`cache=True`), then {run:.3f} s per 256² fill.\n"
    )
    header = "| input | pypatchmatch k | pypatchmatch (s) | ours side 2k+1, numba (s) | ratio | ours side k, numba (s) |"
    extra = [f"ours side 2k+1, torch {d} (s)" for d in devices]
    print(header + "".join(f" {e} |" for e in extra))
    print("|---" * (6 + len(extra)) + "|")
    ratios = []
    for label, image, mask in speed_inputs(photos):
        for k in sizes:
            theirs = timed(pypatchmatch(k), image, mask, repeats)
            same = timed(ours(2 * k + 1), image, mask, repeats)
            narrow = timed(ours(k), image, mask, repeats)
            ratios.append(same / theirs)
            row = f"| {label} | {k} | {theirs:.3f} | {same:.3f} | {same / theirs:.2f} | {narrow:.3f} |"
            for device in devices:
                if device == "cpu" and (image.shape[0] > 256 or k > 3) and not args.torch_cpu_all:
                    row += " – |"  # the batched path on CPU is a test path; see docs/patchmatch.md
                    continue
                seconds = timed(ours(2 * k + 1, device=device, backend="torch"), image, mask, 1)
                row += f" {seconds:.3f} |"
            print(row)
    print(
        f"\nRatio ours/pypatchmatch at the same patch extent: median {statistics.median(ratios):.2f}, "
        f"max {max(ratios):.2f} over {len(ratios)} cases.\n"
    )


def quality_section(args) -> list[tuple[str, np.ndarray, np.ndarray]]:
    images = eval_set(5 if args.quick else args.images)
    ours_sizes = (DEFAULT_PATCH_SIZE,) if args.quick else (5, 7, 9, 11)
    methods: dict[str, Method] = {}
    methods["pypatchmatch, default k=15 (31² patches)"] = pypatchmatch(15)
    methods["pypatchmatch, k=3 (7² patches)"] = pypatchmatch(3)
    for size in ours_sizes:
        tag = " (default)" if size == DEFAULT_PATCH_SIZE else ""
        methods[f"ours numba, patch {size}{tag}"] = ours(size)
    methods[f"ours numba, patch {DEFAULT_PATCH_SIZE}, vote=best"] = ours(
        DEFAULT_PATCH_SIZE, vote="best"
    )
    methods["OpenCV Telea (radius 3)"] = telea
    methods["scikit-image inpaint_biharmonic"] = biharmonic
    total = len(list_images(EVAL / "rect256" / "images"))
    print(
        f"### Quality on rect256 (first {len(images)} of {total} images, 128² hole), hole region\n"
    )
    print("| method | hole PSNR (dB) | hole ℓ1 (%) | s/image |")
    print("|---|---|---|---|")
    for name, method in methods.items():
        scores, seconds = [], 0.0
        for _, image, mask in images:
            start = time.perf_counter()
            filled = method(image, mask)
            seconds += time.perf_counter() - start
            scores.append(hole_scores(filled, image, mask))
        mean_psnr, mean_l1 = np.mean(scores, axis=0)
        print(f"| {name} | {mean_psnr:.2f} | {mean_l1:.2f} | {seconds / len(images):.3f} |")
    print()
    return images


def figure(path: Path, images: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """Rows of input | ours | pypatchmatch | Telea | biharmonic | ground truth."""
    rows = []
    for _, image, mask in images:
        shown = image.copy()
        shown[mask] = 255
        fills = [
            ours(DEFAULT_PATCH_SIZE)(image, mask),
            pypatchmatch(15)(image, mask),
            telea(image, mask),
            biharmonic(image, mask),
        ]
        gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
        tiles = [shown, *fills, image]
        rows.append(np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1))
    sep = np.full((4, rows[0].shape[1], 3), 255, dtype=np.uint8)
    grid = np.concatenate([x for r in rows for x in (r, sep)][:-1], axis=0)
    with atomic_write(path) as tmp:
        Image.fromarray(grid).save(tmp)
    print(
        f"Figure: `{path}` — columns: input | ours (patch {DEFAULT_PATCH_SIZE}) | pypatchmatch (k=15) | "
        f"Telea | biharmonic | ground truth.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one photo per size, 5 eval images")
    parser.add_argument(
        "--photos", type=int, default=2, help="photos per size in the speed table (max 6)"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed calls per speed case (median)"
    )
    parser.add_argument(
        "--images", type=int, default=30, help="rect256 images in the quality table (max 49)"
    )
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument(
        "--torch-cpu-all",
        action="store_true",
        help="time the batched torch path on CPU for every case (slow)",
    )
    parser.add_argument("--figure", type=Path, help="write the comparison picture here")
    args = parser.parse_args()
    began = time.perf_counter()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    print("## PatchMatch inpainting benchmark\n")
    print(
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or platform.platform()}), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
        + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU")
    )
    print(f"- command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`\n")
    if not args.skip_speed:
        speed_section(args, devices)
    images = None
    if not args.skip_quality:
        images = quality_section(args)
    if args.figure:
        picks = images or eval_set(None)
        figure(args.figure, [picks[i] for i in (0, 1, 3, 4) if i < len(picks)])
    print(f"Benchmark wall time: {time.perf_counter() - began:.0f} s.\n")


if __name__ == "__main__":
    main()
