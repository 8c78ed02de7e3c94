"""Contextual attention (§4.1 of Yu et al., CVPR 2018): the layer and its core maths.

Batched, following the authors' released code. For every foreground position (by default:
every position that rebuilds the hole) the layer scores all *background* patches that contain
no hole pixel, turns the scores into attention weights with a scaled softmax, and rebuilds
the foreground from the raw background patches weighted by that attention::

    foreground, background (N, C, H, W) ──nearest ÷rate──► (N, C, h, w)      h = ceil(H / rate)
    scores[n, p, q]  = <3×3 foreground patch p, 3×3 background patch q / ‖·‖>   (a convolution)
    scores           = propagate(scores)                 (left-right, then top-down; §4.1)
    attention[n, p]  = softmax_q(λ · scores · valid) · valid                      (λ = softmax_scale)
    out[n]           = Σ_q attention[n, p, q] · raw 2rate×2rate patch q, overlaps averaged
                       (paste="box", the paper's), or tent-weighted (paste="tent")

Here: :class:`ContextualAttention` and the steps of its forward, :func:`cosine_scores`,
:func:`propagate`, :func:`valid_background`, :func:`reconstruct` and
:func:`attention_offsets`. Beside it in ``model/``, one idea each:
:mod:`~inpaintkit.model.hole_window` (``foreground="hole"``: the window of the grid that is
computed), :mod:`~inpaintkit.model.stride1` (the fast paths at background stride 1) and
:mod:`~inpaintkit.model.shifted_sums` (the shifted-slice sums under both). Why each choice
was made, where it departs from the released code and what it costs: docs/model.md,
"Contextual attention".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inpaintkit.model.hole_window import Window, hole_window, propagate_window, score_window
from inpaintkit.model.layers import pad_exactly
from inpaintkit.model.shifted_sums import (
    SliceTerm,
    diagonal_shift_sum,
    grid_shift_slices,
    slice_sum,
)
from inpaintkit.model.stride1 import stride1_paste, stride1_patch_products
from inpaintkit.tensors import composite

# Released code: ``tf.maximum(norm, 1e-4)`` keeps all-zero background patches finite.
_NORM_EPS = 1e-4

#: ``ContextualAttention(foreground=...)``: match the hole's window only, or every position.
FOREGROUND_MODES = ("hole", "all")

#: ``ContextualAttention(paste=...)``: how the overlapping ``2r × 2r`` patches are averaged.
PASTE_WINDOWS = ("box", "tent")


def paste_window(rate: int, paste: str) -> torch.Tensor | None:
    """Per-axis weights ``(2r,)`` fp64 of a pasted patch's pixels, or ``None`` for ``"box"``.

    ``"box"`` (the paper's and the released code's transposed convolution) weighs the two
    patches covering a pixel equally along each axis, so a pixel is half its own block's patch
    and half a neighbour's, and where neighbouring blocks copy unrelated patches the pixels
    step between two mixtures at every block's centre. ``"tent"`` weighs a patch pixel by its
    closeness to the centre of the patch's own block, ``1 − |k − centre| / r``: each pixel is
    mostly its own block's patch, and the weights of the two covering patches still sum to 1
    (a linear ramp between block centres, so a paste of coherent neighbouring patches is
    unchanged, and unrelated ones blend without steps). Built to test whether those steps are
    the ~8 px lattice of the adversarial phase; measured, they are not (docs/model.md, "The
    faint ~8 px grid").
    """
    if paste not in PASTE_WINDOWS:
        raise ValueError(f"paste must be one of {PASTE_WINDOWS}, got {paste!r}")
    if paste == "box":
        return None
    centre = rate // 2 + (rate - 1) / 2  # the centre r × r block starts at lead = r // 2
    offsets = torch.arange(2 * rate, dtype=torch.float64)
    return 1 - (offsets - centre).abs() / rate


@dataclass
class AttentionMap:
    """What :class:`ContextualAttention` attends, as :meth:`~ContextualAttention.attention_map`
    returns it.

    ``weights (N, Lf, Lb)`` (fp32 or wider, each row sums to 1 over the valid columns, 0 on the
    others): one row per foreground block of ``window`` in row-major order, one column per
    background patch on the ``(ceil(h / stride), background_width)`` stride grid.
    ``valid (N, 1, Lb)``: 1 for background patches without a hole pixel. ``hole (N, 1, H, W)``:
    the mask at feature size, in {0, 1}. ``grid``: the ``(h, w)`` matching grid (features
    downscaled by ``rate``); ``window``: the block of that grid whose rows were computed.
    """

    weights: torch.Tensor
    valid: torch.Tensor
    hole: torch.Tensor
    window: Window
    grid: tuple[int, int]
    background_width: int


class ContextualAttention(nn.Module):
    """Contextual attention layer (§4.1); parameter-free.

    Args:
        patch_size: side of the matching patches on the downscaled grid (odd; paper: 3).
        propagate_size: attention propagation kernel ``k`` (odd; paper: 3).
        softmax_scale: λ, the softmax temperature's inverse (paper: 10).
        rate: foreground/background downscale before matching (1 = match at full resolution).
        stride: background patch stride on the downscaled grid (1 = every position).
        fuse: whether to apply attention propagation.
        foreground: ``"hole"`` (default) matches only the foreground positions that rebuild the
            hole (§4.1's foreground patches: a window around the batch's hole) and returns the
            input ``foreground`` outside the hole; ``"all"`` matches every position and returns
            the reconstruction everywhere, as the released code.
        paste: ``"box"`` (default; the paper's) averages the overlapping pasted patches
            equally; ``"tent"`` weighs each patch's pixels by their closeness to its centre
            (:func:`paste_window`): no steps at the blocks' centres.
    """

    def __init__(
        self,
        patch_size: int = 3,
        propagate_size: int = 3,
        softmax_scale: float = 10.0,
        rate: int = 2,
        stride: int = 1,
        fuse: bool = True,
        foreground: str = "hole",
        paste: str = "box",
    ) -> None:
        super().__init__()
        if foreground not in FOREGROUND_MODES:
            raise ValueError(f"foreground must be one of {FOREGROUND_MODES}, got {foreground!r}")
        if paste not in PASTE_WINDOWS:
            raise ValueError(f"paste must be one of {PASTE_WINDOWS}, got {paste!r}")
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be a positive odd integer, got {patch_size}")
        if propagate_size < 1 or propagate_size % 2 == 0:
            raise ValueError(f"propagate_size must be a positive odd integer, got {propagate_size}")
        if rate < 1 or stride < 1:
            raise ValueError(f"rate and stride must be >= 1, got rate={rate}, stride={stride}")
        self.patch_size = patch_size
        self.propagate_size = propagate_size
        self.softmax_scale = float(softmax_scale)
        self.rate = rate
        self.stride = stride
        self.fuse = fuse
        self.foreground = foreground
        self.paste = paste

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, propagate_size={self.propagate_size}, "
            f"softmax_scale={self.softmax_scale}, rate={self.rate}, stride={self.stride}, "
            f"fuse={self.fuse}, foreground={self.foreground!r}, paste={self.paste!r}"
        )

    def forward(
        self,
        foreground: torch.Tensor,
        background: torch.Tensor,
        mask: torch.Tensor,
        return_offsets: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Rebuild ``foreground`` from patches of ``background``.

        Args:
            foreground: ``(N, C, H, W)`` features (any real values; fp32, fp64 or bf16/fp16).
            background: ``(N, C, H, W)`` features to borrow from (the generator passes the
                same tensor twice).
            mask: ``(N, 1, h, w)`` at any resolution, ``1 = hole``; resized to ``(H, W)`` by
                nearest neighbour. ``(1, 1, h, w)`` is broadcast over the batch.
            return_offsets: also return the attention offsets.

        Returns:
            ``out (N, C, H, W)`` in ``background``'s dtype: with ``foreground="all"`` the
            reconstruction everywhere; with ``"hole"`` the reconstruction at hole positions
            (the mask resized to ``(H, W)``) and ``foreground`` elsewhere. With
            ``return_offsets`` also ``offsets (N, 2, H, W)`` int64: ``(dy, dx)`` in feature
            pixels from each hole position to the block at the centre of its most-attended
            background patch (a multiple of ``rate``); 0 at known positions and where nothing
            is attended.
        """
        _check_inputs(foreground, background, mask)
        height, width = foreground.shape[-2:]
        attended = self.attention_map(foreground, background, mask)
        if attended is None:  # no hole anywhere: nothing to rebuild
            out = foreground.to(background.dtype)
            hole = mask_at(mask, foreground.shape[0], height, width)
            return (out, _zero_offsets(hole)) if return_offsets else out
        # A copy when the features are bf16/fp16; otherwise flushed in place, which leaves the
        # argmax (the offsets) unchanged: a row's largest weight is at least 1 / Lb.
        weights = flush_subnormal_(attended.weights.to(background.dtype))
        out = reconstruct(
            weights,
            background,
            (height, width),
            self.rate,
            self.stride,
            attended.window,
            self.paste,
        )
        if self.foreground == "hole":
            # A selection (tensors.composite): each sample keeps its own known features,
            # whatever the window other samples' holes made the layer compute.
            out = composite(foreground.to(out.dtype), out, attended.hole)
        if not return_offsets:
            return out
        offsets = attention_offsets(
            attended.weights,
            attended.valid,
            attended.hole,
            attended.grid,
            attended.background_width,
            self.rate,
            self.stride,
            attended.window,
        )
        return out, offsets

    def attention_map(
        self, foreground: torch.Tensor, background: torch.Tensor, mask: torch.Tensor
    ) -> AttentionMap | None:
        """The attention weights ``forward`` rebuilds from, with what is needed to read them.

        Same arguments as :meth:`forward`. ``None`` with ``foreground="hole"`` when no sample
        has a hole (nothing is matched). Used by :meth:`forward` and by tools that study what
        the layer learned (benchmarks/attention_entropy.py).
        """
        n, _, height, width = foreground.shape
        r, s, k = self.rate, self.stride, self.patch_size
        hole = mask_at(mask, n, height, width)  # float32 (N, 1, H, W) in {0, 1}

        # Matching grid: nearest downscale by rate (pixel r·p represents block p).
        fg_small = foreground[:, :, ::r, ::r]
        bg_small = background[:, :, ::r, ::r]
        grid = fg_small.shape[-2:]
        propagate_size = self.propagate_size if self.fuse else 1
        if self.foreground == "all":
            window = scored_window = Window(0, grid[0], 0, grid[1])
        else:
            window = hole_window(hole, r, grid)
            if window is None:
                return None
            scored_window = score_window(window, grid, propagate_size)

        bg_h, bg_w = _strided_size(grid[0], s), _strided_size(grid[1], s)
        # (N, |scored window|, Lb), ≥ fp32; without propagation the score window is the window.
        scores = cosine_scores(fg_small, bg_small, k, s, scored_window)
        if propagate_size > 1 and self.foreground == "all":
            scores = propagate(scores, grid, (bg_h, bg_w), propagate_size)
        elif propagate_size > 1:
            scores = propagate_window(
                scores, scored_window, window, grid, (bg_h, bg_w), propagate_size
            )
        valid = valid_background(hole, r, k, s).to(scores.dtype)  # (N, 1, Lb)
        # Released order: invalid scores set to 0, softmax of λ·scores, invalid weights set to 0.
        # ``scores`` is a fresh tensor no backward formula saved, so it is scaled in place; the
        # softmax output is saved by its backward, so it is masked in place only without autograd.
        attention = torch.softmax(scores.mul_(valid * self.softmax_scale), dim=2)
        attention = attention * valid if attention.requires_grad else attention.mul_(valid)
        return AttentionMap(attention, valid, hole, window, (grid[0], grid[1]), bg_w)


def cosine_scores(
    fg_small: torch.Tensor,
    bg_small: torch.Tensor,
    patch_size: int,
    stride: int,
    window: Window | None = None,
) -> torch.Tensor:
    """Matching scores ``(N, Lf, Lb)`` on the downscaled grid, as batched matrix products.

    ``scores[n, p, q] = <foreground patch p, background patch q> / max(‖background patch q‖, ε)``
    with zero-padded ``patch_size²`` patches around every foreground position ``p`` and every
    ``stride``-th background position ``q`` (both row-major): the released code's convolution
    of the foreground with the normalised background patches as filters. With ``window``
    only its foreground positions are scored (``Lf = |window|``, row-major inside it),
    against every background patch.

    With ``stride == 1`` the products come from :func:`~inpaintkit.model.stride1.stride1_patch_products`
    (sums along diagonals of one pixel-correlation volume, ``patch_size²`` times fewer
    multiply-adds); with a background stride that volume would be as large as without it,
    defeating the memory option, so whole patches are correlated instead. Products of bf16/fp16 features
    are summed and returned in fp32: propagation and the softmax need the precision.
    """
    n, _, h, w = fg_small.shape
    pad = patch_size // 2
    if window is None:
        window = Window(0, h, 0, w)
    if stride == 1:
        products = stride1_patch_products(fg_small, bg_small, patch_size, window)
    else:
        fg_patches = F.unfold(fg_small, patch_size, padding=pad)  # (N, C·k², Lf)
        if window.size != (h, w):
            fg_patches = fg_patches[:, :, window.flat(w).to(fg_patches.device)]
        bg_patches = F.unfold(bg_small, patch_size, padding=pad, stride=stride)  # (N, C·k², Lb)
        products = torch.bmm(fg_patches.transpose(1, 2), bg_patches)
        products = products.to(torch.promote_types(products.dtype, torch.float32))
    # ‖patch‖² is a box sum of the channel-summed squares (zero padding, like the patches).
    squares = bg_small.to(products.dtype).square().sum(dim=1, keepdim=True)
    box = F.avg_pool2d(squares, patch_size, stride=stride, padding=pad, count_include_pad=True)
    # clamp before sqrt: equals max(‖·‖, ε) and keeps the gradient finite at zero patches.
    norms = (box * patch_size**2).clamp_min(_NORM_EPS**2).sqrt().flatten(1)[:, None, :]
    # In place saves a pass and an allocation over the (Lf, Lb) volume; with autograd the
    # caller's later in-place scaling would overwrite the quotient saved for norms' gradient.
    return products / norms if products.requires_grad else products.div_(norms)


def propagate(
    scores: torch.Tensor, fg_size: tuple[int, int], bg_size: tuple[int, int], kernel: int
) -> torch.Tensor:
    """Attention propagation of §4.1: left-right, then top-down, as in the released code.

    ``scores (N, Lf, Lb)`` with ``Lf = hf·wf`` row-major foreground positions and
    ``Lb = hb·wb`` row-major background positions. The released code convolves this
    ``Lf × Lb`` score image with a ``kernel × kernel`` identity matrix (zero "SAME" padding),
    i.e. ``out[i, j] = Σ_d scores[i + d, j + d]`` for ``|d| ≤ kernel // 2``, which shifts the
    foreground and background patch together along x; it then repeats this with both
    position grids flattened column-major, which shifts along y. Because the shift is on
    flattened indices it wraps from the end of one row (column) into the next, as released.
    """
    n, lf, lb = scores.shape
    (hf, wf), (hb, wb) = fg_size, bg_size
    shifts = range(-(kernel // 2), kernel // 2 + 1)
    scores = diagonal_shift_sum(scores, (1, 2), shifts, (lf, lb))
    # Top-down: the shift runs along column-major indices. Rather than transposing the volume
    # twice (two full, strided copies), each shift is added to the row-major volume as up to
    # four slices: a column's end wraps into the next column's start, for foreground and
    # background independently.
    volume = scores.view(n, hf, wf, hb, wb)
    terms = [SliceTerm(0, ())]  # d = 0: the volume itself
    for d in shifts:
        if d == 0:
            continue
        for fg_slices in grid_shift_slices((1, 2), d, (hf, wf), column_major=True):
            for bg_slices in grid_shift_slices((3, 4), d, (hb, wb), column_major=True):
                terms.append(SliceTerm(0, fg_slices + bg_slices))
    out = slice_sum([volume], volume.shape, terms)
    return out.view(n, lf, lb)


def reconstruct(
    attention: torch.Tensor,
    background: torch.Tensor,
    size: tuple[int, int],
    rate: int,
    stride: int,
    window: Window | None = None,
    paste: str = "box",
) -> torch.Tensor:
    """Paste raw background patches weighted by ``attention (N, Lf, Lb)``: ``(N, C, H, W)``.

    Background patch ``q`` (at downscaled position ``Q``) is the full-resolution
    ``2r × 2r`` window whose centre ``r × r`` block is block ``Q``: rows
    ``r·Q − r//2 … r·Q − r//2 + 2r − 1``, edge pixels replicated beyond the image. It is
    pasted at the same offset around each foreground block ``P``: a transposed convolution
    with stride ``r``. Each pixel is divided by the number of patches covering it
    (``paste="box"``), or its patches' pixels are weighted by :func:`paste_window` and it is
    divided by the sum of the weights covering it (``"tent"``; 1 away from the grid's edge).

    With ``window`` the attention rows are that window's foreground blocks only; the result
    is exact on the pixels whose covering blocks all lie in the window (or beyond the grid)
    and zero outside the window's patches.
    """
    n, c, height, width = background.shape
    h_small, w_small = _strided_size(height, rate), _strided_size(width, rate)
    if window is None:
        window = Window(0, h_small, 0, w_small)
    (win_h, win_w), kernel, lead = window.size, 2 * rate, rate // 2
    axis_weights = paste_window(rate, paste)
    # (kernel²,) weights of a patch's pixels, row-major, or None for the box's equal weights.
    weights = None
    if axis_weights is not None:
        weights = torch.outer(axis_weights, axis_weights).flatten().to(attention)
    if stride == 1:
        canvas = stride1_paste(
            attention, background, window.size, (h_small, w_small), rate, lead, axis_weights
        )
    else:
        raw = _raw_patches(background, rate, stride, kernel, lead)  # (N, C·kernel², Lb)
        columns = torch.bmm(raw, attention.transpose(1, 2))  # (N, C·kernel², Lf)
        if weights is not None:
            columns = (columns.unflatten(1, (-1, kernel * kernel)) * weights[:, None]).flatten(1, 2)
        canvas = F.fold(columns, (rate * (win_h + 1), rate * (win_w + 1)), kernel, stride=rate)
    # The patch weights of the whole grid covering each pixel: with the box, how many patches
    # (4 inside, fewer on the border); with the tent, 1 inside and less on the border.
    ones = attention.new_ones(1, kernel * kernel, h_small * w_small)
    if weights is not None:
        ones = ones * weights[:, None]
    coverage = F.fold(ones, (rate * (h_small + 1), rate * (w_small + 1)), kernel, stride=rate)
    top, left = rate * window.top, rate * window.left  # the window canvas's first canvas pixel
    out = canvas / coverage[:, :, top : top + canvas.shape[2], left : left + canvas.shape[3]]
    # Canvas pixel ``t`` is image pixel ``t − lead``: crop what lies beyond the image, then
    # place the window's pixels in the full (N, C, H, W) frame (zeros around them).
    top, left = top - lead, left - lead
    out = out[:, :, max(0, -top) : height - top, max(0, -left) : width - left]
    top, left = max(top, 0), max(left, 0)
    bottom, right = height - top - out.shape[2], width - left - out.shape[3]
    return F.pad(out, (left, right, top, bottom)) if top or left or bottom or right else out


def _raw_patches(
    background: torch.Tensor, rate: int, stride: int, kernel: int, lead: int
) -> torch.Tensor:
    """Full-resolution ``kernel × kernel`` background patches at stride ``rate·stride``.

    Returns ``(N, C·kernel², Lb)``, patch ``q`` starting at row/column ``rate·stride·q − lead``.
    The parts beyond the image edge replicate the edge pixels: those pixels belong to the
    patch's own (hole-free) footprint, so pasted borders keep the background's colour
    instead of fading to zero.
    """
    height, width = background.shape[-2:]
    step = rate * stride
    count_h = _strided_size(_strided_size(height, rate), stride)
    count_w = _strided_size(_strided_size(width, rate), stride)
    need_h = step * (count_h - 1) + kernel
    need_w = step * (count_w - 1) + kernel
    pad_bottom = max(need_h - lead - height, 0)
    pad_right = max(need_w - lead - width, 0)
    padded = pad_exactly(background, (lead, pad_right, lead, pad_bottom), "replicate")
    padded = padded[:, :, :need_h, :need_w]
    return F.unfold(padded, kernel, stride=step)


def valid_background(hole: torch.Tensor, rate: int, patch_size: int, stride: int) -> torch.Tensor:
    """``(N, 1, Lb)``: 1 for background patches whose footprint holds no hole pixel, else 0.

    A downscaled block counts as hole if any of its ``rate × rate`` feature pixels is hole
    (max pooling, not the released code's nearest resize, which can miss thin holes); a patch
    is invalid if any block of its ``patch_size × patch_size`` window is hole. That window
    contains the raw ``2r × 2r`` reconstruction patch, so no hole pixel is ever pasted.
    Positions beyond the image edge count as known, as in the released code.
    """
    blocks = F.max_pool2d(hole, rate, stride=rate, ceil_mode=True)
    touched = F.max_pool2d(blocks, patch_size, stride=stride, padding=patch_size // 2)
    return (1.0 - touched).flatten(2)


def attention_offsets(
    attention: torch.Tensor,
    valid: torch.Tensor,
    hole: torch.Tensor,
    fg_size: tuple[int, int],
    bg_w: int,
    rate: int,
    stride: int,
    window: Window | None = None,
) -> torch.Tensor:
    """``(N, 2, H, W)`` int64 (dy, dx) from each hole pixel to its most-attended patch's centre block.

    ``attention (N, Lf, Lb)`` rows are the foreground blocks of ``window`` (default: the
    whole ``fg_size`` grid); blocks outside the window get offset 0.
    """
    n, _, height, width = hole.shape
    h_small, w_small = fg_size
    if window is None:
        window = Window(0, h_small, 0, w_small)
    best = attention.argmax(dim=2)  # (N, Lf)
    target_y = torch.div(best, bg_w, rounding_mode="floor") * stride
    target_x = (best % bg_w) * stride
    flat = window.flat(w_small).to(best.device)
    grid_y, grid_x = flat // w_small, flat % w_small
    offsets = torch.stack([target_y - grid_y, target_x - grid_x], dim=1) * rate  # (N, 2, Lf)
    win_h, win_w = window.size
    offsets = offsets.view(n, 2, win_h, win_w)
    offsets = F.pad(
        offsets,
        (window.left, w_small - window.right, window.top, h_small - window.bottom),
    )
    offsets = offsets.repeat_interleave(rate, dim=2).repeat_interleave(rate, dim=3)
    offsets = offsets[:, :, :height, :width]
    # Zero where nothing was attended (no valid patch) and at known positions.
    attended = (valid.amax(dim=2) > 0).view(n, 1, 1, 1)
    keep = (hole > 0.5) & attended
    return torch.where(keep, offsets, torch.zeros_like(offsets))


def _zero_offsets(hole: torch.Tensor) -> torch.Tensor:
    n, _, height, width = hole.shape
    return torch.zeros(n, 2, height, width, dtype=torch.int64, device=hole.device)


def flush_subnormal_(weights: torch.Tensor) -> torch.Tensor:
    """Set ``weights`` below their dtype's smallest normal number to 0, in place; returns them.

    The λ-sharpened softmax underflows into subnormal numbers for a few percent of the
    weights, and CPU matrix products on subnormal operands run tens of times slower (measured
    35× for the reconstruction product at 64×64 features). A weight below ~1e-38 (fp32/bf16)
    or ~6e-5 (fp16) changes the weighted sum by less than its rounding error.
    """
    return F.threshold_(weights, torch.finfo(weights.dtype).tiny, 0.0)


def mask_at(mask: torch.Tensor, n: int, height: int, width: int) -> torch.Tensor:
    """Resize a ``(N or 1, 1, h, w)`` mask to ``(N, 1, H, W)`` by nearest neighbour."""
    mask = mask.float()
    if mask.shape[-2:] != (height, width):
        mask = F.interpolate(mask, size=(height, width), mode="nearest")
    return (mask > 0.5).float().expand(n, 1, height, width)


def _strided_size(size: int, step: int) -> int:
    """Number of positions ``0, step, 2·step, …`` inside ``size``."""
    return -(-size // step)


def _check_inputs(foreground: torch.Tensor, background: torch.Tensor, mask: torch.Tensor) -> None:
    if foreground.dim() != 4:
        raise ValueError(f"foreground must be (N, C, H, W), got shape {tuple(foreground.shape)}")
    if background.shape != foreground.shape:
        raise ValueError(
            f"background shape {tuple(background.shape)} must equal foreground shape "
            f"{tuple(foreground.shape)}"
        )
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, foreground.shape[0]):
        raise ValueError(
            f"mask must be (N, 1, h, w) or (1, 1, h, w) with N={foreground.shape[0]}, "
            f"got shape {tuple(mask.shape)}"
        )
