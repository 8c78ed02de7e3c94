"""Draw docs/images/masks.png: four sample masks of each kind at 256x256 (white = hole).

Usage: python docs/make_masks_figure.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from inpaintkit import io
from inpaintkit.masks import MaskConfig, generate_mask

ROWS = [
    MaskConfig(kind="rect"),
    MaskConfig(kind="freeform", stroke_style="deepfill"),
    MaskConfig(kind="freeform", stroke_style="thin"),
    MaskConfig(kind="freeform", stroke_style="medium"),
    MaskConfig(kind="freeform", stroke_style="thick"),
]


def main() -> None:
    gap = 4
    tiles = np.full((len(ROWS) * (128 + gap), 4 * (128 + gap)), 128, np.uint8)
    for r, config in enumerate(ROWS):
        for c in range(4):
            mask = generate_mask(config, 256, 256, seed=0, index=c)[::2, ::2]
            y, x = r * (128 + gap), c * (128 + gap)
            tiles[y : y + 128, x : x + 128] = mask * 255
    out = Path(__file__).parent / "images" / "masks.png"
    with io.atomic_write(out) as tmp:
        Image.fromarray(tiles).save(tmp)


if __name__ == "__main__":
    main()
