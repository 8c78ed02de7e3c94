"""Texture transfer: a guide's low frequencies, the photo's own high frequencies.

A reconstruction-trained network predicts the mean of what could be behind a hole: the layout
and colours are right, the detail is missing (docs/model-card.md). Guided PatchMatch
(:func:`~inpaintkit.patchmatch.patchmatch_inpaint` with ``guide``) compares the blurry guide
with sharp known patches, so the best matches are the flattest patches of the photo and the
fill stays soft. Here, as in image analogies (Hertzmann et al. 2001), patches are compared on
what the guide does know:

* the **structure** is the Gaussian low-pass (standard deviation ``sigma`` px) of the guide
  inside the hole and the photo outside it; the photo's **detail** is the photo minus it;
* every patch is described by its structure plus ``coherence`` x its detail, so that
  neighbouring copies agree (the hole's detail is left out on the first step, when it has none
  of its own yet);
* PatchMatch matches each hole patch to a known patch on those descriptions, and each hole
  pixel copies the detail of its best-matching covering patch's pixel (``vote="best"``): real
  detail of the photo, never an average of several;
* the output is the structure plus the copied detail, so the layout and colours, where most of
  the PSNR lies, stay the network's (docs/model.md, "Texture transfer").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from inpaintkit.patchmatch import cpu
from inpaintkit.patchmatch.inpaint import (
    DEFAULT_ITERATIONS,
    check_inputs,
    paste_fill,
    search,
    search_region,
    usable_radius,
)
from inpaintkit.patchmatch.pyramid import unassigned_field

#: Standard deviation (px) of the Gaussian that splits structure from texture. 2 keeps both
#: evaluation sets within issue #25's 0.5 dB of the network's hole PSNR while reaching its
#: sharpness bars (3: sharper, but 0.33 dB lower than 2 on free256, below its bar; 1.5 short
#: of free256's sharpness bar; docs/model.md).
DEFAULT_SIGMA = 2.0
#: Weight of the detail in the patch descriptions (the hole's from the second EM step on). 0.25
#: measured 0.02 more hole TV / truth than 0.5 on free256 for 0.01 dB (0: +0.08 TV, -0.12 dB,
#: and visibly scratchier); stint 17, docs/model.md.
DEFAULT_COHERENCE = 0.25
#: Patch side (odd). 7 measured the same within 0.02 dB and TV 0.02, at 1.2 x the time.
DEFAULT_TRANSFER_PATCH_SIZE = 5


def low_pass(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of float ``(H, W, C)`` over the two image axes (edges reflected)."""
    return ndimage.gaussian_filter(pixels, (sigma, sigma, 0), mode="reflect")


def copy_detail(
    photo_detail: np.ndarray,
    hole: np.ndarray,
    structure: np.ndarray,
    radius: int,
    coherence: float,
    iterations: int,
    seed: int,
) -> np.ndarray:
    """Every hole pixel's detail a copy of a known pixel's, chosen on ``structure`` (and agreement).

    ``photo_detail``: float32 ``(H, W, C)``, the photo minus ``structure`` outside the hole
    (values inside are ignored); ``structure``: the low-pass of the guided first guess. Returns
    a new array whose hole pixels hold copies of known pixels' detail; known pixels are
    unchanged.

    The detail is copied, not the pixel: a mosaic of copied pixels has seams where neighbouring
    copies come from places of different brightness, and its high-pass turns every seam into an
    edge (an eyebrow pixel on a cheek becomes a dark speck). A pixel's detail about its own
    surroundings has no such step (docs/model.md, "Texture transfer").
    """
    detail = photo_detail.copy()
    detail[hole] = 0.0
    region = search_region(hole, radius)
    nnf = unassigned_field(hole.shape)
    dist = np.zeros(hole.shape, dtype=np.float32)
    weight = np.ones(hole.shape, dtype=np.float32)  # unused by the best-only vote
    for step in range(iterations):
        # Step 0: the hole has no detail yet, not flat detail; describing it would favour the
        # photo's flattest patches, the failure this module exists to avoid.
        description = np.ascontiguousarray(
            np.concatenate([structure, (coherence if step > 0 else 0.0) * detail], axis=2),
            dtype=np.float32,
        )
        search(description, region, nnf, dist, radius, seed, step)
        cpu.vote(photo_detail, hole, region.targets, nnf, dist, weight, radius, True, detail)
    return detail


def texture_transfer(
    image: np.ndarray,
    mask: np.ndarray,
    guide: np.ndarray,
    sigma: float = DEFAULT_SIGMA,
    coherence: float = DEFAULT_COHERENCE,
    patch_size: int = DEFAULT_TRANSFER_PATCH_SIZE,
    iterations: int = DEFAULT_ITERATIONS,
    seed: int = 0,
) -> np.ndarray:
    """Fill the hole of ``image`` with ``guide``'s low-pass plus detail copied from the photo.

    Args:
        image: uint8 ``(H, W, 3)`` RGB or ``(H, W)`` grayscale.
        mask: bool ``(H, W)``, ``True`` = hole.
        guide: the first guess (e.g. the network's fill), uint8 or float in [0, 255], of
            ``image``'s shape; only its hole pixels are read.
        sigma: standard deviation (px) of the Gaussian that splits structure from texture.
        coherence: weight of the detail beside the structure when patches are compared.
        patch_size: odd side of the square patches (shrinks when no known patch fits).
        iterations: EM steps (PatchMatch search, then copies).
        seed: the fill is a deterministic function of the inputs and ``seed``.

    Returns:
        uint8 array of ``image``'s shape; known pixels are bit-exact copies of the input.
    """
    check_inputs("texture_transfer", image, mask, patch_size, iterations, guide)
    if sigma <= 0 or coherence < 0:
        raise ValueError(
            f"texture_transfer: need sigma > 0 and coherence >= 0, got {sigma}, {coherence}"
        )
    hole = np.asarray(mask, dtype=bool)
    if not hole.any():
        return image.copy()
    known = image.reshape(image.shape[0], image.shape[1], -1).astype(np.float32)
    first_guess = np.where(
        hole[..., None], guide.reshape(known.shape).astype(np.float32), known
    ).astype(np.float32)
    structure = low_pass(first_guess, sigma)
    radius = usable_radius(hole, patch_size // 2)
    photo_detail = first_guess - structure
    filled = structure + copy_detail(
        photo_detail, hole, structure, radius, coherence, iterations, seed
    )
    return paste_fill(image, hole, filled)
