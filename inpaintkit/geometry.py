"""The geometry ``prepare`` applies to a decoded image, shared with ``evaluate``: resize, then centre-crop.

``resize="shorter"`` scales the shorter side to ``size`` and centre-crops ``size x size``;
``"fixed"`` scales to ``resize_to = (H, W)`` (CelebA: 315 x 256, the paper's appendix A) and
centre-crops ``size x size`` when ``size`` is set; ``"none"`` keeps the image as it is.
Downscaling uses Lanczos, upscaling bicubic.
"""

from __future__ import annotations

from PIL import Image

#: ``resize`` modes of :func:`resize_and_crop` (``prepare --resize``; ``celeba`` is ``fixed`` at 315x256).
RESIZE_MODES = ("shorter", "fixed", "none")


def resize_and_crop(
    image: Image.Image,
    size: int | None,
    resize: str = "shorter",
    resize_to: tuple[int, int] | None = None,
) -> Image.Image:
    """``image`` resized as ``resize`` says, then centre-cropped to ``size x size`` if ``size`` is set.

    ``size`` is required by ``"shorter"``, ``resize_to = (H, W)`` by ``"fixed"``. Returns
    ``image`` itself when the geometry leaves it as it is (no resize, no crop).
    """
    if resize == "none":
        return image
    width, height = image.size
    if resize == "shorter":
        scale = size / min(width, height)
        target = (max(size, round(width * scale)), max(size, round(height * scale)))
    else:
        target = (resize_to[1], resize_to[0])
    if target != image.size:
        shrinking = target[0] * target[1] < width * height
        method = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC
        image = image.resize(target, method)
    if size is not None and image.size != (size, size):
        left = (image.width - size) // 2
        top = (image.height - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return image
