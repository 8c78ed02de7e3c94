"""How much of a hole does the spatially discounted ℓ1 actually train? Per mask family and scheme.

The reconstruction loss weights each hole pixel by ``γ^d`` (losses.spatial_discount). The
released code measures ``d`` to the edge of the hole's bounding box with γ = 0.9 ("bbox"); the
paper's text measures it to the nearest known pixel with γ = 0.99 ("distance"). On a free-form
mask of several strokes the bounding box spans most of the image, so under "bbox" a thin
stroke in its middle is far from the box edge and gets almost no weight, though every one of
its pixels is next to a known pixel. This prints, for each family, the mean weight over hole
pixels and the share of hole pixels weighted below 0.1:

    python benchmarks/discount_weights.py --recipe recipes/default.yaml --count 2000 \
        --masks ../shared/data/eval/free256/masks

Training masks are the recipe's own (``masks.generate_mask``, seed 0), split into its
rectangles and its strokes; ``--masks`` adds a folder of mask files (white = hole).

A second table asks how the hole term's weight splits by hole size. Averaged over the batch's
hole pixels (``loss.l1_normalization: batch``), an image weighs by its discounted hole area;
averaged per image (``image``), every image alike. It takes the drawn training masks in
batches of the recipe's ``data.batch_size``, in drawing order, and prints each hole-ratio bin's
share of the masks and of the hole term under both, with the recipe's discount.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from inpaintkit.config import load_recipe
from inpaintkit.io import list_images, read_mask
from inpaintkit.losses import spatial_discount
from inpaintkit.masks import generate_mask

SCHEMES = (("bbox", 0.9), ("distance", 0.9), ("distance", 0.99))


def is_rectangle(mask: np.ndarray) -> bool:
    """True when the hole fills its bounding box exactly (one axis-aligned rectangle)."""
    return int(mask.sum()) == int(np.any(mask, 1).sum()) * int(np.any(mask, 0).sum())


def weight_table(masks: list[np.ndarray]) -> list[tuple[str, float, float]]:
    """``(scheme, mean weight over hole pixels, share of hole pixels < 0.1)`` per scheme.

    ``masks`` are bool ``(H, W)`` (True = hole), all the same size; per-mask means are averaged.
    """
    batch = torch.from_numpy(np.stack(masks)).float()[:, None]  # (N, 1, H, W) in {0, 1}
    hole = batch.sum(dim=(1, 2, 3)).clamp(min=1)
    rows = []
    for mode, gamma in SCHEMES:
        weights = spatial_discount(batch, gamma, mode)
        mean = (weights.sum(dim=(1, 2, 3)) / hole).mean().item()
        low = ((((weights < 0.1) & (batch > 0.5)).sum(dim=(1, 2, 3))) / hole).mean().item()
        rows.append((f"{mode}, γ = {gamma}", mean, low))
    return rows


def loss_share_table(
    masks: list[np.ndarray], batch_size: int, gamma: float, mode: str
) -> list[tuple[str, float, float, float]]:
    """``(hole-ratio bin, share of masks, share under "batch", under "image")`` per 10 % bin.

    Each mask's weight in its batch (consecutive ``batch_size`` masks, a partial last batch
    dropped) is its discount sum over the batch's hole pixels ("batch") or over its own,
    divided by the batch size ("image"): losses.reconstruction_loss's hole term.
    """
    usable = len(masks) - len(masks) % batch_size
    batch = torch.from_numpy(np.stack(masks[:usable])).float()[:, None]  # (N, 1, H, W)
    discounted = spatial_discount(batch, gamma, mode).sum(dim=(1, 2, 3)).double()
    area = batch.sum(dim=(1, 2, 3)).double()
    batch_area = area.view(-1, batch_size).sum(1).repeat_interleave(batch_size)
    pooled = discounted / batch_area
    per_image = discounted / area.clamp(min=1) / batch_size
    ratio = area / (batch.shape[-1] * batch.shape[-2])
    rows = []
    for low in range(0, 100, 10):
        inside = (ratio >= low / 100) & (ratio < (low + 10) / 100)
        if inside.any():
            rows.append(
                (
                    f"{low}–{low + 10} %",
                    inside.double().mean().item(),
                    (pooled[inside].sum() / pooled.sum()).item(),
                    (per_image[inside].sum() / per_image.sum()).item(),
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipes/default.yaml")
    parser.add_argument("--count", type=int, default=400, help="training masks to draw")
    parser.add_argument("--masks", type=Path, help="a folder of mask files to add as a family")
    args = parser.parse_args()

    recipe = load_recipe(args.recipe)
    size = recipe.data.image_size
    drawn = [generate_mask(recipe.masks, size, size, 0, i) for i in range(args.count)]
    families = {
        "training rectangles": [m for m in drawn if is_rectangle(m)],
        "training strokes": [m for m in drawn if not is_rectangle(m)],
    }
    if args.masks is not None:
        families[f"{args.masks.parent.name}/{args.masks.name}"] = [
            read_mask(path) for path in list_images(args.masks)
        ]

    print(f"command: python {' '.join(shlex.quote(a) for a in sys.argv)}\n")
    print("| masks | count | scheme | mean weight on hole | hole pixels < 0.1 |")
    print("|---|---:|---|---:|---:|")
    for family, masks in families.items():
        if not masks:
            continue
        for scheme, mean, low in weight_table(masks):
            print(f"| {family} | {len(masks)} | {scheme} | {mean:.2f} | {100 * low:.0f} % |")

    loss = recipe.loss
    batch_size = recipe.data.batch_size
    print(
        f"\nTraining masks ({args.count}) in batches of {batch_size}, discount "
        f"{loss.spatial_discount_mode} γ = {loss.spatial_discount_gamma}: each hole-size bin's "
        "share of the masks and of the hole ℓ1 term\n"
    )
    print("| hole ratio | masks | hole term, batch mean | hole term, image mean |")
    print("|---|---:|---:|---:|")
    shares = loss_share_table(
        drawn, batch_size, loss.spatial_discount_gamma, loss.spatial_discount_mode
    )
    for label, count, pooled, per_image in shares:
        print(f"| {label} | {100 * count:.1f} % | {100 * pooled:.1f} % | {100 * per_image:.1f} % |")


if __name__ == "__main__":
    main()
