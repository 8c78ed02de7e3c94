"""Where the faint ~8 px grid in the default model's fills comes from: a lattice measurement.

A grid of period P shows as detail that depends on where a pixel lies on the P x P lattice.
For each output (the ground truth, the coarse network, the refined output, and ablations of
the refinement network) this reports :class:`inpaintkit.metrics.LatticeProfile`'s spread: the
high-pass residual inside the holes averaged per lattice cell ``(y mod P, x mod P)``, max/min
- 1, in %. A natural image, whose detail does not care about the lattice, is near 0. Training
logs the same number for 8 px at every validation (``hole_lattice_spread``).

A pooled spread misses grids whose phase differs from image to image, so a second table
measures each image on its own: :func:`inpaintkit.losses.lattice_loss_per_image` of each
output at each period, the mean over images, and the share of images whose loss is over twice
their photo's (training's ``hole_lattice_gridded``). A grid whose phase drifts across the
hole escapes both; a last table gives :func:`inpaintkit.periodicity.periodicity`, the largest
autocorrelation of each hole's detail at a shift of 3-16 px, which does not care about phase.

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
from inpaintkit.losses import lattice_loss_per_image
from inpaintkit.metrics import LatticeProfile
from inpaintkit.model import attention as attention_module
from inpaintkit.periodicity import periodicity
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
    parser.add_argument("--periods", type=int, nargs="+", default=[4, 6, 8, 12, 16])
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

    print(
        "\nper image: lattice loss, mean over images (in brackets: % of images over twice "
        "their photo's)\n"
    )
    print("| output | " + " | ".join(f"{p} px" for p in args.periods) + " |")
    print("|---|" + "---:|" * len(args.periods))
    photos = lattice_loss_per_image(truth, masks, args.periods)  # (M, P)
    for label, image in rows.items():
        losses = lattice_loss_per_image(image, masks, args.periods)
        gridded = 100.0 * (losses > 2.0 * photos).double().mean(dim=0)
        cells = [
            f"{loss:.3f}" + ("" if label == "ground truth" else f" ({share:.0f} %)")
            for loss, share in zip(losses.mean(dim=0).tolist(), gridded.tolist(), strict=True)
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")

    print(
        "\nperiodicity (largest autocorrelation at 3-16 px): mean over images, and % of images "
        "over their photo's + 0.2\n"
    )
    print("| output | periodicity | over the photo's + 0.2 |")
    print("|---|---:|---:|")
    photo_values = periodicity(truth, masks)
    for label, image in rows.items():
        values = periodicity(image, masks)
        share = 100.0 * (values > photo_values + 0.2).double().mean()
        print(f"| {label} | {values.nanmean():.3f} | {share:.0f} % |")


if __name__ == "__main__":
    main()
