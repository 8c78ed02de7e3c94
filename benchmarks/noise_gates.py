"""Where a gated generator puts its noise (``model.noise_gates``, model/noise.py).

For the first COUNT images of an evaluation set: the mean gate over the holes' pixels, binned
by how much detail the photo has there (``losses.local_detail`` of the ground truth, in
quintiles over all the hole pixels), at each injection point. A gate that learned its job
rises with the photo's detail: near 0 on a clear sky, up to 2 on fur. ``--sheet`` draws, per
image, the input, the network's fill, the photo and each point's gate map (black 0, white 2).

    python benchmarks/noise_gates.py runs/adversarial-gated/generator.safetensors --sheet g.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from default_model import DETAIL_BINS, ROOT, detail_bins, eval_tensors
from PIL import Image

from inpaintkit.checkpoint import load_generator
from inpaintkit.tensors import composite, signed_to_unit


def gate_maps(
    generator, images: torch.Tensor, masks: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each injection point's gate (``GeneratorOutput.noise_gates``), resized to the images'
    size -> a list of ``(N, H, W)`` in (0, 2), and the refined fills composited into the images
    ``(N, 3, H, W)`` in [-1, 1], from one forward; ``images`` in [-1, 1], ``masks`` 1 = hole."""
    with torch.no_grad():
        out = generator(images * (1 - masks), masks)
    if out.noise_gates is None:
        raise SystemExit("this generator has no noise gates (model.noise_gates)")
    size = images.shape[-2:]
    gates = [F.interpolate(g.float(), size=size, mode="nearest")[:, 0] for g in out.noise_gates]
    return gates, composite(images, out.refined.float(), masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--set", dest="name", default="rect256", choices=("rect256", "free256"))
    parser.add_argument("--count", type=int, default=24, help="the first COUNT images")
    parser.add_argument("--sheet", type=Path, default=None, help="PNG of the first 6 images")
    parser.add_argument(
        "--eval", dest="eval_root", type=Path, default=ROOT.parent / "shared" / "data" / "eval"
    )
    args = parser.parse_args()
    generator = load_generator(args.checkpoint)
    images, masks = eval_tensors(args.eval_root, args.name, 1)
    images, masks = images[: args.count], masks[: args.count]
    gates, fills = gate_maps(generator, images, masks)
    hole = masks[:, 0] > 0.5
    edges, which = detail_bins(signed_to_unit(images), masks)
    print(f"{args.checkpoint}, {args.name}, first {len(images)} images: mean gate in the holes")
    print("by the photo's local detail (quintiles of its hole pixels)\n")
    print("| photo's detail | " + " | ".join(f"point {i}" for i in range(len(gates))) + " |")
    print("|---|" + "---:|" * len(gates))
    for b in range(DETAIL_BINS):
        cells = [f"{float(g[hole][which == b].mean()):.3f}" for g in gates]
        span = f"{float(edges[b]):.3f}-{float(edges[b + 1]):.3f}"
        print(f"| {span} | " + " | ".join(cells) + " |")
    if args.sheet is not None:
        rows = []
        for n in range(min(6, len(images))):
            tiles = [signed_to_unit(t[n]).permute(1, 2, 0) for t in (images * (1 - masks), fills)]
            tiles.append(signed_to_unit(images[n]).permute(1, 2, 0))
            tiles += [(g[n] / 2).unsqueeze(-1).expand(-1, -1, 3) for g in gates]
            rows.append(torch.cat(tiles, dim=1))
        sheet = (torch.cat(rows, dim=0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(sheet).save(args.sheet)
        print(f"\nwrote {args.sheet}: input | fill | photo | gate at each point (black 0, white 2)")


if __name__ == "__main__":
    main()
