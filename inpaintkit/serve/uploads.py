"""Uploads: a request's body read within the byte limit, images and masks decoded within limits.

As in ``fill`` (:func:`inpaintkit.io.open_image`), a file whose header announces more pixels
than the limit (a decompression bomb) is refused before any pixel is decoded, and a decode
must fit the decode share of the memory budget (:class:`~inpaintkit.serve.budget.DecodeGate`).
Every refusal is an :class:`~inpaintkit.serve.errors.ApiError` the page shows.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from starlette.requests import Request

from inpaintkit.io import ImageReadError, open_image, read_mask, to_rgb8
from inpaintkit.memory import DECODE_BYTES_PER_PIXEL
from inpaintkit.serve.budget import DecodeGate
from inpaintkit.serve.errors import ApiError
from inpaintkit.serve.params import parse_number

#: Largest upload accepted, in bytes (a 100-megapixel PNG is about this size).
DEFAULT_MAX_UPLOAD = 256 * 1024**2


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes before it is all read."""
    too_large = ApiError(413, f"upload too large: the limit is {limit / 1024**2:.0f} MB")
    length = request.headers.get("content-length")
    if length is not None and parse_number("Content-Length", length, 0, 1 << 62) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    if size == 0:
        raise ApiError(400, "empty upload")
    return b"".join(chunks)


def _header_pixels(data: bytes, what: str, max_pixels: int) -> int:
    """Pixels a file's header announces (nothing decoded); 400 for what is no image or too large."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        # Decoding gives the one-line reason (io.open_image); the header alone gives none.
        height = width = 0
        if isinstance(err, Image.DecompressionBombError):
            raise ApiError(400, f"{what}: refused as a decompression bomb: {err}") from None
    if width * height > max_pixels:
        raise ApiError(
            400,
            f"{what}: {width}x{height} image exceeds the {max_pixels}-pixel limit "
            "(possible decompression bomb)",
        )
    return width * height


def decode_image(data: bytes, name: str, max_pixels: int, gate: DecodeGate) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB from an image file's bytes; 400 for what cannot be read."""
    pixels = _header_pixels(data, name, max_pixels)
    with gate.hold(DECODE_BYTES_PER_PIXEL * pixels, name):
        try:
            return to_rgb8(open_image(io.BytesIO(data), max_pixels))
        except ImageReadError as err:
            raise ApiError(400, f"{name}: {err}") from None


def decode_mask(
    data: bytes, size: tuple[int, int] | None, max_pixels: int, gate: DecodeGate
) -> np.ndarray:
    """bool ``(H, W)`` from a mask file's bytes (white = hole), checked against ``size``."""
    pixels = _header_pixels(data, "mask", max_pixels)
    try:
        with gate.hold(DECODE_BYTES_PER_PIXEL * pixels, "the mask"):
            hole = read_mask(io.BytesIO(data), max_pixels=max_pixels)
    except ImageReadError as err:
        raise ApiError(400, f"mask: {err}") from None
    if size is not None and hole.shape != size:
        raise ApiError(
            400, f"the mask is {hole.shape[1]}x{hole.shape[0]} but the image is {size[1]}x{size[0]}"
        )
    return hole
