"""Where an adversarial generator loses its PSNR: its low frequencies or its added detail.

For each evaluation set, with ``fill``'s defaults (Poisson blending): the reconstruction-only
packaged model ("smooth"), an adversarial checkpoint ("sharp"), and their frequency split, the
smooth fill's Gaussian low-pass (``sigma`` px) plus the sharp fill's high-pass (the fill minus
its low-pass) inside the hole. If the split keeps the smooth model's PSNR and the sharp one's
hole TV, the sharp model's PSNR deficit is in its layout and colours, not in its texture, and a
texture free of artefacts over the smooth model's structure would meet both of issue #25's
conditions. Hole PSNR, hole ℓ1 and hole TV / the ground truth's (docs/metrics.md).

    python benchmarks/frequency_split.py checkpoints/adversarial-periodicity-strong.safetensors \\
        [--sigma 1.5 --sigma 3] [--free-every 5] [--sheet out.png]

``--sheet`` writes six rect256 rows (input, smooth, sharp, split at the first sigma, truth)
to look at: the split carries whatever pattern the sharp model's detail has.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from default_model import ROOT, _eval_tensors, _fill_all
from PIL import Image
from scipy.ndimage import gaussian_filter

from inpaintkit.methods import DeepFillMethod
from inpaintkit.metrics import hole_tv, mean_l1_error, psnr
from inpaintkit.tensors import signed_to_unit

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


def save_sheet(columns: list[torch.Tensor], path: Path) -> None:
    """Rows of images side by side, one column per entry of ``columns`` (each (N, 3, H, W) in
    [0, 1]), as a PNG."""
    rows = [torch.cat([column[i] for column in columns], dim=2) for i in range(len(columns[0]))]
    pixels = torch.cat(rows, dim=1).permute(1, 2, 0).numpy()
    Image.fromarray((pixels * 255).round().clip(0, 255).astype(np.uint8)).save(path)


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
    for name, every in (("rect256", 1), ("free256", args.free_every)):
        images, masks = _eval_tensors(args.eval_root, name, every)
        truth = signed_to_unit(images)
        truth_tv = hole_tv(truth, masks)
        smooth = _fill_all(smooth_method, images, masks)
        sharp = _fill_all(sharp_method, images, masks)
        fills = {"smooth (packaged)": smooth, f"sharp ({args.checkpoint.name})": sharp}
        for sigma in sigmas:
            fills[f"split, sigma {sigma:g} px"] = frequency_split(smooth, sharp, masks, sigma)
        print(f"\n### {name}: {len(images)} images (every {every}), mean per image\n")
        print("| fill | hole PSNR (dB) | hole ℓ1 (%) | hole TV / ground truth's |")
        print("|---|---:|---:|---:|")
        for label, filled in fills.items():
            hole_psnr = psnr(filled, truth, masks)
            print(
                f"| {label} | {hole_psnr[hole_psnr.isfinite()].mean():.2f} | "
                f"{mean_l1_error(filled, truth, masks).mean():.2f} | "
                f"{(hole_tv(filled, masks) / truth_tv).mean():.3f} |",
                flush=True,
            )
        if args.sheet is not None and name == "rect256":
            rows = list(SHEET_ROWS)
            split = fills[f"split, sigma {sigmas[0]:g} px"]
            columns = [truth * (1 - masks), smooth, sharp, split, truth]
            save_sheet([column[rows] for column in columns], args.sheet)


if __name__ == "__main__":
    with torch.no_grad():
        main()
