"""Write docs/gallery.md: real photos, the holes a person would paint, and each method's fill.

Twelve photos of ../shared/data/eval (none in the training set, docs/model-card.md), each
downscaled to GALLERY_SIDE px on its longer side; per photo a mask drawn from hand-placed
shapes (the objects, people, text and scratches in that photo), committed under
docs/images/gallery/masks/; then the default fill (the packaged model, as `inpaintkit fill`
runs it), the same with each `--texture` option, and PatchMatch's, each timed. Rerun it
whenever a model ships: it rewrites the pictures, docs/gallery.md and
docs/images/gallery/overview.jpg, the README's picture.

Usage: python docs/make_gallery.py [--checkpoint FILE] [--data ../shared/data] [--redraw-masks]
(the packaged model on the CPU by default; 27 s on 2 otherwise idle cores, stint 18).
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from inpaintkit import __version__
from inpaintkit.fill import fill_arrays
from inpaintkit.fill_images import paste_fill, to_working
from inpaintkit.hd_strategy import DEFAULT_STRATEGY, fill_method_crops, plan_image
from inpaintkit.io import atomic_write, read_mask
from inpaintkit.methods import DeepFillMethod, InpaintMethod, PatchMatchMethod
from inpaintkit.report import comparison_sheet, write_png
from inpaintkit.texture import GuidedPatchMatchMethod, TextureTransferMethod

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "images" / "gallery"
DATA = DOCS.parents[1] / "shared" / "data"
#: Longer side of every gallery photo, in pixels: what is filled, timed and shown. Small
#: enough that the twelve photos and their fills stay near 1.5 MB as JPEG.
GALLERY_SIDE = 512
#: The shapes below are placed in a frame whose longer side is this (they were read off the
#: photos drawn at 768 px with a grid); they are scaled to GALLERY_SIDE when drawn.
DESIGN_SIDE = 768
JPEG_QUALITY = 85
#: The README's picture: these photos, one row each (masked photo | each method's fill).
OVERVIEW = ("one_stands_out", "market", "monument", "cups")
OVERVIEW_TILE = (192, 128)  # (width, height) of one tile; five tiles make a 960 px row
#: The hole's tint over the photo in the "what was painted" pictures.
TINT, TINT_ALPHA = (255, 40, 40), 0.6


# --------------------------------------------------------------------------- the shapes


@dataclass(frozen=True)
class Stroke:
    """A brush stroke through ``points`` (design-frame pixels), ``width`` wide, round ends."""

    points: tuple[tuple[float, float], ...]
    width: float


@dataclass(frozen=True)
class Ellipse:
    """A filled ellipse inside the box ``(left, top, right, bottom)``."""

    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Polygon:
    """A filled polygon."""

    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Text:
    """Text whose top-left corner is at ``at``, ``size`` px tall, drawn with a ``bold`` outline."""

    text: str
    at: tuple[float, float]
    size: float
    bold: float = 2


@dataclass(frozen=True)
class Scratches:
    """``count`` thin wavering lines across the photo and a few dust specks (seeded)."""

    count: int
    seed: int
    width: float = 3


Shape = Stroke | Ellipse | Polygon | Text | Scratches


@dataclass(frozen=True)
class GalleryPhoto:
    name: str  # the gallery's name for it (file names under docs/images/gallery)
    source: str  # path under the data folder
    caption: str  # what the mask is, as a person would say it
    shapes: tuple[Shape, ...]


PHOTOS = (
    GalleryPhoto(
        "market",
        "eval/photos/wiki004.jpg",
        "Two people walking through a market hall, brushed out.",
        (
            Stroke(((229, 350), (228, 380), (226, 420), (226, 452)), 50),
            Stroke(((208, 412), (212, 432)), 24),  # his bag
            Stroke(((296, 343), (296, 380), (294, 438)), 40),
        ),
    ),
    GalleryPhoto(
        "monument",
        "eval/photos/wiki046.jpg",
        "A monument and its reflection, removed from a lake view.",
        (
            Polygon(((446, 80), (464, 80), (480, 300), (432, 300))),
            Stroke(((459, 392), (459, 575)), 44),
        ),
    ),
    GalleryPhoto(
        "boats",
        "eval/large/evening_glow.jpg",
        "A plank on the beach and a row of posts in the lake.",
        (
            Polygon(((218, 286), (244, 286), (256, 372), (224, 374))),
            Stroke(((470, 201), (518, 198), (566, 196)), 22),
        ),
    ),
    GalleryPhoto(
        "ladybird",
        "eval/large/lady_bird.jpg",
        "A ladybird on a grass blade.",
        (Ellipse((500, 206, 582, 296)),),
    ),
    GalleryPhoto(
        "one_stands_out",
        "eval/large/one_stands_out.jpg",
        "The one orange plant in a bed of moss.",
        (Ellipse((452, 196, 548, 290)),),
    ),
    GalleryPhoto(
        "caption",
        "eval/photos/wiki017.jpg",
        "A caption and a date stamp printed over a landscape.",
        (
            Text("SAMPLE PHOTO", (150, 300), 72, 3),
            Text("2026-12-06", (560, 462), 30, 1),
        ),
    ),
    GalleryPhoto(
        "old_truck",
        "eval/photos/wiki013.jpg",
        "Scratches and dust on an old print.",
        (Scratches(9, seed=13),),
    ),
    GalleryPhoto(
        "persimmon",
        "eval/photos/wiki022.jpg",
        "A persimmon on a bare branch, against a blurred background.",
        (Ellipse((214, 212, 392, 394)),),
    ),
    GalleryPhoto(
        "ship",
        "eval/photos/wiki042.jpg",
        "The ship behind the hovercraft.",
        (Polygon(((56, 172), (64, 72), (232, 72), (326, 160), (326, 196), (56, 204))),),
    ),
    GalleryPhoto(
        "spoon",
        "eval/photos/wiki045.jpg",
        "A spoon on a saucer.",
        (Polygon(((592, 390), (684, 376), (768, 454), (768, 514), (688, 514), (596, 472))),),
    ),
    GalleryPhoto(
        "cups",
        "eval/large/colorful_cups.jpg",
        "One cup out of a stack of cups: structure the fill has to invent.",
        (Ellipse((316, 270, 520, 440)),),
    ),
    GalleryPhoto(
        "shuttle",
        "eval/photos/wiki020.jpg",
        "A service truck parked in front of a space shuttle.",
        (Polygon(((320, 348), (594, 346), (594, 470), (560, 494), (336, 494), (318, 460))),),
    ),
)


def _scratches(draw: ImageDraw.ImageDraw, size: tuple[int, int], shape: Scratches, scale: float):
    """Seeded wavering lines from one edge region to another, and specks of dust."""
    rng = np.random.default_rng(shape.seed)
    width, height = size
    for _ in range(shape.count):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height * 0.3)
        length = rng.uniform(0.4, 0.9) * height
        angle = rng.uniform(-0.5, 0.5)  # mostly vertical, as scratches along a film
        steps = 24
        points = [
            (
                x0 + np.sin(angle) * length * t + rng.normal(0, 2 * scale),
                y0 + np.cos(angle) * length * t,
            )
            for t in np.linspace(0, 1, steps)
        ]
        draw.line(points, fill=255, width=max(1, round(shape.width * scale)), joint="curve")
    for _ in range(4 * shape.count):
        x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(1.5, 4) * scale
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def draw_mask(photo: GalleryPhoto, size: tuple[int, int]) -> np.ndarray:
    """bool ``(H, W)`` for an image of ``size = (W, H)``: the photo's shapes, True = hole."""
    scale = max(size) / DESIGN_SIDE
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)

    def xy(points: tuple[tuple[float, float], ...]) -> list[tuple[float, float]]:
        return [(x * scale, y * scale) for x, y in points]

    for shape in photo.shapes:
        if isinstance(shape, Stroke):
            width = max(1, round(shape.width * scale))
            draw.line(xy(shape.points), fill=255, width=width, joint="curve")
            for x, y in xy(shape.points[:1] + shape.points[-1:]):  # round ends, as a brush
                draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
        elif isinstance(shape, Ellipse):
            draw.ellipse([v * scale for v in shape.box], fill=255)
        elif isinstance(shape, Polygon):
            draw.polygon(xy(shape.points), fill=255)
        elif isinstance(shape, Text):
            font = ImageFont.load_default(size=shape.size * scale)
            draw.text(
                xy((shape.at,))[0],
                shape.text,
                fill=255,
                font=font,
                stroke_width=max(1, round(shape.bold * scale)),
                stroke_fill=255,
            )
        else:
            _scratches(draw, size, shape, scale)
    return np.asarray(canvas) > 127


# --------------------------------------------------------------------------- the pictures


def load_photo(data: Path, photo: GalleryPhoto) -> np.ndarray:
    """uint8 ``(H, W, 3)``: the photo, EXIF-rotated, longer side at most GALLERY_SIDE."""
    with Image.open(data / photo.source) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.thumbnail((GALLERY_SIDE, GALLERY_SIDE), Image.Resampling.LANCZOS)
        return np.asarray(image)


def painted(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The photo with the hole tinted, as the serve page shows a painted mask."""
    tinted = pixels * (1 - TINT_ALPHA) + np.array(TINT) * TINT_ALPHA
    return np.where(hole[..., None], tinted.round().astype(np.uint8), pixels)


def write_jpeg(path: Path, pixels: np.ndarray) -> None:
    with atomic_write(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="JPEG", quality=JPEG_QUALITY, optimize=True)


def mask_for(photo: GalleryPhoto, pixels: np.ndarray, redraw: bool) -> np.ndarray:
    """The committed mask (docs/images/gallery/masks/NAME.png), drawn from the shapes if absent."""
    path = OUT / "masks" / f"{photo.name}.png"
    height, width = pixels.shape[:2]
    if path.is_file() and not redraw:
        hole = read_mask(path)
        if hole.shape == (height, width):
            return hole
    hole = draw_mask(photo, (width, height))
    write_png(path, hole.astype(np.uint8) * 255)
    return hole


def timed_fill(
    method: InpaintMethod, pixels: np.ndarray, hole: np.ndarray
) -> tuple[np.ndarray, float, str]:
    """The filled image as `inpaintkit fill` makes it (the default HD strategy), the seconds
    it took, and the strategy `auto` chose."""
    plan = plan_image(DEFAULT_STRATEGY, hole)
    start = time.perf_counter()
    if plan.strategy == "crop":
        filled, _ = fill_method_crops(method, pixels, hole, plan.boxes, sides=plan.sides)
    else:
        work_pixels, work_hole = to_working(pixels, hole, plan.limit)
        work_filled = fill_arrays(method, [work_pixels], [work_hole], offsets=False)[0][0]
        filled = paste_fill(pixels, hole, work_filled)
    return filled, time.perf_counter() - start, plan.strategy


def overview(rows: dict[str, list[np.ndarray]], labels: list[str]) -> np.ndarray:
    tiles = [
        [
            np.asarray(ImageOps.fit(Image.fromarray(t), OVERVIEW_TILE, Image.Resampling.LANCZOS))
            for t in rows[name]
        ]
        for name in OVERVIEW
    ]
    return comparison_sheet(tiles, ["painted hole (red)", *labels])


# --------------------------------------------------------------------------- the page


@dataclass
class Row:
    photo: GalleryPhoto
    size: tuple[int, int]  # (W, H)
    hole_share: float
    seconds: dict[str, float]  # method label -> seconds of its fill
    strategy: str  # what the default HD strategy chose for it


def provenance(data: Path) -> dict[str, str]:
    """file name -> its Debian package and path, from eval/large/PROVENANCE.tsv."""
    path = data / "eval" / "large" / "PROVENANCE.tsv"
    if not path.is_file():
        return {}
    lines = path.read_text().splitlines()[1:]
    return {f[0]: f"{f[1]}: {f[2]} ({f[4]})" for f in (line.split("\t") for line in lines)}


def page(rows: list[Row], files: dict[str, str], model: str, device: str, data: Path) -> str:
    """The page's text; ``files``: method label -> the suffix of its pictures' names."""
    labels = list(files)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# Gallery: real photos, the holes a person paints, and each method's fill",
        "",
        "<!-- Written by docs/make_gallery.py: edit the script, then rerun it. -->",
        "",
        f"{len(rows)} photos of the evaluation sets (`../shared/data/eval`: none is in the training",
        'set, "Photos" below), each downscaled to '
        f"{GALLERY_SIDE} px on its longer side, with the holes a person",
        "would brush over in `inpaintkit serve`: objects, people, printed text, scratches. Per photo:",
        "the painted hole (red), the **default** fill (what `inpaintkit fill` gives: the packaged",
        "DeepFill model, Poisson-blended into the hole), the same fill with `--texture patchmatch`",
        '(our PatchMatch copies the photo\'s patches onto it; docs/model.md, "Texture from the photo")',
        "and with `--texture transfer` (the network's fill below 2 px, the photo's detail above",
        'it; docs/model.md, "Texture transfer"), and our **PatchMatch**\'s alone, with the seconds each',
        "fill took. The masks are committed (`docs/images/gallery/masks/`, white = hole), so",
        "`inpaintkit fill` reproduces any row.",
        "",
        f"Generated on {datetime.date.today().isoformat()} by `python docs/make_gallery.py` "
        f"(inpaintkit {__version__}; model {model}; {device}, {torch.get_num_threads()} threads, "
        f"load average {load} at the end: the machine was shared, so compare times within a row).",
        "Rerun it whenever a model ships; it rewrites this page, its pictures and the README's picture",
        "(`docs/images/gallery/overview.jpg`).",
        "",
    ]
    for i, row in enumerate(rows, 1):
        name, (width, height) = row.photo.name, row.size
        lines += [
            f"## {i}. {row.photo.caption}",
            "",
            f"`{row.photo.source}`, {width}×{height}, hole {100 * row.hole_share:.1f} % of the "
            f"image, filled as `--hd-strategy {DEFAULT_STRATEGY}` chose: `{row.strategy}`.",
            "",
            "| painted hole | " + " | ".join(f"{m}: {row.seconds[m]:.2f} s" for m in labels) + " |",
            "|---" * (len(labels) + 1) + "|",
            f"| ![{name}: the hole](images/gallery/{name}.jpg) | "
            + " | ".join(f"![{name}: {m}](images/gallery/{name}_{files[m]}.jpg)" for m in labels)
            + " |",
            "",
        ]
    totals = {m: sum(r.seconds[m] for r in rows) for m in labels}
    lines += [
        "## Times",
        "",
        "| method | total (s) | median per photo (s) |",
        "|---|---|---|",
        *(
            f"| {m} | {totals[m]:.1f} | {np.median([r.seconds[m] for r in rows]):.2f} |"
            for m in labels
        ),
        "",
        "Each time is one photo filled as `inpaintkit fill` fills it, without reading and writing",
        "files, after one untimed warm-up fill per method.",
        "",
        "## Photos",
        "",
        "None of these photos was made by this project; they are used here as the evaluation sets",
        "use them (`../shared/data/README.md`):",
        "",
    ]
    sources = provenance(data)
    for row in rows:
        file = Path(row.photo.source).name
        origin = sources.get(file) or (
            "a Wikipedia photo from a public collection of test images (eval/photos: the rect256 "
            "set's photos at shorter side 512)"
        )
        lines.append(f"- `{row.photo.source}` ({row.photo.name}): {origin}")
    lines += [
        "",
        "The wallpapers are GPL-2+ per their Debian packages' `debian/copyright`. The shared",
        "data's README does not record the Wikipedia photos' licences one by one: each is its",
        "author's, as published on Wikipedia.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the packaged model")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--redraw-masks", action="store_true", help="draw the masks from the shapes again"
    )
    args = parser.parse_args()
    deepfill = DeepFillMethod(args.checkpoint, device=args.device)
    # label -> (the suffix of its pictures' names, the method)
    columns = {
        "default (DeepFill)": ("default", deepfill),
        "DeepFill --texture patchmatch": ("texture_patchmatch", GuidedPatchMatchMethod(deepfill)),
        "DeepFill --texture transfer": ("texture_transfer", TextureTransferMethod(deepfill)),
        "PatchMatch": ("patchmatch", PatchMatchMethod(device=args.device)),
    }
    digest = deepfill.settings()["checkpoint_sha256"][:12]
    model = f"`{deepfill.checkpoint.name}` (sha256 {digest}…)"
    warm = np.zeros((64, 64, 3), np.uint8)
    warm_hole = np.zeros((64, 64), bool)
    warm_hole[24:40, 24:40] = True
    for _, method in columns.values():
        timed_fill(method, warm, warm_hole)
    rows, pictures = [], {}
    for photo in PHOTOS:
        pixels = load_photo(args.data, photo)
        hole = mask_for(photo, pixels, args.redraw_masks)
        shown = [painted(pixels, hole)]
        write_jpeg(OUT / f"{photo.name}.jpg", shown[0])
        seconds = {}
        for label, (suffix, method) in columns.items():
            filled, seconds[label], strategy = timed_fill(method, pixels, hole)
            write_jpeg(OUT / f"{photo.name}_{suffix}.jpg", filled)
            shown.append(filled)
        pictures[photo.name] = shown
        height, width = hole.shape
        rows.append(Row(photo, (width, height), float(hole.mean()), seconds, strategy))
        print(photo.name, " ".join(f"{k}: {v:.2f} s" for k, v in seconds.items()), flush=True)
    write_jpeg(OUT / "overview.jpg", overview(pictures, list(columns)))
    files = {label: suffix for label, (suffix, _) in columns.items()}
    text = page(rows, files, model, str(deepfill.device), args.data)
    with atomic_write(DOCS / "gallery.md") as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    main()
