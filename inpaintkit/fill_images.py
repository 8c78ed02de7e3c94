"""The file side of ``fill``: an image and its mask decoded into what is inpainted, and a fill
encoded back into a file of the input's mode (module :mod:`inpaintkit.fill` has the guarantees).

Decoding (:func:`decode_job`) splits off alpha, reads, resizes and dilates the mask, plans the
image's strategy (:mod:`inpaintkit.hd_strategy`) and brings it to its working size
(:func:`to_working`); encoding (:func:`encode_fill`) pastes the fill into the original
(:func:`paste_fill`, :func:`merge_fill`) and writes it and the attention pictures atomically
(:func:`save_image`). ``serve`` shares :func:`to_working`, :func:`paste_fill`,
:func:`attention_pictures` and :func:`header_size`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy.ndimage import distance_transform_edt

from inpaintkit.fill_options import OUTPUT_FORMATS, FillJob, FillOptions
from inpaintkit.hd_strategy import BoxAttention, HDPlan, plan_image, working_size
from inpaintkit.io import ImageReadError, atomic_write, open_image, read_mask, to_rgb8
from inpaintkit.model.visualize import attended_overlay, flow_to_color

#: Encoder settings per Pillow format: JPEG at high quality without chroma subsampling; the
#: others lossless, so known pixels stay bit-exact on disk.
SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "PNG": {"compress_level": 6},
    "WEBP": {"lossless": True, "quality": 100},
    "BMP": {},
    "TIFF": {"compression": "tiff_lzw"},
}


class FileError(ValueError):
    """One file cannot be filled; the message says why in one line."""


# --------------------------------------------------------------------------- masks and sizes


def dilate_mask(hole: np.ndarray, radius: int) -> np.ndarray:
    """Grow a bool ``(H, W)`` hole mask by a disk of ``radius`` pixels.

    A pixel becomes a hole when its Euclidean distance to a hole pixel is at most ``radius``;
    the distance transform makes this cost the same for any radius.
    """
    if radius <= 0 or not hole.any():
        return hole.copy()
    return distance_transform_edt(~hole) <= radius


def header_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` after EXIF orientation from the file header alone, or None if unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            # Orientations 5-8 rotate by 90 degrees: exif_transpose swaps the sides.
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
            return height, width
    # A decompression bomb is refused with its one-line reason when the file is decoded.
    except (OSError, ValueError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError):
        return None


# --------------------------------------------------------------------------- decoding


@dataclass
class DecodedImage:
    """An image ready to inpaint, and what is needed to write it back in its own mode."""

    job: FillJob
    pixels: np.ndarray  # uint8 (H, W, 3): the colour channels that are filled
    alpha: np.ndarray | None  # uint8 (H, W), copied to the output unchanged
    mode: str  # output mode: "L", "LA", "RGB" or "RGBA"
    hole: np.ndarray  # bool (H, W), True = hole, at full resolution
    work_pixels: np.ndarray  # uint8 (h, w, 3) at the working resolution
    work_hole: np.ndarray  # bool (h, w)
    icc_profile: bytes | None
    # How it is filled; under crop, work_pixels and work_hole are pixels and hole themselves.
    plan: HDPlan = field(default_factory=lambda: HDPlan("original"))


def split_channels(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, str]:
    """A Pillow image -> ``(uint8 RGB (H, W, 3), uint8 alpha (H, W) or None, output mode)``.

    The RGB of RGBA is the stored colour (not flattened) so known pixels survive unchanged.
    A palette image with a transparent colour becomes RGBA, its transparency kept as alpha.
    """
    if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode in ("L", "LA"):
        data = np.asarray(image)
        gray = data if image.mode == "L" else data[..., 0]
        alpha = None if image.mode == "L" else np.ascontiguousarray(data[..., 1])
        return np.repeat(gray[..., None], 3, axis=2), alpha, image.mode
    if image.mode in ("RGB", "RGBA"):
        data = np.asarray(image)
        alpha = np.ascontiguousarray(data[..., 3]) if image.mode == "RGBA" else None
        return np.ascontiguousarray(data[..., :3]), alpha, image.mode
    # 1-bit, 16-bit and float grey stay grey; palette, CMYK, YCbCr, ... become RGB.
    mode = "L" if image.mode in ("1", "I", "F") or image.mode.startswith("I;16") else "RGB"
    return to_rgb8(image), None, mode


def _resize(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize a uint8 ``(H, W)`` or ``(H, W, 3)`` array to ``size = (h, w)``."""
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))


def decode_job(job: FillJob, options: FillOptions) -> DecodedImage:
    """Read the image and its mask; raise FileError with a one-line reason."""
    assert job.mask is not None
    try:
        image = open_image(job.image)
    except ImageReadError as err:
        raise FileError(str(err)) from None
    pixels, alpha, mode = split_channels(image)
    try:
        hole = read_mask(job.mask, invert=options.invert_masks)
    except ImageReadError as err:
        raise FileError(f"mask {job.mask}: {err}") from None
    height, width = pixels.shape[:2]
    if hole.shape != (height, width):
        if not options.resize_masks:
            raise FileError(
                f"mask {job.mask} is {hole.shape[1]}x{hole.shape[0]} but the image is "
                f"{width}x{height} (pass --resize-masks to resize masks)"
            )
        hole = _resize(hole.astype(np.uint8) * 255, (height, width), Image.Resampling.NEAREST) > 127
    hole = dilate_mask(hole, options.dilate)
    plan = plan_image(options.hd_strategy, hole, options.max_size)
    work_pixels, work_hole = (
        (pixels, hole) if plan.strategy == "crop" else to_working(pixels, hole, plan.limit)
    )
    return DecodedImage(
        job,
        pixels,
        alpha,
        mode,
        hole,
        work_pixels,
        work_hole,
        image.info.get("icc_profile"),
        plan,
    )


def to_working(
    pixels: np.ndarray, hole: np.ndarray, max_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 (h, w, 3), bool (h, w))``: an image and its hole at :func:`working_size`.

    Returned as is when no downscaling is needed. The image is downscaled with LANCZOS; a
    working pixel is a hole if any full-resolution pixel under it is, so the upsampled fill
    (:func:`paste_fill`) covers every full-resolution hole pixel.
    """
    size = working_size(*hole.shape, max_size)
    if size == hole.shape:
        return pixels, hole
    work_pixels = _resize(pixels, size, Image.Resampling.LANCZOS)
    work_hole = _resize(hole.astype(np.uint8) * 255, size, Image.Resampling.BOX) > 0
    return work_pixels, work_hole


# --------------------------------------------------------------------------- encoding


def merge_fill(decoded: DecodedImage, work_filled: np.ndarray) -> Image.Image:
    """Composite a working-resolution fill ``uint8 (h, w, 3)`` into the full-resolution original.

    Known pixels (and alpha) come from the original, bit for bit; hole pixels from the fill,
    upsampled (bicubic) when the working resolution is smaller, and reduced to grey (Pillow's
    ITU-R 601 luma) for grey outputs.
    """
    out = paste_fill(decoded.pixels, decoded.hole, work_filled)
    if decoded.mode in ("L", "LA"):
        filled_gray = np.asarray(Image.fromarray(out).convert("L"))
        out = np.where(decoded.hole, filled_gray, decoded.pixels[..., 0])
    if decoded.alpha is not None:
        out = np.dstack([out, decoded.alpha])
    return Image.fromarray(np.ascontiguousarray(out), decoded.mode)


def paste_fill(pixels: np.ndarray, hole: np.ndarray, work_filled: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)``: ``pixels`` with its ``hole`` taken from a working-resolution fill.

    ``work_filled`` (uint8 ``(h, w, 3)``, from :func:`to_working`'s inputs) is upsampled
    bicubically when smaller; known pixels stay ``pixels``' own, bit for bit.
    """
    if work_filled.shape[:2] != hole.shape:
        work_filled = _resize(work_filled, hole.shape, Image.Resampling.BICUBIC)
    return np.where(hole[..., None], work_filled, pixels)


def attention_pictures(
    work_filled: np.ndarray, offsets: np.ndarray, work_hole: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The two attention pictures of a fill, uint8 ``(h, w, 3)`` at the working resolution.

    ``(flow, overlay)``: the offsets ``(2, h/4, w/4)`` colour-coded as optical flow (paper
    fig. 4, nearest-upscaled to the image) and appendix C's attended-region overlay.
    """
    colors = flow_to_color(offsets[None])[0]
    flow = _resize(np.ascontiguousarray(colors), work_filled.shape[:2], Image.Resampling.NEAREST)
    return flow, attended_overlay(work_filled, offsets, work_hole)


def save_image(image: Image.Image, path: Path, icc_profile: bytes | None = None) -> None:
    """Write ``image`` atomically in the format its suffix names (see SAVE_OPTIONS)."""
    fmt = OUTPUT_FORMATS.get(path.suffix.lower().lstrip("."))
    if fmt is None:
        raise FileError(f"cannot write {path.suffix!r} files; pass --format png")
    if fmt == "JPEG" and image.mode in ("LA", "RGBA"):
        raise FileError(
            f"JPEG cannot keep the alpha channel of this {image.mode} image; pass --format png"
        )
    options = dict(SAVE_OPTIONS[fmt])
    if icc_profile and fmt != "BMP":
        options["icc_profile"] = icc_profile
    try:
        with atomic_write(path) as tmp:
            image.save(tmp, format=fmt, **options)
    except (OSError, ValueError, KeyError) as err:
        raise FileError(f"cannot write {path} ({err or type(err).__name__})") from None


def attention_paths(relative: Path, attention_dir: Path) -> tuple[Path, Path]:
    """The attention-map and attended-overlay PNGs for the image at ``relative``."""
    base = attention_dir / relative.with_suffix("")
    return base.with_name(base.name + "_attention.png"), base.with_name(base.name + "_overlay.png")


def encode_fill(
    decoded: DecodedImage,
    work_filled: np.ndarray,
    offsets: np.ndarray | None,
    attention_dir: Path | None,
    box: BoxAttention | None = None,
) -> None:
    """Write the fill and, into ``attention_dir``, the pictures of ``offsets`` (or, under
    ``crop``, of the largest box's attention ``box``, drawn over that box's working fill)."""
    save_image(merge_fill(decoded, work_filled), decoded.job.output, decoded.icc_profile)
    if box is not None:
        work_filled, offsets, work_hole = box.work_filled, box.offsets, box.work_hole
    else:
        work_hole = decoded.work_hole
    if attention_dir is not None and offsets is not None:
        flow_path, overlay_path = attention_paths(decoded.job.relative, attention_dir)
        flow, overlay = attention_pictures(work_filled, offsets, work_hole)
        save_image(Image.fromarray(flow), flow_path)
        save_image(Image.fromarray(overlay), overlay_path)
