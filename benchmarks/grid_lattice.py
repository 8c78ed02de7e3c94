"""Where the faint ~8 px grid in the default model's fills comes from: a lattice measurement.

A grid of period P shows as detail that depends on where a pixel lies on the P x P lattice.
For each output (the ground truth, the coarse network, the refined output, and ablations of
the refinement network) this reports :class:`inpaintkit.metrics.LatticeProfile`'s spread: the
high-pass residual inside the holes averaged per lattice cell ``(y mod P, x mod P)``, max/min
- 1, in %. A natural image, whose detail does not care about the lattice, is near 0. Training
logs the same number for 8 px at every validation (``hole_lattice_spread``).

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

from inpaintkit.checkpoint import load_generator
from inpaintkit.io import list_images, read_mask, read_rgb
from inpaintkit.metrics import LatticeProfile
from inpaintkit.model import attention as attention_module
from inpaintkit.tensors import composite, image_to_tensor, mask_to_tensor, signed_to_unit


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
        cells = []
        for period in args.periods:
            profile = LatticeProfile(period)
            profile.add(image, masks)
            cells.append(profile.spread)
        print(f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
