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
from PIL import Image, ImageDraw, ImageOps

from inpaintkit import io
from inpaintkit.fill import attention_pictures, fill_arrays
from inpaintkit.masks import MaskConfig, generate_mask
from inpaintkit.methods import DeepFillMethod
from inpaintkit.model.visualize import flow_legend

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eval" / "photos"
DEFAULT_PHOTOS = ["wiki001", "wiki005", "wiki009", "wiki012", "wiki046"]
COLUMNS = ["input", "fill", "attention map", "attended regions", "original"]
SIZE, GAP, HEADER = 256, 6, 22


def load_photo(stem: str) -> np.ndarray:
    """uint8 ``(256, 256, 3)``: the photo's shorter side resized to 256, centre-cropped."""
    with Image.open(PHOTOS / f"{stem}.jpg") as image:
        return np.asarray(
            ImageOps.fit(image.convert("RGB"), (SIZE, SIZE), Image.Resampling.LANCZOS)
        )


def figure_rows(method: DeepFillMethod, stems: list[str]) -> list[list[np.ndarray]]:
    pixels = [load_photo(stem) for stem in stems]
    holes = [
        generate_mask(MaskConfig(kind="rect"), SIZE, SIZE, seed=0, index=i) > 0
        for i in range(len(stems))
    ]
    filled, offsets = fill_arrays(method, pixels, holes, offsets=True)
    rows = []
    for image, hole, fill, flow_offsets in zip(pixels, holes, filled, offsets, strict=True):
        shown = image.copy()
        shown[hole] = 255
        flow, overlay = attention_pictures(fill, flow_offsets, hole)
        rows.append([shown, fill, flow, overlay, image])
    return rows


def draw(rows: list[list[np.ndarray]], path: Path) -> None:
    width = len(COLUMNS) * (SIZE + GAP) - GAP
    height = HEADER + len(rows) * (SIZE + GAP) - GAP
    canvas = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(canvas)
    for c, title in enumerate(COLUMNS):
        pen.text((c * (SIZE + GAP) + 4, 5), title, fill="black")
    legend = Image.fromarray(flow_legend(48), "RGBA")
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            canvas.paste(Image.fromarray(tile), (c * (SIZE + GAP), HEADER + r * (SIZE + GAP)))
        corner = (2 * (SIZE + GAP) + SIZE - 52, HEADER + r * (SIZE + GAP) + 4)
        canvas.paste(legend, corner, legend)
    with io.atomic_write(path) as tmp:
        canvas.save(tmp, format="PNG")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="generator weights (default: packaged)")
    parser.add_argument("--photos", nargs="+", default=DEFAULT_PHOTOS)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "images" / "attention_figure.png"
    )
    args = parser.parse_args()
    method = DeepFillMethod(args.checkpoint, device="cpu", precision="fp32")
    draw(figure_rows(method, args.photos), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
