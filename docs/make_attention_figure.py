"""Draw docs/images/attention_figure.png: the paper's figure 4 and appendix C, with our model.

One row per photo of ../shared/data/eval/photos (shorter side resized to 256, centre-cropped
to 256x256, as the model was trained), with one of the paper's rectangular holes drawn from
the project's mask generator (seeded, so reruns draw the same holes). Columns: the input with
its hole | the fill | the attention map (the offset from each hole pixel to the background
patch it attends most, coloured by the flow colour wheel in the corner: hue = direction,
saturation = distance) | the attended regions (appendix C: the pixels the hole borrows from
most, in yellow, over the dimmed fill; the hole tinted blue) | the original.

Usage: python docs/make_attention_figure.py [--checkpoint FILE] [--photos wiki001 wiki005 ...]
(default: the packaged model, fp32 on the CPU).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from inpaintkit.fill import fill_arrays
from inpaintkit.fill_images import attention_pictures
from inpaintkit.masks import MaskConfig, generate_mask
from inpaintkit.methods import DeepFillMethod
from inpaintkit.model.visualize import flow_legend
from inpaintkit.report import comparison_sheet, masked_input, write_png

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eval" / "photos"
DEFAULT_PHOTOS = ["wiki001", "wiki005", "wiki009", "wiki012", "wiki046"]
COLUMNS = ["input", "fill", "attention map", "attended regions", "original"]
SIZE, LEGEND = 256, 48


def load_photo(stem: str) -> np.ndarray:
    """uint8 ``(256, 256, 3)``: the photo's shorter side resized to 256, centre-cropped."""
    with Image.open(PHOTOS / f"{stem}.jpg") as image:
        return np.asarray(
            ImageOps.fit(image.convert("RGB"), (SIZE, SIZE), Image.Resampling.LANCZOS)
        )


def with_legend(flow: np.ndarray) -> np.ndarray:
    """The attention map with the colour wheel in its top-right corner."""
    tile = Image.fromarray(flow)
    legend = Image.fromarray(flow_legend(LEGEND), "RGBA")
    tile.paste(legend, (tile.width - LEGEND - 4, 4), legend)
    return np.asarray(tile)


def figure_rows(method: DeepFillMethod, stems: list[str]) -> list[list[np.ndarray]]:
    pixels = [load_photo(stem) for stem in stems]
    holes = [
        generate_mask(MaskConfig(kind="rect"), SIZE, SIZE, seed=0, index=i) > 0
        for i in range(len(stems))
    ]
    filled, offsets = fill_arrays(method, pixels, holes, offsets=True)
    rows = []
    for image, hole, fill, flow_offsets in zip(pixels, holes, filled, offsets, strict=True):
        flow, overlay = attention_pictures(fill, flow_offsets, hole)
        rows.append([masked_input(image, hole), fill, with_legend(flow), overlay, image])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="generator weights (default: packaged)")
    parser.add_argument("--photos", nargs="+", default=DEFAULT_PHOTOS)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "images" / "attention_figure.png"
    )
    args = parser.parse_args()
    method = DeepFillMethod(args.checkpoint, device="cpu", precision="fp32")
    write_png(args.out, comparison_sheet(figure_rows(method, args.photos), COLUMNS))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
