"""How much of a hole does the spatially discounted ℓ1 actually train? Per mask family and scheme.

The reconstruction loss weights each hole pixel by ``γ^d`` (losses.spatial_discount). The
released code measures ``d`` to the edge of the hole's bounding box with γ = 0.9 ("bbox"); the
paper's text measures it to the nearest known pixel with γ = 0.99 ("distance"). On a free-form
mask of several strokes the bounding box spans most of the image, so under "bbox" a thin
stroke in its middle is far from the box edge and gets almost no weight, though every one of
its pixels is next to a known pixel. This prints, for each family, the mean weight over hole
pixels and the share of hole pixels weighted below 0.1:

    python benchmarks/discount_weights.py --recipe recipes/default.yaml --count 400 \
        --masks ../shared/data/eval/free256/masks

Training masks are the recipe's own (``masks.generate_mask``, seed 0), split into its
rectangles and its strokes; ``--masks`` adds a folder of mask files (white = hole).
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


if __name__ == "__main__":
    main()
