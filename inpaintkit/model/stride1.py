"""The stride-1 fast paths of contextual attention: neighbouring patches share pixels.

With background stride 1 (the generator's setting) every background position has a patch,
and the patch products of the scores and of the reconstruction overlap: sums along diagonals
of a (position × position) volume replace patch-sized products, ``patch_size²`` (9×) fewer
multiply-adds for the scores (:func:`stride1_patch_products`) and 4× fewer for the
reconstruction (:func:`stride1_paste`). With a background stride the volume would be as large
as without it, defeating that memory option, so :mod:`inpaintkit.model.attention` unfolds whole
patches instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inpaintkit.model.hole_window import Window
from inpaintkit.model.layers import pad_exactly
from inpaintkit.model.shifted_sums import diagonal_shift_sum


def stride1_patch_products(
    fg_small: torch.Tensor, bg_small: torch.Tensor, patch_size: int, window: Window
) -> torch.Tensor:
    """The patch products of :func:`~inpaintkit.model.attention.cosine_scores` at background stride 1.

    ``fg_small``, ``bg_small (N, C, h, w)`` on the matching grid. Returns ``(N, |window|, h·w)``:
    ``<foreground patch p, background patch q>`` (zero-padded ``patch_size²`` patches) for the
    window's positions ``p`` (row-major inside it) and every position ``q``, in at least fp32.
    A patch product is the sum of ``patch_size²`` pixel products along a diagonal of the
    pixel-correlation volume, so the volume is computed once, for the window and the ring its
    patches reach, and summed along diagonals.
    """
    n, _, h, w = fg_small.shape
    pad = patch_size // 2
    # The window's foreground with the ring its patches reach (zeros beyond the image,
    # as the padding of the full-grid computation).
    top, left = max(window.top - pad, 0), max(window.left - pad, 0)
    ring = fg_small[:, :, top : min(window.bottom + pad, h), left : min(window.right + pad, w)]
    ring_h, ring_w = ring.shape[-2:]
    pixels = torch.bmm(ring.flatten(2).transpose(1, 2), bg_small.flatten(2))
    pixels = pixels.to(torch.promote_types(pixels.dtype, torch.float32))
    shifts = range(-pad, pad + 1)
    volume = pixels.view(n, ring_h, ring_w, h, w)
    volume = diagonal_shift_sum(volume, (2, 4), shifts, (ring_w, w))  # along x
    volume = diagonal_shift_sum(volume, (1, 3), shifts, (ring_h, h))  # along y
    # The ring's own sums miss their outer neighbours; only the window's are kept.
    (win_h, win_w), y0, x0 = window.size, window.top - top, window.left - left
    volume = volume[:, y0 : y0 + win_h, x0 : x0 + win_w]
    return volume.reshape(n, win_h * win_w, h * w)


def stride1_paste(
    attention: torch.Tensor,
    background: torch.Tensor,
    fg_size: tuple[int, int],
    bg_size: tuple[int, int],
    rate: int,
    lead: int,
    axis_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The transposed convolution of :func:`~inpaintkit.model.attention.reconstruct` at background stride 1.

    ``attention (N, hf·wf, h·w)``: ``fg_size = (hf, wf)`` foreground blocks (the whole
    grid or a window of it) against the background's ``bg_size = (h, w)`` blocks (the
    matching grid of ``background (N, C, H, W)``, ``h = ⌈H / rate⌉``).
    Canvas pixel ``r·Y + u`` (``0 ≤ u < r``) is covered by foreground blocks ``Y`` and
    ``Y − 1`` only, and receives from patch ``Q`` of block ``P = Y − e`` the padded
    background pixel ``r·(Q + e) + u``. Summing the attention along the diagonal first,
    ``A[Y, T] = Σ_{e ∈ {0, 1}²} attention[Y − e, T − e]``, leaves one matrix product per
    phase ``u`` with the background's space-to-depth rearrangement: ``r²·C`` instead of
    ``4r²·C`` multiply-adds per (position, patch) pair. With ``axis_weights (2r,)``
    (:func:`~inpaintkit.model.attention.paste_window`) the terms of that sum are weighted
    by the patch pixel's weight ``w[r·e + u]`` along each axis, which depends on the phase:
    ``r²`` summed matrices, each used by its own phase, for the same multiply-adds. Returns
    the ``(N, C, r·(hf + 1), r·(wf + 1))`` canvas, starting ``lead`` pixels before the
    foreground blocks' first pixel.
    """
    n, c, height, width = background.shape
    (hf, wf), (h, w) = fg_size, bg_size
    volume = attention.view(n, hf, wf, h, w)
    pad_bottom = rate * (h + 1) - lead - height
    pad_right = rate * (w + 1) - lead - width
    padded = pad_exactly(background, (lead, pad_right, lead, pad_bottom), "replicate")
    phases = F.pixel_unshuffle(padded, rate).flatten(2)  # (N, C·r², (h+1)(w+1))
    shifts, sizes_x, sizes_y = range(-1, 1), (wf + 1, w + 1), (hf + 1, h + 1)
    if axis_weights is None:
        volume = diagonal_shift_sum(volume, (2, 4), shifts, sizes_x)
        volume = diagonal_shift_sum(volume, (1, 3), shifts, sizes_y)
        summed = volume.reshape(n, (hf + 1) * (wf + 1), (h + 1) * (w + 1))
        columns = torch.bmm(phases, summed.transpose(1, 2))  # (N, C·r², (hf+1)(wf+1))
    else:
        phases = phases.view(n, c, rate * rate, -1)
        columns = phases.new_empty(n, c, rate * rate, (hf + 1) * (wf + 1))
        # Shift d = −e reads block Y − e, whose patch pixel at phase u is its pixel r·e + u.
        weights = [[float(axis_weights[rate * -d + u]) for d in shifts] for u in range(rate)]
        for ux in range(rate):
            along_x = diagonal_shift_sum(volume, (2, 4), shifts, sizes_x, weights[ux])
            for uy in range(rate):
                summed = diagonal_shift_sum(along_x, (1, 3), shifts, sizes_y, weights[uy])
                summed = summed.reshape(n, (hf + 1) * (wf + 1), (h + 1) * (w + 1))
                phase = uy * rate + ux  # pixel_unshuffle's channel order
                columns[:, :, phase] = torch.bmm(phases[:, :, phase], summed.transpose(1, 2))
    return F.pixel_shuffle(columns.view(n, c * rate * rate, hf + 1, wf + 1), rate)
