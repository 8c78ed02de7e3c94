"""Where the faint ~8 px grid in the default model's fills comes from: a lattice measurement.

A grid of period P shows as detail that depends on where a pixel lies on the P x P lattice.
For each output (the ground truth, the coarse network, the refined output, and ablations of
the refinement network) this takes the high-pass residual inside the holes (the image minus its
3 x 3 box blur), averages its magnitude per lattice cell ``(y mod P, x mod P)``, and reports
the cells' spread (max/min - 1, in %): a natural image, whose detail does not care about the
lattice, is near 0. The lattice is anchored at the image's origin, the origin of the
generator's stride-2 convolutions and of contextual attention's 2 x 2-block paste.

Ablations of the refinement network (same weights, same inputs):
- ``attention zeroed``: the attention branch's features replaced by zeros, so the decoder
  sees only the dilated branch (the coarse network's twin);
- ``attention averaged``: every foreground block attends to all background blocks equally
  (the softmax replaced by a uniform weight), so the paste is smooth.

    python benchmarks/grid_lattice.py ../shared/data/eval/rect256 --checkpoint inpaintkit/weights/deepfill_v1.safetensors
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F

from inpaintkit.checkpoint import load_generator
from inpaintkit.io import list_images, read_mask, read_rgb
from inpaintkit.model import attention as attention_module
from inpaintkit.tensors import composite, image_to_tensor, mask_to_tensor, signed_to_unit


def lattice_profile(image: torch.Tensor, mask: torch.Tensor, period: int) -> torch.Tensor:
    """Mean |high-pass| of the hole pixels per lattice cell -> ``(period, period)``.

    ``image (N, 3, H, W)`` in [0, 1], ``mask (N, 1, H, W)`` 1 = hole. Pixels within 2 px of a
    known pixel are left out (their residual sees the seam, not the fill).
    """
    residual = (image - F.avg_pool2d(image, 3, 1, 1, count_include_pad=False)).abs().mean(1)
    inner = (-F.max_pool2d(-mask, 5, 1, 2))[:, 0] > 0.5  # eroded hole
    h, w = image.shape[-2:]
    ys = torch.arange(h).remainder(period)[:, None].expand(h, w)
    xs = torch.arange(w).remainder(period)[None, :].expand(h, w)
    cell = (ys * period + xs).expand_as(residual)
    sums = torch.zeros(period * period, dtype=torch.float64).index_add_(
        0, cell[inner], residual[inner].double()
    )
    counts = torch.zeros(period * period, dtype=torch.float64).index_add_(
        0, cell[inner], torch.ones_like(residual[inner], dtype=torch.float64)
    )
    return (sums / counts).reshape(period, period)


def spread(profile: torch.Tensor) -> float:
    """Max over min cell of a lattice profile, minus 1, in per cent."""
    return float(100 * (profile.max() / profile.min() - 1))


@contextlib.contextmanager
def ablation(generator, kind: str):
    """Run the generator with its attention branch changed (see the module docstring)."""
    branch = generator.refine.attention
    if kind == "attention zeroed":
        original = branch.forward

        def zeroed(x, mask, return_offsets=False):
            features, offsets = original(x, mask, return_offsets)
            return torch.zeros_like(features), offsets

        branch.forward = zeroed
        try:
            yield
        finally:
            del branch.forward
    elif kind == "attention averaged":
        original = attention_module.reconstruct

        def uniform(attention, *args, **kwargs):
            flat = torch.where(attention > 0, 1.0, 0.0).to(attention.dtype)
            flat = flat / flat.sum(-1, keepdim=True).clamp(min=1)
            return original(flat, *args, **kwargs)

        attention_module.reconstruct = uniform
        try:
            yield
        finally:
            attention_module.reconstruct = original
    else:
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("eval_set", type=Path, help="a folder with images/ and masks/")
    parser.add_argument("--checkpoint", type=Path, required=True, action="append")
    parser.add_argument("--periods", type=int, nargs="+", default=[4, 8, 16])
    args = parser.parse_args()
    paths = list_images(args.eval_set / "images")
    images = torch.cat([image_to_tensor(read_rgb(p)) for p in paths])
    masks = torch.cat([mask_to_tensor(read_mask(args.eval_set / "masks" / p.name)) for p in paths])
    truth = signed_to_unit(images)
    rows = {"ground truth": truth}
    for path in args.checkpoint:
        generator = load_generator(path).eval()
        for kind in ("", "attention zeroed", "attention averaged"):
            coarse, refined = [], []
            with torch.no_grad(), ablation(generator, kind):
                for i in range(0, len(images), 8):
                    out = generator(images[i : i + 8], masks[i : i + 8])
                    coarse.append(out.coarse.float())
                    refined.append(out.refined.float())
            name = path.stem
            if not kind:
                rows[f"{name}: coarse"] = signed_to_unit(
                    composite(images, torch.cat(coarse), masks)
                )
            label = f"{name}: refined" + (f", {kind}" if kind else "")
            rows[label] = signed_to_unit(composite(images, torch.cat(refined), masks))
    print(f"\n{args.eval_set}: {len(images)} images; lattice spread of the hole's high-pass (%)\n")
    print("| output | " + " | ".join(f"{p} px" for p in args.periods) + " |")
    print("|---|" + "---:|" * len(args.periods))
    for label, image in rows.items():
        cells = [spread(lattice_profile(image, masks, p)) for p in args.periods]
        print(f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
