"""Image pyramid and patch bookkeeping for PatchMatch inpainting (Wexler et al. 2007, sec. 3.2).

Arrays here are numpy: images ``float32 (H, W, C)`` with values in ``[0, 255]``, holes
``bool (H, W)`` with ``True = hole``, nearest-neighbour fields ``int32 (H, W, 2)`` holding the
``(y, x)`` centre of the matched source patch (``-1`` where none is assigned yet).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dilate(hole: np.ndarray, radius: int) -> np.ndarray:
    """``hole`` grown by ``radius`` pixels in the Chebyshev (square-window) sense."""
    if radius <= 0:
        return hole.copy()
    return ndimage.maximum_filter(hole, size=2 * radius + 1, mode="constant", cval=False)


def valid_centres(hole: np.ndarray, radius: int) -> np.ndarray:
    """bool ``(H, W)``: centres whose ``(2r+1)^2`` window lies inside the image and misses the hole.

    Only these may serve as source patches, so nothing is ever copied out of the hole.
    """
    valid = ~dilate(hole, radius)
    if radius > 0:
        valid[:radius] = False
        valid[-radius:] = False
        valid[:, :radius] = False
        valid[:, -radius:] = False
    return valid


def downsample(image: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Halve ``(H, W, C)`` / ``(H, W)`` to ``(ceil(H/2), ceil(W/2))`` by 2x2 blocks.

    A coarse pixel is a hole only when all four children are; otherwise its value is the
    mean of its known children, so coarse known pixels (and hence coarse source patches) are
    still built only from known pixels. Holes therefore shrink by about a pixel per level and
    strokes thinner than the level's scale vanish from it, as in pypatchmatch's pyramid. The
    opposite rule (a hole when any child is) grows every hole by a pixel per level: free-form
    masks of thin strokes then covered nearly all of the coarse levels, which left them almost
    no source patches and cost 1.4 dB of hole PSNR on free256 (docs/patchmatch.md). Odd sides
    repeat the last row/column.
    """
    height, width = hole.shape
    pad = ((0, height % 2), (0, width % 2))
    known = np.pad(~hole, pad, mode="edge").astype(np.float32)
    values = np.pad(image, pad + ((0, 0),), mode="edge") * known[..., None]
    h2, w2 = known.shape[0] // 2, known.shape[1] // 2
    count = known.reshape(h2, 2, w2, 2).sum(axis=(1, 3))
    total = values.reshape(h2, 2, w2, 2, -1).sum(axis=(1, 3))
    coarse = np.where(count[..., None] > 0, total / np.maximum(count, 1)[..., None], 0.0)
    return coarse.astype(np.float32), count == 0


def upsample_image(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of ``(h, w, C)`` to ``shape = (H, W)`` with ``h = ceil(H/2)``."""
    rows = np.arange(shape[0]) // 2
    cols = np.arange(shape[1]) // 2
    return coarse[rows[:, None], cols[None, :]]


def unassigned_field(shape: tuple[int, int]) -> np.ndarray:
    """An ``int32 (h, w, 2)`` nearest-neighbour field with no match yet (``-1`` everywhere);
    the search kernels give every such pixel a random valid match."""
    return np.full((*shape, 2), -1, dtype=np.int32)


def upsample_nnf(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Upsample an ``int32 (h, w, 2)`` field to ``shape``: each fine pixel inherits its parent's
    match, doubled and shifted by its position inside the 2x2 block (unassigned stays ``-1``).

    Matches that land outside the fine image or on an invalid centre are repaired by the
    search kernels, which replace any invalid match with a random valid one.
    """
    rows = np.arange(shape[0])
    cols = np.arange(shape[1])
    parent = coarse[(rows // 2)[:, None], (cols // 2)[None, :]]
    fine = 2 * parent
    fine[..., 0] += (rows % 2)[:, None]
    fine[..., 1] += (cols % 2)[None, :]
    fine[parent[..., 0] < 0] = -1
    fine[..., 0] = np.where(fine[..., 0] >= shape[0], -1, fine[..., 0])
    fine[..., 1] = np.where(fine[..., 1] >= shape[1], -1, fine[..., 1])
    fine[(fine < 0).any(axis=-1)] = -1
    return fine.astype(np.int32)


def onion_peel_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill the hole ring by ring from its border with the mean of already-filled 8-neighbours.

    A smooth first guess for the coarsest pyramid level, where PatchMatch needs some value in
    the hole to compare patches against. Requires at least one known pixel.
    """
    filled = image.copy()
    done = ~hole
    kernel = np.ones((3, 3), dtype=np.float32)
    while not done.all():
        weight = ndimage.convolve(done.astype(np.float32), kernel, mode="constant")
        ring = ~done & (weight > 0)
        for c in range(filled.shape[2]):
            total = ndimage.convolve(filled[..., c] * done, kernel, mode="constant")
            filled[..., c][ring] = total[ring] / weight[ring]
        done = done | ring
    return filled


def build_pyramid(
    image: np.ndarray, hole: np.ndarray, radius: int, levels: int | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(image, hole), ...]`` from full resolution down to the coarsest level.

    Automatic depth (``levels=None``) halves while the coarse image keeps a short side of at
    least ``4 * radius + 2`` pixels (two patch widths) and still has a valid source patch; an
    explicit ``levels`` is an upper bound under the same conditions.
    """
    pyramid = [(image, hole)]
    limit = levels if levels is not None else 64
    while len(pyramid) < limit:
        coarse_image, coarse_hole = downsample(*pyramid[-1])
        if min(coarse_hole.shape) < 4 * radius + 2 or coarse_hole.all():
            break
        if not valid_centres(coarse_hole, radius).any():
            break
        pyramid.append((coarse_image, coarse_hole))
    return pyramid
