"""Contextual attention (§4.1 of Yu et al., CVPR 2018), batched, following the authors' released code.

For every foreground position (by default: every position that rebuilds the hole; see
``foreground`` below) the layer scores all *background* patches that contain no hole
pixel, turns the scores into attention weights with a scaled softmax, and rebuilds the
foreground from the raw background patches weighted by that attention::

    foreground, background (N, C, H, W) ──nearest ÷rate──► (N, C, h, w)      h = ceil(H / rate)
    scores[n, p, q]  = <3×3 foreground patch p, 3×3 background patch q / ‖·‖>   (a convolution)
    scores           = propagate(scores)                 (left-right, then top-down; §4.1)
    attention[n, p]  = softmax_q(λ · scores · valid) · valid                      (λ = softmax_scale)
    out[n]           = Σ_q attention[n, p, q] · raw 2rate×2rate patch q, overlaps averaged

Matching runs on the rate-downscaled grid (the memory option of §4.1; rate=1 disables it);
reconstruction pastes full-resolution ``2·rate × 2·rate`` background patches at stride
``rate`` (a transposed convolution), so the output has the input's full resolution. The
background can additionally be sampled with ``stride`` (the other memory option).

Which foreground positions are matched (``foreground``):

* ``"hole"`` (default): only the *foreground patches* of §4.1, the missing region. Scores,
  propagation, softmax and reconstruction run over a window of the matching grid: the
  union over the batch of the hole's bounding box, dilated by one block so that every
  ``2r × 2r`` patch pasted onto a hole pixel is rebuilt; the scores additionally cover every
  position propagation reads for that window (its ``k // 2`` neighbours along the released
  row-major then column-major order, wrap-around included; for a hole within ``k // 2``
  blocks of the map's edge the wrap reads the far end, so that window spans the map's height
  or width). Background patches still come from the whole map. Reading the window's bounds
  costs one host-device synchronisation per call. The output is the reconstruction at hole positions and the input
  ``foreground`` elsewhere (a selection, as ``tensors.composite``; each sample by its own
  mask). Work and memory scale with (window × map) instead of map², and a batch without any
  hole costs nothing. Inside the hole the values are those of ``"all"``: the same additions
  in the same order, the only possible difference being how the matrix-product kernels
  split their sums for a different matrix shape (a few float32 ulps, measured; bit-equal in
  the float64 tests).
* ``"all"``: every position, the authors' released layer, whose output is the reconstruction
  everywhere (known positions included). Kept for fidelity with the released code.

Everything runs as batched matrix products (``bmm``): each sample attends only to its own
background, and no Python loop over the batch is involved. With background stride 1 (the
generator's setting) both products exploit that neighbouring patches share pixels — sums along
diagonals of the (position × patch) volume replace patch-sized products (9× fewer
multiply-adds for the scores, 4× for the reconstruction); with a stride the patches are
unfolded explicitly so that memory really shrinks.

Deliberate choices, where the released code leaves room:

* only the background patches are L2-normalised (as in the released code), so a score is the
  cosine similarity times the foreground patch's norm;
* an invalid background patch (one whose footprint touches the hole) gets score 0 before the
  softmax and weight 0 after it, exactly as released; valid weights therefore sum to at most 1;
* overlapping reconstructed patches are divided by the number of patches that really cover each
  pixel (4 inside, 2 on an edge, 1 in a corner for ``2·rate`` kernels at stride ``rate``) rather
  than by a constant 4, so border pixels are not darkened; raw patches that reach past the
  image edge are filled by edge replication (not zeros) for the same reason;
* a sample whose background has no valid patch at all (all hole) gets all-zero attention, hence
  an all-zero output and zero offsets — never NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from inpaintkit.tensors import composite

# Released code: ``tf.maximum(norm, 1e-4)`` keeps all-zero background patches finite.
_NORM_EPS = 1e-4

#: ``ContextualAttention(foreground=...)``: match the hole's window only, or every position.
FOREGROUND_MODES = ("hole", "all")


class Window(NamedTuple):
    """Rows ``top … bottom − 1`` and columns ``left … right − 1`` of the matching grid."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def size(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def flat(self, grid_width: int) -> torch.Tensor:
        """Row-major indices ``y·grid_width + x`` of the window's positions, in row-major order."""
        ys = torch.arange(self.top, self.bottom).repeat_interleave(self.right - self.left)
        xs = torch.arange(self.left, self.right).repeat(self.bottom - self.top)
        return ys * grid_width + xs


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
    ) -> None:
        super().__init__()
        if foreground not in FOREGROUND_MODES:
            raise ValueError(f"foreground must be one of {FOREGROUND_MODES}, got {foreground!r}")
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

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, propagate_size={self.propagate_size}, "
            f"softmax_scale={self.softmax_scale}, rate={self.rate}, stride={self.stride}, "
            f"fuse={self.fuse}, foreground={self.foreground!r}"
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
        n, c, height, width = foreground.shape
        r, s, k = self.rate, self.stride, self.patch_size
        hole = _mask_at(mask, n, height, width)  # float32 (N, 1, H, W) in {0, 1}

        # Matching grid: nearest downscale by rate (pixel r·p represents block p).
        fg_small = foreground[:, :, ::r, ::r]
        bg_small = background[:, :, ::r, ::r]
        grid = fg_small.shape[-2:]
        propagate_size = self.propagate_size if self.fuse else 1
        if self.foreground == "all":
            window = score_window = Window(0, grid[0], 0, grid[1])
        else:
            window = _hole_window(hole, r, grid)
            if window is None:  # no hole anywhere: nothing to rebuild
                out = foreground.to(background.dtype)
                return (out, _zero_offsets(hole)) if return_offsets else out
            score_window = _score_window(window, grid, propagate_size)

        bg_h, bg_w = _strided_size(grid[0], s), _strided_size(grid[1], s)
        # (N, |score window|, Lb), ≥ fp32; without propagation the score window is the window.
        scores = _cosine_scores(fg_small, bg_small, k, s, score_window)
        if propagate_size > 1 and self.foreground == "all":
            scores = propagate(scores, grid, (bg_h, bg_w), propagate_size)
        elif propagate_size > 1:
            scores = propagate_window(
                scores, score_window, window, grid, (bg_h, bg_w), propagate_size
            )
        valid = _valid_background(hole, r, k, s).to(scores.dtype)  # (N, 1, Lb)
        # Released order: invalid scores set to 0, softmax of λ·scores, invalid weights set to 0.
        # ``scores`` is a fresh tensor no backward formula saved, so it is scaled in place; the
        # softmax output is saved by its backward, so it is masked in place only without autograd.
        attention = torch.softmax(scores.mul_(valid * self.softmax_scale), dim=2)
        attention = attention * valid if attention.requires_grad else attention.mul_(valid)

        # A copy when the features are bf16/fp16; otherwise flushed in place, which leaves the
        # argmax (the offsets) unchanged: a row's largest weight is at least 1 / Lb.
        weights = _flush_subnormal_(attention.to(background.dtype))
        out = _reconstruct(weights, background, (height, width), r, s, window)
        if self.foreground == "hole":
            # A selection (tensors.composite): each sample keeps its own known features,
            # whatever the window other samples' holes made the layer compute.
            out = composite(foreground.to(out.dtype), out, hole)
        if not return_offsets:
            return out
        offsets = _offsets(attention, valid, hole, grid, bg_w, r, s, window)
        return out, offsets


def _cosine_scores(
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

    With ``stride == 1`` a patch product is the sum of ``patch_size²`` pixel products along a
    diagonal of the pixel-correlation volume, so the volume is computed once (``patch_size²``
    times fewer multiply-adds than correlating whole patches) and summed along diagonals.
    With a background stride that volume would be as large as without it, defeating the
    memory option, so whole patches are correlated instead. Products of bf16/fp16 features
    are summed and returned in fp32: propagation and the softmax need the precision.
    """
    n, _, h, w = fg_small.shape
    pad = patch_size // 2
    if window is None:
        window = Window(0, h, 0, w)
    if stride == 1:
        # The window's foreground with the ring its patches reach (zeros beyond the image,
        # as the padding of the full-grid computation).
        top, left = max(window.top - pad, 0), max(window.left - pad, 0)
        ring = fg_small[:, :, top : min(window.bottom + pad, h), left : min(window.right + pad, w)]
        ring_h, ring_w = ring.shape[-2:]
        pixels = torch.bmm(ring.flatten(2).transpose(1, 2), bg_small.flatten(2))
        pixels = pixels.to(torch.promote_types(pixels.dtype, torch.float32))
        shifts = range(-pad, pad + 1)
        volume = pixels.view(n, ring_h, ring_w, h, w)
        volume = _diagonal_shift_sum(volume, (2, 4), shifts, (ring_w, w))  # along x
        volume = _diagonal_shift_sum(volume, (1, 3), shifts, (ring_h, h))  # along y
        # The ring's own sums miss their outer neighbours; only the window's are kept.
        (win_h, win_w), y0, x0 = window.size, window.top - top, window.left - left
        volume = volume[:, y0 : y0 + win_h, x0 : x0 + win_w]
        products = volume.reshape(n, win_h * win_w, h * w)
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
    scores = _diagonal_shift_sum(scores, (1, 2), shifts, (lf, lb))
    # Top-down: the shift runs along column-major indices. Rather than transposing the volume
    # twice (two full, strided copies), each shift is added to the row-major volume as up to
    # four slices: a column's end wraps into the next column's start, for foreground and
    # background independently.
    volume = scores.view(n, hf, wf, hb, wb)
    out = volume.clone()
    for d in shifts:
        if d == 0:
            continue
        for fg_target, fg_source in _column_major_views(out, volume, (1, 2), d, hf, wf):
            for target, source in _column_major_views(fg_target, fg_source, (3, 4), d, hb, wb):
                target.add_(source)
    return out.view(n, lf, lb)


def _column_major_shift(shift: int, height: int) -> list[tuple[int, int, int, int]]:
    """How a shift of column-major index ``x·height + y`` by ``shift`` splits into slices.

    Returns ``(y, source_y, length, carry)`` runs: rows ``y … y + length − 1`` take rows
    ``source_y …`` of column ``x + carry`` (the carry is where the shift wraps into another column).
    """
    carry, rest = divmod(shift, height)
    return [(0, rest, height - rest, carry), (height - rest, 0, rest, carry + 1)]


def _column_major_views(
    target: torch.Tensor,
    source: torch.Tensor,
    dims: tuple[int, int],
    shift: int,
    height: int,
    width: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(target view, source view)`` pairs for a column-major shift of a ``height × width`` grid.

    The grid spans axes ``dims = (y, x)`` of both tensors; adding each source view into its
    target view adds ``source[column-major index + shift]`` at every index, zeros beyond the
    grid's ends (a column's end wraps into the next column's start).
    """
    y_dim, x_dim = dims
    views = []
    for y, source_y, y_len, carry in _column_major_shift(shift, height):
        x_len = width - abs(carry)
        if y_len <= 0 or x_len <= 0:
            continue
        views.append(
            (
                target.narrow(y_dim, y, y_len).narrow(x_dim, max(0, -carry), x_len),
                source.narrow(y_dim, source_y, y_len).narrow(x_dim, max(0, carry), x_len),
            )
        )
    return views


def _propagation_sources(flat: torch.Tensor, grid: tuple[int, int], kernel: int) -> torch.Tensor:
    """Row-major indices of every foreground position whose score propagation reads at ``flat``.

    Propagation (:func:`propagate`) sums scores ``kernel // 2`` steps away along the
    column-major order (top-down), then along the row-major order (left-right), wrapping
    between columns and rows as released; out-of-grid steps read nothing.
    """
    height, width = grid
    total = height * width
    shifts = torch.arange(-(kernel // 2), kernel // 2 + 1)
    y, x = flat // width, flat % width
    column_major = (x * height + y)[:, None] + shifts  # top-down steps
    column_major = column_major[(column_major >= 0) & (column_major < total)]
    row_major = (column_major % height * width + column_major // height)[:, None] + shifts
    return row_major[(row_major >= 0) & (row_major < total)]


def propagate_window(
    scores: torch.Tensor,
    score_window: Window,
    target: Window,
    fg_size: tuple[int, int],
    bg_size: tuple[int, int],
    kernel: int,
) -> torch.Tensor:
    """:func:`propagate` for the foreground positions of ``target`` only.

    ``scores (N, |score_window|, Lb)`` hold the foreground positions of ``score_window``
    (row-major inside it) against every background position of the ``bg_size`` grid;
    ``fg_size`` is the full foreground grid. Returns ``(N, |target|, Lb)``, equal term by
    term (same additions in the same order) to the rows of ``propagate`` on the full volume
    for every target position whose propagation sources (:func:`_propagation_sources`, two
    steps deep) lie in ``score_window``. Foreground steps are gathered by full-grid index, so
    the row and column wrap-around is the released one; background steps are shifted slices.
    """
    n, _, lb = scores.shape
    (hf, wf), (hb, wb) = fg_size, bg_size
    lf = hf * wf
    shifts = sorted(range(-(kernel // 2), kernel // 2 + 1), key=abs)  # as _diagonal_shift_sum
    device = scores.device
    # Full-grid index -> row in the score window; out of the window (or grid) -> a zero row.
    zero_row = score_window.size[0] * score_window.size[1]
    local = torch.full((lf + 1,), zero_row, dtype=torch.long)
    window_flat = score_window.flat(wf)
    local[window_flat] = torch.arange(zero_row)

    def gather(padded: torch.Tensor, sources: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        rows = local[torch.where(valid, sources, lf)].to(device)
        return padded.index_select(1, rows)

    # Left-right over the whole score window: row-major steps of foreground and background.
    padded = torch.cat([scores, scores.new_zeros(n, 1, lb)], dim=1)
    left_right = None
    for d in shifts:
        sources = window_flat + d
        rows = gather(padded, sources, (sources >= 0) & (sources < lf))
        if left_right is None:  # d == 0: every background position
            left_right = rows
            continue
        start, stop = max(0, -d), min(lb, lb - d)
        if stop > start:
            left_right[:, :, start:stop].add_(rows[:, :, start + d : stop + d])
    # Top-down for the targets: column-major steps, the background's as slices.
    target_flat = target.flat(wf)
    y, x = target_flat // wf, target_flat % wf
    padded = torch.cat([left_right, left_right.new_zeros(n, 1, lb)], dim=1)
    out = None
    for d in [0, *(d for d in range(-(kernel // 2), kernel // 2 + 1) if d)]:  # as propagate
        carry, rest = torch.div(y + d, hf, rounding_mode="floor"), (y + d) % hf
        column = x + carry
        rows = gather(padded, rest * wf + column, (column >= 0) & (column < wf))
        if out is None:
            out = rows
            continue
        volume, grid = out.view(n, -1, hb, wb), rows.view(n, -1, hb, wb)
        for target_view, source_view in _column_major_views(volume, grid, (2, 3), d, hb, wb):
            target_view.add_(source_view)
    return out


def _diagonal_shift_sum(
    volume: torch.Tensor, dims: tuple[int, int], shifts: range, out_sizes: tuple[int, int]
) -> torch.Tensor:
    """``out[.., i, .., j, ..] = Σ_{d ∈ shifts} volume[.., i + d, .., j + d, ..]``, zeros outside.

    ``dims`` are the two axes shifted together and ``out_sizes`` their lengths in the output.
    On a 2-D ``(i, j)`` image this is ``conv2d`` with an identity kernel; it is written as
    shifted slices because a one-channel convolution over a multi-megapixel "image" is slow.
    """
    shape = list(volume.shape)
    for dim, size in zip(dims, out_sizes, strict=True):
        shape[dim] = size
    out = volume.new_empty(shape)
    initialised = False
    # The unshifted term, which covers the most, is copied in rather than added to zeros:
    # every pass over a volume of hundreds of megabytes counts.
    for d in sorted(shifts, key=abs):
        target, source, bounds = out, volume, []
        for dim, size in zip(dims, out_sizes, strict=True):
            start = max(0, -d)
            stop = min(size, volume.shape[dim] - d)
            if stop <= start:
                break
            target = target.narrow(dim, start, stop - start)
            source = source.narrow(dim, start + d, stop - start)
            bounds.append((dim, start, stop, size))
        else:
            if initialised:
                target.add_(source)
                continue
            target.copy_(source)
            for dim, start, stop, size in bounds:  # zero what the copied term does not cover
                out.narrow(dim, 0, start).zero_()
                out.narrow(dim, stop, size - stop).zero_()
            initialised = True
    return out if initialised else out.zero_()


def _reconstruct(
    attention: torch.Tensor,
    background: torch.Tensor,
    size: tuple[int, int],
    rate: int,
    stride: int,
    window: Window | None = None,
) -> torch.Tensor:
    """Paste raw background patches weighted by ``attention (N, Lf, Lb)``: ``(N, C, H, W)``.

    Background patch ``q`` (at downscaled position ``Q``) is the full-resolution
    ``2r × 2r`` window whose centre ``r × r`` block is block ``Q``: rows
    ``r·Q − r//2 … r·Q − r//2 + 2r − 1``, edge pixels replicated beyond the image. It is
    pasted at the same offset around each foreground block ``P``: a transposed convolution
    with stride ``r``. Each pixel is divided by the number of patches covering it.

    With ``window`` the attention rows are that window's foreground blocks only; the result
    is exact on the pixels whose covering blocks all lie in the window (or beyond the grid)
    and zero outside the window's patches.
    """
    n, c, height, width = background.shape
    h_small, w_small = _strided_size(height, rate), _strided_size(width, rate)
    if window is None:
        window = Window(0, h_small, 0, w_small)
    (win_h, win_w), kernel, lead = window.size, 2 * rate, rate // 2
    if stride == 1:
        canvas = _paste_dense(attention, background, window.size, rate, lead)
    else:
        raw = _raw_patches(background, rate, stride, kernel, lead)  # (N, C·kernel², Lb)
        columns = torch.bmm(raw, attention.transpose(1, 2))  # (N, C·kernel², Lf)
        canvas = F.fold(columns, (rate * (win_h + 1), rate * (win_w + 1)), kernel, stride=rate)
    # How many pasted patches of the whole grid cover each pixel (4 inside, fewer on the border).
    ones = attention.new_ones(1, kernel * kernel, h_small * w_small)
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


def _paste_dense(
    attention: torch.Tensor,
    background: torch.Tensor,
    fg_size: tuple[int, int],
    rate: int,
    lead: int,
) -> torch.Tensor:
    """The transposed convolution of :func:`_reconstruct` for background stride 1.

    ``attention (N, hf·wf, h·w)``: ``fg_size = (hf, wf)`` foreground blocks (the whole
    grid or a window of it) against the background's ``h × w`` blocks.
    Canvas pixel ``r·Y + u`` (``0 ≤ u < r``) is covered by foreground blocks ``Y`` and
    ``Y − 1`` only, and receives from patch ``Q`` of block ``P = Y − e`` the padded
    background pixel ``r·(Q + e) + u``. Summing the attention along the diagonal first,
    ``A[Y, T] = Σ_{e ∈ {0, 1}²} attention[Y − e, T − e]``, leaves one matrix product per
    phase ``u`` with the background's space-to-depth rearrangement: ``r²·C`` instead of
    ``4r²·C`` multiply-adds per (position, patch) pair. Returns the
    ``(N, C, r·(hf + 1), r·(wf + 1))`` canvas, starting ``lead`` pixels before the foreground
    blocks' first pixel.
    """
    n, c, height, width = background.shape
    hf, wf = fg_size
    h, w = _strided_size(height, rate), _strided_size(width, rate)
    volume = attention.view(n, hf, wf, h, w)
    volume = _diagonal_shift_sum(volume, (2, 4), range(-1, 1), (wf + 1, w + 1))
    volume = _diagonal_shift_sum(volume, (1, 3), range(-1, 1), (hf + 1, h + 1))
    summed = volume.reshape(n, (hf + 1) * (wf + 1), (h + 1) * (w + 1))
    pad_bottom = rate * (h + 1) - lead - height
    pad_right = rate * (w + 1) - lead - width
    padded = F.pad(background, (lead, pad_right, lead, pad_bottom), mode="replicate")
    phases = F.pixel_unshuffle(padded, rate).flatten(2)  # (N, C·r², (h+1)(w+1))
    columns = torch.bmm(phases, summed.transpose(1, 2))  # (N, C·r², (hf+1)(wf+1))
    return F.pixel_shuffle(columns.view(n, c * rate * rate, hf + 1, wf + 1), rate)


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
    padded = F.pad(background, (lead, pad_right, lead, pad_bottom), mode="replicate")
    padded = padded[:, :, :need_h, :need_w]
    return F.unfold(padded, kernel, stride=step)


def _valid_background(hole: torch.Tensor, rate: int, patch_size: int, stride: int) -> torch.Tensor:
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


def _offsets(
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


def _hole_window(hole: torch.Tensor, rate: int, grid: tuple[int, int]) -> Window | None:
    """Foreground blocks whose reconstruction reaches a hole pixel of any sample, or ``None``.

    The hole's bounding box over the batch on the matching grid, dilated by one block: a
    pasted ``2r × 2r`` patch at stride ``r`` reaches one block beyond its own, so a hole pixel
    of block ``b`` is rebuilt from blocks ``b − 1 … b + 1`` only. Reading the box costs one
    device synchronisation.
    """
    occupied = hole.amax(dim=(0, 1)) > 0.5  # (H, W): hole in any sample
    rows_cols = torch.cat([occupied.any(dim=1), occupied.any(dim=0)]).cpu()  # the one sync
    rows = rows_cols[: hole.shape[2]].nonzero()
    cols = rows_cols[hole.shape[2] :].nonzero()
    if rows.numel() == 0:
        return None
    top, bottom = int(rows[0]) // rate, int(rows[-1]) // rate
    left, right = int(cols[0]) // rate, int(cols[-1]) // rate
    height, width = grid
    return Window(max(top - 1, 0), min(bottom + 2, height), max(left - 1, 0), min(right + 2, width))


def _score_window(target: Window, grid: tuple[int, int], kernel: int) -> Window:
    """The bounding box of every foreground position propagation reads for ``target``.

    Away from the grid's edges that is ``target`` dilated by ``kernel // 2`` rows (top-down
    steps) and ``kernel // 2`` columns (left-right steps). Within ``kernel // 2`` of an edge
    the released wrap-around reads the previous or next column's far end (top-down) or row's
    far end (left-right), and the box grows to include it: then it spans the grid's height
    or width, which costs time but keeps the sums exact.
    """
    if kernel <= 1:
        return target
    sources = _propagation_sources(target.flat(grid[1]), grid, kernel)
    ys, xs = sources // grid[1], sources % grid[1]
    return Window(int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)


def _zero_offsets(hole: torch.Tensor) -> torch.Tensor:
    n, _, height, width = hole.shape
    return torch.zeros(n, 2, height, width, dtype=torch.int64, device=hole.device)


def _flush_subnormal_(weights: torch.Tensor) -> torch.Tensor:
    """Set ``weights`` below their dtype's smallest normal number to 0, in place; returns them.

    The λ-sharpened softmax underflows into subnormal numbers for a few percent of the
    weights, and CPU matrix products on subnormal operands run tens of times slower (measured
    35× for the reconstruction product at 64×64 features). A weight below ~1e-38 (fp32/bf16)
    or ~6e-5 (fp16) changes the weighted sum by less than its rounding error.
    """
    return F.threshold_(weights, torch.finfo(weights.dtype).tiny, 0.0)


def _mask_at(mask: torch.Tensor, n: int, height: int, width: int) -> torch.Tensor:
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
