"""Throughput of ``inpaintkit fill``: images/s at 512x512 with a 128x128 hole.

Compares, in one run, fill's pipeline (background decode/encode threads, same-size batches)
at batch 1 and batch 16 with a plain one-image-at-a-time loop over the library call
(read -> ``inpaint()`` -> write). The generator is randomly initialised (no trained model is
bundled yet); speed does not depend on the weights' values.

On CUDA it also measures the model alone on device tensors in fp32, bf16 and fp16 autocast
and with channels_last, and keeps a variant only if its hole PSNR against the ground truth
is within 0.1 dB of fp32's (the issue's rule).

    python benchmarks/bench_fill.py            # CPU, 2 threads, 32 images
    python benchmarks/bench_fill.py --quick    # 4 images at 256x256, batch 1 and 4
    python benchmarks/bench_fill.py --device cuda
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from inpaintkit.checkpoint import save_generator
from inpaintkit.devices import resolve_device
from inpaintkit.fill import fill_files
from inpaintkit.fill_images import save_image
from inpaintkit.fill_options import FillOptions
from inpaintkit.fill_plan import pair_files
from inpaintkit.inpaint import inpaint
from inpaintkit.io import read_mask, read_rgb
from inpaintkit.methods import DeepFillMethod
from inpaintkit.metrics import psnr
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.tensors import image_to_tensor, mask_to_tensor, tensor_to_image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "gravel")


def make_inputs(folder: Path, count: int, size: int, hole: int) -> None:
    """``count`` real photos resized to ``size``² (PNG) and a centred ``hole``² mask for each."""
    top = (size - hole) // 2
    mask = np.zeros((size, size), np.uint8)
    mask[top : top + hole, top : top + hole] = 255
    for i in range(count):
        picture = Image.fromarray(getattr(data, PHOTOS[i % len(PHOTOS)])()).convert("RGB")
        picture.resize((size, size), Image.Resampling.LANCZOS).save(
            folder / "images" / f"{i:04d}.png"
        )
        Image.fromarray(mask).save(folder / "masks" / f"{i:04d}.png")


def plain_loop(generator: Generator, images: list[Path], masks: Path, out: Path) -> None:
    """The baseline: one file at a time, no threads, no batching."""
    for path in images:
        image = image_to_tensor(read_rgb(path))
        mask = mask_to_tensor(read_mask(masks / path.name))
        filled = inpaint(generator, image, mask).image
        save_image(Image.fromarray(tensor_to_image(filled)[0]), out / path.name)


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def photo_batch(
    batch: int, size: int, hole: int, device: str | torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` real photos resized to ``size``² in [-1, 1] and a centred ``hole``² mask each, on ``device``."""
    pictures = [
        np.asarray(
            Image.fromarray(getattr(data, PHOTOS[i % len(PHOTOS)])())
            .convert("RGB")
            .resize((size, size))
        )
        for i in range(batch)
    ]
    images = image_to_tensor(np.stack(pictures)).to(device)
    masks = torch.zeros(batch, 1, size, size, device=device)
    top = (size - hole) // 2
    masks[:, :, top : top + hole, top : top + hole] = 1
    return images, masks


def fill_rate(
    method: DeepFillMethod, images: torch.Tensor, masks: torch.Tensor, repeats: int
) -> tuple[float, torch.Tensor]:
    """Images/s of ``method`` on device tensors over ``repeats`` calls after one untimed call
    (cuDNN autotuning, the allocator, a compile); also returns that call's fills."""
    out = method(images, masks)
    seconds = timed(lambda: [method(images, masks) for _ in range(repeats)])
    return images.shape[0] * repeats / seconds, out


def cuda_variants(checkpoint: Path, size: int, hole: int, batch: int, repeats: int) -> list[str]:
    """Model-only throughput on device tensors (pasted, no CPU blending), and hole PSNR vs the ground truth."""
    images, masks = photo_batch(batch, size, hole, "cuda")
    target = (images + 1) / 2
    rows, reference_psnr = [], None
    for precision, channels_last in [
        ("fp32", False),
        ("fp32", True),
        ("bf16", False),
        ("bf16", True),
        ("fp16", False),
        ("fp16", True),
    ]:
        method = DeepFillMethod(
            checkpoint,
            device="cuda",
            precision=precision,
            channels_last=channels_last,
            blend="none",
        )
        rate, out = fill_rate(method, images, masks, repeats)
        value = float(psnr((out + 1) / 2, target, masks).mean())
        reference_psnr = value if reference_psnr is None else reference_psnr
        keep = abs(value - reference_psnr) <= 0.1
        rows.append(
            f"| {precision} | {'yes' if channels_last else 'no'} | {batch} | "
            f"{rate:.1f} | {value:.2f} | {value - reference_psnr:+.3f} | "
            f"{'keep' if keep else 'drop'} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="4 images of 256x256 (64x64 hole), batch 1 and 4"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--size", type=int, default=None, help="image side (default 512; 256 with --quick)"
    )
    parser.add_argument("--hole", type=int, default=None, help="hole side (default size / 4)")
    args = parser.parse_args()
    args.size = args.size or (256 if args.quick else 512)
    args.hole = args.hole or args.size // 4
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    count, batches = (4, (1, 4)) if args.quick else (32, (1, 16))
    if device.type == "cuda" and not args.quick:
        count, batches = 256, (1, 16, 64)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("images", "masks"):
            (root / name).mkdir()
        make_inputs(root, count, args.size, args.hole)
        torch.manual_seed(0)
        checkpoint = root / "random.safetensors"
        save_generator(checkpoint, Generator(GeneratorConfig()))
        method = DeepFillMethod(checkpoint, device=device)
        images = sorted((root / "images").iterdir())
        # Warm-up: first-call allocations and kernel selection are not what is measured.
        method(
            image_to_tensor(read_rgb(images[0])),
            mask_to_tensor(read_mask(root / "masks" / images[0].name)),
        )

        rows = []
        plain = timed(lambda: plain_loop(method.generator, images, root / "masks", root / "plain"))
        rows.append(
            ("plain loop over `inpaint()` (read, fill, write; one at a time)", 1, count / plain)
        )
        for batch in batches:
            jobs = pair_files(root / "images", root / "masks", root / f"fill{batch}")
            options = FillOptions(batch_size=batch, overwrite=True, workers=2)
            seconds = timed(lambda j=jobs, o=options: fill_files(j, method, o, progress=False))
            rows.append((f"`fill_files` pipeline, batch {batch}", batch, count / seconds))
        cuda_rows = (
            cuda_variants(
                checkpoint, args.size, args.hole, 16 if args.quick else 64, 2 if args.quick else 10
            )
            if device.type == "cuda"
            else []
        )

    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print("## fill throughput\n")
    print(
        f"- machine: {platform.node()}, {name}, {torch.get_num_threads()} torch CPU threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )
    print(f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`")
    print(
        f"- {count} PNG images {args.size}x{args.size}, one {args.hole}x{args.hole} centred hole each; "
        f"device {device}; randomly initialised generator (GeneratorConfig() defaults, "
        "no trained model is bundled yet; speed does not depend on the weights)\n"
    )
    print("| path | batch | images/s | vs plain loop |")
    print("|---|---|---|---|")
    for label, batch, rate in rows:
        print(f"| {label} | {batch} | {rate:.2f} | {rate / rows[0][2]:.2f}x |")
    if cuda_rows:
        print("\n### CUDA, model only (tensors already on the device)\n")
        print(
            "| precision | channels_last | batch | images/s | hole PSNR (dB) | vs fp32 | within 0.1 dB |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(cuda_rows))
    else:
        print(
            "\nCUDA variants (bf16/fp16 autocast, channels_last, PSNR check) need a GPU: "
            "run with `--device cuda` on one."
        )


if __name__ == "__main__":
    main()
