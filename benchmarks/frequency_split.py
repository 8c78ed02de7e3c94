"""Where an adversarial generator loses its PSNR: its low frequencies or its added detail.

For each evaluation set, with ``fill``'s defaults (Poisson blending): the reconstruction-only
packaged model ("smooth"), an adversarial checkpoint ("sharp"), and their frequency split, the
smooth fill's Gaussian low-pass (``sigma`` px) plus the sharp fill's high-pass (the fill minus
its low-pass) inside the hole. If the split keeps the smooth model's PSNR and the sharp one's
hole TV, the sharp model's PSNR deficit is in its layout and colours, not in its texture, and a
texture free of artefacts over the smooth model's structure would meet both of issue #25's
conditions. Hole PSNR, hole ℓ1 and hole TV / the ground truth's (docs/metrics.md).

    python benchmarks/frequency_split.py checkpoints/adversarial-greyfree.safetensors \\
        [--sigma 1.5 --sigma 3] [--free-every 5] [--sheet out.png]

``--sheet`` writes six rect256 rows (input, smooth, sharp, split at the first sigma, truth)
to look at: the split carries whatever pattern the sharp model's detail has.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from default_model import ROOT, eval_sets, fill_all, hole_scores
from scipy.ndimage import gaussian_filter

from inpaintkit.methods import DeepFillMethod
from inpaintkit.report import comparison_sheet, masked_input, write_png
from inpaintkit.tensors import tensor_to_image

#: rect256 rows of ``--sheet`` (every 4th image from the first: textures, buildings, a vehicle).
SHEET_ROWS = (0, 4, 8, 12, 16, 20)


def low_pass(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images (N, C, H, W)`` blurred by a Gaussian of ``sigma`` px in each image plane
    (scipy, reflected borders) -> same shape and dtype."""
    blurred = gaussian_filter(images.double().numpy(), sigma=(0, 0, sigma, sigma))
    return torch.from_numpy(blurred).to(images.dtype)


def frequency_split(
    smooth: torch.Tensor, sharp: torch.Tensor, masks: torch.Tensor, sigma: float
) -> torch.Tensor:
    """The smooth fill's low-pass plus the sharp fill's high-pass in the hole of ``masks (N, 1,
    H, W)`` (1 = hole), the smooth fill outside -> ``(N, 3, H, W)`` in [0, 1]; fills in [0, 1]."""
    split = low_pass(smooth, sigma) + sharp - low_pass(sharp, sigma)
    return torch.where(masks > 0.5, split.clamp(0, 1), smooth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="the adversarial (sharp) generator")
    parser.add_argument("--sigma", type=float, action="append", help="px; default 1.5 and 3")
    parser.add_argument("--free-every", type=int, default=5, help="every N-th free256 image")
    parser.add_argument("--sheet", type=Path, default=None, help="rect256 rows to look at")
    parser.add_argument(
        "--eval", dest="eval_root", type=Path, default=ROOT.parent / "shared" / "data" / "eval"
    )
    args = parser.parse_args()
    sigmas = args.sigma or [1.5, 3.0]
    smooth_method = DeepFillMethod(None, device="cpu")
    sharp_method = DeepFillMethod(args.checkpoint, device="cpu")
    for name, every, images, masks, truth, truth_tv in eval_sets(args.eval_root, args.free_every):
        smooth = fill_all(smooth_method, images, masks)
        sharp = fill_all(sharp_method, images, masks)
        fills = {"smooth (packaged)": smooth, f"sharp ({args.checkpoint.name})": sharp}
        for sigma in sigmas:
            fills[f"split, sigma {sigma:g} px"] = frequency_split(smooth, sharp, masks, sigma)
        print(f"\n### {name}: {len(images)} images (every {every}), mean per image\n")
        print("| fill | hole PSNR (dB) | hole ℓ1 (%) | hole TV / ground truth's |")
        print("|---|---:|---:|---:|")
        for label, filled in fills.items():
            scores = hole_scores(filled, truth, masks, truth_tv)
            print(f"| {label} | {scores.psnr:.2f} | {scores.l1:.2f} | {scores.tv_ratio:.3f} |")
        if args.sheet is not None and name == "rect256":
            rows = list(SHEET_ROWS)
            split_label = f"split, sigma {sigmas[0]:g} px"
            # uint8 (rows, H, W, 3) per column: the fills are in [0, 1], tensor_to_image takes [-1, 1].
            smooth8, sharp8, split8, truth8 = (
                tensor_to_image(fill[rows] * 2 - 1)
                for fill in (smooth, sharp, fills[split_label], truth)
            )
            holes = masks[rows, 0].numpy() > 0.5
            tiles = [
                [masked_input(truth8[i], holes[i]), smooth8[i], sharp8[i], split8[i], truth8[i]]
                for i in range(len(rows))
            ]
            labels = ["input", "smooth", "sharp", split_label, "ground truth"]
            write_png(args.sheet, comparison_sheet(tiles, labels))


if __name__ == "__main__":
    with torch.no_grad():
        main()
