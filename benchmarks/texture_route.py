"""Issue #25's second route, measured like the adversarial phase: PatchMatch guided by DeepFill.

For each evaluation set, the network's fill (``fill``'s default Poisson blending), then
:class:`inpaintkit.texture.GuidedPatchMatchMethod` at several pyramid depths, with the finest
level copying known pixels (``vote="best"``, what ``fill --texture patchmatch`` runs) or
averaging them (``"weighted"``), texture transfer (the fill's low-pass plus the photo's detail,
``fill --texture transfer``) at several splits, and plain PatchMatch: hole PSNR, hole l1, hole
TV / the ground truth's (docs/metrics.md) and seconds per image (indicative: the machine is
shared).

    python benchmarks/texture_route.py --checkpoint inpaintkit/weights/deepfill_v1.safetensors
    python benchmarks/texture_route.py --rows transfer --free-every 1 --sigmas 2  # all free256
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from default_model import ROOT, eval_sets, fill_all, hole_scores

from inpaintkit.methods import DeepFillMethod, PatchMatchMethod
from inpaintkit.texture import GuidedPatchMatchMethod, TextureTransferMethod

#: (pyramid levels, finest-level vote) of the guided rows.
VARIANTS = ((2, "weighted"), (3, "weighted"), (2, "best"), (3, "best"))
#: Gaussian standard deviations (px) of the transfer rows' structure/texture split.
TRANSFER_SIGMAS = (1.5, 2.0, 3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the packaged model")
    parser.add_argument("--free-every", type=int, default=5, help="every N-th free256 image")
    parser.add_argument(
        "--eval", dest="eval_root", type=Path, default=ROOT.parent / "shared" / "data" / "eval"
    )
    parser.add_argument(
        "--rows", choices=("all", "transfer"), default="all", help="transfer: network and transfer"
    )
    parser.add_argument(
        "--sigmas", type=float, nargs="+", default=TRANSFER_SIGMAS, help="transfer rows' sigmas"
    )
    args = parser.parse_args()
    network = DeepFillMethod(args.checkpoint, device="cpu")
    methods = {"network (fill's default)": network}
    if args.rows == "all":
        for levels, vote in VARIANTS:
            methods[f"guided, {levels} levels, {vote}"] = GuidedPatchMatchMethod(
                network, levels=levels, vote=vote
            )
    for sigma in args.sigmas:
        methods[f"transfer, sigma {sigma:g} px"] = TextureTransferMethod(network, sigma=sigma)
    if args.rows == "all":
        methods["PatchMatch alone"] = PatchMatchMethod(device="cpu")
    for name, every, images, masks, truth, truth_tv in eval_sets(args.eval_root, args.free_every):
        print(f"\n### {name}: {len(images)} images (every {every}), mean per image\n")
        print("| method | hole PSNR (dB) | hole ℓ1 (%) | hole TV / ground truth's | s / image |")
        print("|---|---:|---:|---:|---:|")
        for label, method in methods.items():
            start = time.perf_counter()
            filled = fill_all(method, images, masks)
            seconds = (time.perf_counter() - start) / len(images)
            scores = hole_scores(filled, truth, masks, truth_tv)
            print(
                f"| {label} | {scores.psnr:.2f} | {scores.l1:.2f} | {scores.tv_ratio:.3f} | "
                f"{seconds:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    with torch.no_grad():
        main()
