"""Poisson blending of a fill into its hole (Pérez et al. 2003), after the generator.

The generator predicts every pixel; a plain composite keeps the known pixels and pastes its
prediction into the hole. Where the prediction's colours next to the hole's edge are off (our
CPU-trained generator's hole ℓ1 one pixel from a known pixel is 1.7× diffusion's, though it
wins from six pixels in: docs/model.md, "Blending"), the seam shows. Poisson blending keeps
the prediction's gradients inside the hole and takes its boundary values from the known
pixels: the fill ``f`` solves, at every hole pixel ``p``,

    sum over the 4-neighbours q of p in the image of (f_p - f_q) = sum of (g_p - g_q)

with ``g`` the prediction and ``f_q`` = the known pixel wherever ``q`` is known. Written as
``f = g + h``, the correction ``h`` is harmonic in the hole and equals ``known - g`` on the
known pixels around it: the prediction's error along the seam, spread smoothly inwards. At the
image border the sum simply has fewer terms (no flux across it). Iizuka et al. 2017 (GLCIC)
finished every completion this way; the paper (DeepFill v1) does not, and ``blend="none"``
gives its output unchanged.

The linear system (one unknown per hole pixel and channel, 5-point Laplacian, symmetric
positive definite whenever the hole touches a known pixel) is solved in float64 on the CPU:
directly (SuperLU) up to :data:`DIRECT_LIMIT` unknowns, by conjugate gradients beyond.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import cg, splu

BLEND_CHOICES = ("poisson", "none")

#: How DeepFillMethod (so ``fill``, ``evaluate``, ``serve``) puts a prediction into the holes
#: unless told otherwise: +0.74 dB hole PSNR on free256 and +0.12 dB on rect256 for the stint 5
#: model (docs/model.md, "Blending"). ``"none"`` is the paper's plain composite.
DEFAULT_BLEND = "poisson"

#: Hole pixels above which one image's system is solved iteratively. Measured on one core of
#: the 2-core AMD EPYC (docs/model.md, "Blending"): SuperLU took 0.04 s for a 128² hole, 1.6 s
#: for 512², 4.3 s for 640² and 13.5 s for 1024² (1M unknowns, ~2 GB peak); conjugate
#: gradients took 17 s already for 640², so they are only the fallback past ~1M, where the
#: factor's memory would keep growing.
DIRECT_LIMIT = 1_100_000

# Neighbour offsets (dy, dx) of the 5-point Laplacian.
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def check_blend(blend: str) -> None:
    """Raise ValueError unless ``blend`` is one of :data:`BLEND_CHOICES`."""
    if blend not in BLEND_CHOICES:
        raise ValueError(f"blend must be one of {list(BLEND_CHOICES)}, got {blend!r}")


def poisson_blend(
    image: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Blend ``prediction`` into ``image``'s hole -> ``(N, C, H, W)`` in ``image``'s range and dtype.

    ``image``, ``prediction``: ``(N, C, H, W)`` floats (any range, e.g. [-1, 1]); only
    ``image``'s known pixels are read. ``mask``: ``(N, 1, H, W)``, > 0.5 = hole. Known pixels
    are returned bit-exact. A hole with no known pixel at all (the whole image) keeps the
    prediction: nothing fixes its level. The result is clamped to the range of
    ``image``'s known pixels and ``prediction`` together, so blending never invents colours
    beyond what either holds.
    """
    if image.ndim != 4 or prediction.shape != image.shape:
        raise ValueError(
            f"image and prediction must be equal (N, C, H, W) shapes, got "
            f"{tuple(image.shape)} and {tuple(prediction.shape)}"
        )
    if mask.shape != (image.shape[0], 1, *image.shape[2:]):
        raise ValueError(f"mask must be (N, 1, H, W) matching image, got {tuple(mask.shape)}")
    hole = (mask[:, 0] > 0.5).cpu().numpy()
    known = image.detach().cpu().double().numpy()
    guess = prediction.detach().cpu().double().numpy()
    out = np.where(hole[:, None], guess, known)
    for n in range(image.shape[0]):
        if hole[n].any() and not hole[n].all():
            out[n] = _blend_one(known[n], guess[n], hole[n])
    blended = torch.from_numpy(out).to(device=image.device, dtype=image.dtype)
    hole_t = mask > 0.5
    return torch.where(hole_t, blended, image)


def _blend_one(known: np.ndarray, guess: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """One image: ``known``, ``guess`` float64 ``(C, H, W)``, ``hole`` bool ``(H, W)``."""
    height, width = hole.shape
    ys, xs = np.nonzero(hole)
    count = len(ys)
    index = np.full((height, width), -1, dtype=np.int64)
    index[ys, xs] = np.arange(count)
    degree = np.zeros(count)
    # Right-hand side for the correction h = f - guess: (known - guess) summed over known
    # neighbours; hole-hole terms of the guidance cancel against guess's own.
    rhs = np.zeros((count, known.shape[0]))
    rows, cols = [np.arange(count)], [np.arange(count)]
    for dy, dx in _NEIGHBOURS:
        qy, qx = ys + dy, xs + dx
        inside = (qy >= 0) & (qy < height) & (qx >= 0) & (qx < width)
        p, qy, qx = np.nonzero(inside)[0], qy[inside], qx[inside]
        degree[p] += 1
        q = index[qy, qx]
        unknown = q >= 0
        rows.append(p[unknown])
        cols.append(q[unknown])
        seam = ~unknown
        rhs[p[seam]] += (known[:, qy[seam], qx[seam]] - guess[:, qy[seam], qx[seam]]).T
    values = np.concatenate([degree, -np.ones(sum(len(r) for r in rows[1:]))])
    matrix = sp.csc_matrix(
        (values, (np.concatenate(rows), np.concatenate(cols))), shape=(count, count)
    )
    correction = _solve(matrix, rhs)
    out = known.copy()
    out[:, ys, xs] = guess[:, ys, xs] + correction.T
    low = min(known[:, ~hole].min(), guess.min())
    high = max(known[:, ~hole].max(), guess.max())
    return np.clip(out, low, high)


def _solve(matrix: sp.csc_matrix, rhs: np.ndarray) -> np.ndarray:
    """``matrix @ x = rhs`` for each column of ``rhs``."""
    if matrix.shape[0] <= DIRECT_LIMIT:
        # Minimum degree on A^T + A suits the symmetric 5-point Laplacian (faster than COLAMD).
        return splu(matrix, permc_spec="MMD_AT_PLUS_A").solve(rhs)
    # Jacobi-preconditioned CG from h = 0 (the prediction as is). The scale of the seam's
    # errors sets the tolerance: 1e-6 of it is far below one 8-bit step.
    inverse_degree = sp.diags(1.0 / matrix.diagonal())
    columns = []
    for column in rhs.T:
        solution, _ = cg(
            matrix,
            column,
            rtol=1e-6,
            maxiter=20 * int(np.sqrt(matrix.shape[0])) + 100,
            M=inverse_degree,
        )
        columns.append(solution)
    return np.stack(columns, axis=1)
