"""PatchMatch inpainting: coarse-to-fine patch voting (Wexler et al. 2007) on a PatchMatch
nearest-neighbour field (Barnes et al. 2009) — the paper's baseline (Table 1, first row).

At each pyramid level, from coarsest to finest, an EM loop alternates
  * E-step: PatchMatch finds, for every patch overlapping the hole, the most similar patch
    lying wholly in the known region (so nothing is ever copied out of the hole);
  * M-step: every hole pixel becomes the similarity-weighted mean of what the patches
    covering it propose (weight ``exp(-d / 2 sigma^2)``, ``sigma^2`` the 75th percentile of
    the distances, as Wexler et al. sec. 3.1 suggest).
The coarsest level starts from an onion-peel fill; each finer level starts from the upsampled
field and image of the level below.

Two interchangeable backends run a level: numba kernels on the CPU (:mod:`.cpu`) and a batched
torch formulation (:mod:`.batched`) for CUDA, which also runs on the CPU.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numba
import numpy as np
import torch

from inpaintkit.patchmatch import batched, cpu
from inpaintkit.patchmatch.pyramid import (
    build_pyramid,
    dilate,
    downsample,
    onion_peel_fill,
    unassigned_field,
    upsample_image,
    upsample_nnf,
    valid_centres,
)

#: Default side of the square patches (odd); chosen on both eval sets by
#: benchmarks/patchmatch_bins.py (docs/patchmatch.md, "Free-form holes"): once thin holes stopped
#: swallowing the coarse levels, the coarse levels carry the structure and small patches at the
#: fine levels fit between strokes. 9 was the choice of the older pyramid, on rect256 only.
DEFAULT_PATCH_SIZE = 5
#: Default EM steps (PatchMatch + vote) per pyramid level.
DEFAULT_ITERATIONS = 4
#: PatchMatch passes per EM step; the field carries over between steps, so few are needed.
SEARCH_PASSES = 2
#: Levels with fewer target patches run the numba kernels on one thread: below this, waking and
#: joining threads for every pass costs more than it saves (measured on a loaded 2-core machine,
#: where 2 threads made a 256x256 fill 2-3x slower). Results do not depend on the thread count.
PARALLEL_MIN_TARGETS = 40_000
#: An EM level ends early once a search improves no match and the previous vote moved no
#: pixel by this much (grey levels, below uint8 rounding): more steps would change nothing.
CONVERGED = 0.5

Vote = Literal["weighted", "best"]


def _level_seed(seed: int, *parts: int) -> int:
    """A 31-bit seed for one kernel call, derived deterministically from the user's seed."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0] >> 1)


def similarity_weights(dist: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Wexler's vote weights ``exp(-d / (2 sigma^2))``, ``sigma^2`` = 75th percentile of ``d``.

    The floor keeps every weight positive, so a pixel whose covering patches all match
    badly still gets a (plain) mean instead of 0/0.
    """
    sigma2 = float(np.quantile(dist[targets], 0.75)) if targets.any() else 0.0
    if sigma2 <= 0.0:
        return np.ones_like(dist)
    return np.maximum(np.exp(-dist / (2.0 * sigma2)), 1e-30).astype(np.float32)


def bounding_box(region: np.ndarray) -> tuple[int, int, int, int]:
    """Half-open ``(y0, y1, x0, x1)`` around the True pixels of a non-empty bool ``(H, W)`` mask."""
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class SearchRegion(NamedTuple):
    """Where one level's PatchMatch works: the patches to match and the patches to copy from.

    ``targets``: centres of the patches that overlap the hole; ``valid`` (and its coordinates
    ``valid_ys``, ``valid_xs``): centres of patches wholly in the known region; ``box``: the
    half-open ``(y0, y1, x0, x1)`` around ``targets``, to which per-step work is confined.
    """

    targets: np.ndarray
    valid: np.ndarray
    valid_ys: np.ndarray
    valid_xs: np.ndarray
    box: tuple[int, int, int, int]


def search_region(hole: np.ndarray, radius: int) -> SearchRegion:
    """The :class:`SearchRegion` of bool ``(H, W)`` ``hole`` for patches of ``radius``."""
    targets = dilate(hole, radius)
    valid = valid_centres(hole, radius)
    valid_ys, valid_xs = (v.astype(np.int32) for v in np.nonzero(valid))
    return SearchRegion(targets, valid, valid_ys, valid_xs, bounding_box(targets))


def search(image, region: SearchRegion, nnf, dist, radius: int, seed: int, step: int) -> int:
    """One EM step's PatchMatch search of ``image`` against itself, ``nnf`` and ``dist`` in place.

    Returns how many matches improved.
    """
    return cpu.patchmatch(
        image,
        image,
        region.targets,
        region.valid,
        region.valid_ys,
        region.valid_xs,
        nnf,
        dist,
        radius,
        SEARCH_PASSES,
        _level_seed(seed, step),
        region.box,
    )


def _em_level_numba(image, hole, nnf, radius, iterations, seed, best_last):
    # Per-step work is confined to the box around the patches that overlap the hole; source
    # patches still come from the whole known region (``valid`` spans the image).
    region = search_region(hole, radius)
    dist = np.zeros(hole.shape, dtype=np.float32)
    weight = np.ones(hole.shape, dtype=np.float32)
    image = image.copy()
    threads = numba.get_num_threads()
    numba.set_num_threads(threads if region.targets.sum() >= PARALLEL_MIN_TARGETS else 1)
    try:
        return _em_steps(
            image, hole, nnf, region, dist, weight, radius, iterations, seed, best_last
        )
    finally:
        numba.set_num_threads(threads)


def _em_steps(image, hole, nnf, region, dist, weight, radius, iterations, seed, best_last):
    targets, box = region.targets, region.box
    inside = np.s_[box[0] : box[1], box[2] : box[3]]
    moved = np.inf
    for step in range(iterations):
        improved = search(image, region, nnf, dist, radius, seed, step)
        # Converged (same field, image moved by less than uint8 rounding): this vote is the last.
        last = step == iterations - 1 or (improved == 0 and moved < CONVERGED)
        weight[inside] = similarity_weights(dist[inside], targets[inside])
        before = None if last else image[inside].copy()
        # In place: votes read only source pixels, which all lie outside the hole.
        cpu.vote(image, hole, targets, nnf, dist, weight, radius, best_last and last, image)
        if last:
            break
        moved = float(np.abs(image[inside] - before).max())
    return image, nnf


def check_inputs(
    caller: str,
    image: np.ndarray,
    mask: np.ndarray,
    patch_size: int,
    iterations: int,
    guide: np.ndarray | None = None,
) -> None:
    """The checks every patch-copying fill makes of its arguments, errors named by ``caller``."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(
            f"{caller}: image must be a uint8 numpy array, got "
            f"{getattr(image, 'dtype', type(image).__name__)}"
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ValueError(f"{caller}: image must be (H, W) or (H, W, 3), got {image.shape}")
    if not isinstance(mask, np.ndarray) or mask.shape != image.shape[:2]:
        raise ValueError(
            f"{caller}: mask must be a (H, W) = {image.shape[:2]} array, got "
            f"{getattr(mask, 'shape', type(mask).__name__)}"
        )
    if not isinstance(patch_size, int) or patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"{caller}: patch_size must be a positive odd integer, got {patch_size!r}")
    if iterations < 1:
        raise ValueError(f"{caller}: iterations must be >= 1, got {iterations}")
    if guide is not None and guide.shape != image.shape:
        raise ValueError(
            f"{caller}: guide must have the image's shape {image.shape}, got {guide.shape}"
        )
    if mask.size and np.asarray(mask, dtype=bool).all():
        raise ValueError(
            f"{caller}: the mask covers the whole image; there are no known pixels to copy from"
        )


def paste_fill(image: np.ndarray, hole: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """``filled`` (float ``(H, W, C)`` in [0, 255]) rounded into the ``hole`` of uint8 ``image``
    -> ``image``'s shape; known pixels are bit-exact copies of the input."""
    out = np.clip(np.rint(filled), 0, 255).astype(np.uint8).reshape(image.shape)
    return np.where(hole.reshape(hole.shape + (1,) * (image.ndim - 2)), out, image)


def guide_levels(guide: np.ndarray, count: int) -> list[np.ndarray]:
    """``guide`` as float32 ``(h, w, C)`` at each of ``count`` pyramid levels, finest first,
    halved by the same 2x2 means as the image (every pixel counts: the guide has no hole)."""
    level = guide.reshape(guide.shape[0], guide.shape[1], -1).astype(np.float32)
    levels = [level]
    while len(levels) < count:
        level = downsample(level, np.zeros(level.shape[:2], dtype=bool))[0]
        levels.append(level)
    return levels


def usable_radius(hole: np.ndarray, radius: int) -> int:
    """Largest patch radius <= ``radius`` for which a valid source patch exists.

    The fallback for tiny images and huge holes: patches shrink until one fits in the known
    region; radius 0 (single pixels) always works when any pixel is known.
    """
    while radius > 0 and not valid_centres(hole, radius).any():
        radius -= 1
    return radius


def patchmatch_inpaint(
    image: np.ndarray,
    mask: np.ndarray,
    patch_size: int = DEFAULT_PATCH_SIZE,
    seed: int = 0,
    device: str | torch.device = "cpu",
    iterations: int = DEFAULT_ITERATIONS,
    levels: int | None = None,
    vote: Vote = "weighted",
    backend: Literal["auto", "numba", "torch"] = "auto",
    guide: np.ndarray | None = None,
) -> np.ndarray:
    """Fill the hole of ``image`` with patches copied from its known region.

    Args:
        image: uint8 ``(H, W, 3)`` RGB or ``(H, W)`` grayscale (``(H, W, 1)`` also accepted).
        mask: bool ``(H, W)``, ``True = hole``; any number of holes, touching the border or not.
        patch_size: odd side of the square patches. Shrinks automatically (to 1 at worst) when
            the known region holds no whole patch of this size.
        seed: the fill is a deterministic function of the inputs and ``seed`` (per backend and
            device).
        device: ``"cpu"`` runs the numba kernels; a CUDA device runs the batched torch path.
        iterations: EM steps (PatchMatch search + vote) per pyramid level.
        levels: at most this many pyramid levels (``None``: as many as the image allows).
        vote: ``"weighted"`` (similarity-weighted mean, smoother, the default) or ``"best"``
            at the finest level (each pixel copies the best-matching covering patch's pixel,
            so every filled value occurs among the known pixels).
        backend: ``"auto"`` (numba on CPU, torch elsewhere) or force one; ``"torch"`` on CPU is
            what the tests use to cover the CUDA formulation.
        guide: an optional first guess for the hole, uint8 or float in ``[0, 255]`` of
            ``image``'s shape (e.g. a network's fill). The coarsest level then starts from it,
            2x2-averaged down to that level, instead of from the onion-peel fill, so the EM
            steps copy known texture onto the guide's structure; ``levels`` says how coarse
            that start is (docs/patchmatch.md, "Guided by a network").

    Returns:
        uint8 array of ``image``'s shape; known pixels are bit-exact copies of the input.

    Raises:
        ValueError: the mask covers every pixel (nothing to copy from), or bad arguments.
    """
    check_inputs("patchmatch_inpaint", image, mask, patch_size, iterations, guide)
    if levels is not None and levels < 1:
        raise ValueError(f"patchmatch_inpaint: levels must be >= 1 or None, got {levels}")
    if vote not in ("weighted", "best"):
        raise ValueError(f"patchmatch_inpaint: vote must be 'weighted' or 'best', got {vote!r}")
    hole = np.asarray(mask, dtype=bool)
    if not hole.any():
        return image.copy()
    device = torch.device(device)
    if backend == "auto":
        backend = "numba" if device.type == "cpu" else "torch"
    if backend not in ("numba", "torch"):
        raise ValueError(
            f"patchmatch_inpaint: backend must be 'auto', 'numba' or 'torch', got {backend!r}"
        )

    pixels = image.reshape(image.shape[0], image.shape[1], -1).astype(np.float32)
    radius = usable_radius(hole, patch_size // 2)
    pyramid = build_pyramid(pixels, hole, radius, levels)
    guide_pyramid = None if guide is None else guide_levels(guide, len(pyramid))
    filled, nnf = None, None
    for level in range(len(pyramid) - 1, -1, -1):
        level_image, level_hole = pyramid[level]
        if not level_hole.any():
            # Every hole of this level vanished in the downsampling (thin strokes at a coarse
            # scale): nothing to start or search; the finer level starts from a fresh field.
            filled, nnf = level_image, unassigned_field(level_hole.shape)
            continue
        if filled is None:
            start = (
                onion_peel_fill(level_image, level_hole)
                if guide_pyramid is None
                else np.where(level_hole[..., None], guide_pyramid[level], level_image)
            )
            nnf = unassigned_field(level_hole.shape)
        else:
            start = np.where(
                level_hole[..., None], upsample_image(filled, level_hole.shape), level_image
            )
            nnf = upsample_nnf(nnf, level_hole.shape)
        best_last = vote == "best" and level == 0
        level_seed = _level_seed(seed, level)
        if backend == "numba":
            filled, nnf = _em_level_numba(
                start, level_hole, nnf, radius, iterations, level_seed, best_last
            )
        else:
            filled, nnf = batched.em_level(
                start,
                level_hole,
                nnf,
                radius,
                iterations,
                SEARCH_PASSES,
                level_seed,
                best_last,
                device,
            )
    return paste_fill(image, hole, filled)


def nearest_neighbor_field(
    target: np.ndarray,
    source: np.ndarray,
    patch_size: int = DEFAULT_PATCH_SIZE,
    iterations: int = 5,
    seed: int = 0,
    source_valid: np.ndarray | None = None,
    initial: np.ndarray | None = None,
    backend: Literal["numba", "torch"] = "numba",
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """PatchMatch nearest-neighbour field from every patch of ``target`` to ``source``.

    Args:
        target: ``(H, W)`` or ``(H, W, C)`` array (any real dtype; compared as float32).
        source: ``(Hs, Ws)`` or ``(Hs, Ws, C)`` with the same channel count.
        patch_size: odd side of the square patches. Target patches are centred on every pixel
            and clipped at the border; source patches lie wholly inside ``source``.
        iterations: propagation + random-search passes.
        source_valid: optional bool ``(Hs, Ws)``; only centres marked True may be matched
            (further restricted to whole-patch centres).
        initial: optional int ``(H, W, 2)`` starting field (invalid entries are re-drawn).
        backend, device: ``"numba"`` (CPU) or ``"torch"`` on ``device``.

    Returns:
        ``nnf`` int32 ``(H, W, 2)``: the ``(y, x)`` source centre matched to each target pixel;
        ``dist`` float32 ``(H, W)``: mean over the target patch's in-image pixels of the
        squared difference summed over channels.
    """
    target = np.asarray(target, dtype=np.float32)
    source = np.asarray(source, dtype=np.float32)
    target = target.reshape(target.shape[0], target.shape[1], -1)
    source = source.reshape(source.shape[0], source.shape[1], -1)
    if target.shape[2] != source.shape[2]:
        raise ValueError(
            f"nearest_neighbor_field: target has {target.shape[2]} channels, "
            f"source {source.shape[2]}"
        )
    if not isinstance(patch_size, int) or patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(
            f"nearest_neighbor_field: patch_size must be a positive odd integer, got {patch_size!r}"
        )
    radius = patch_size // 2
    valid = valid_centres(np.zeros(source.shape[:2], dtype=bool), radius)
    if source_valid is not None:
        valid &= np.asarray(source_valid, dtype=bool)
    if not valid.any():
        raise ValueError(
            f"nearest_neighbor_field: no valid {patch_size}x{patch_size} source patch "
            f"in a {source.shape[0]}x{source.shape[1]} source"
        )
    targets = np.ones(target.shape[:2], dtype=bool)
    nnf = (
        unassigned_field(target.shape[:2]) if initial is None else np.array(initial, dtype=np.int32)
    )
    if backend == "numba":
        dist = np.zeros(target.shape[:2], dtype=np.float32)
        valid_ys, valid_xs = (v.astype(np.int32) for v in np.nonzero(valid))
        cpu.patchmatch(
            target,
            source,
            targets,
            valid,
            valid_ys,
            valid_xs,
            nnf,
            dist,
            radius,
            iterations,
            seed,
            (0, target.shape[0], 0, target.shape[1]),
        )
        return nnf, dist
    return batched.nearest_neighbor_field(
        target, source, targets, valid, nnf, radius, iterations, seed, torch.device(device)
    )
