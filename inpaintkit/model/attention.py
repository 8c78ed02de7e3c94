"""Contextual attention (§4.1 of Yu et al., CVPR 2018), batched, following the authors' released code.

For every foreground position the layer scores all *background* patches that contain no hole
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

import torch
import torch.nn.functional as F
from torch import nn

# Released code: ``tf.maximum(norm, 1e-4)`` keeps all-zero background patches finite.
_NORM_EPS = 1e-4


class ContextualAttention(nn.Module):
    """Contextual attention layer (§4.1); parameter-free.

    Args:
        patch_size: side of the matching patches on the downscaled grid (odd; paper: 3).
        propagate_size: attention propagation kernel ``k`` (odd; paper: 3).
        softmax_scale: λ, the softmax temperature's inverse (paper: 10).
        rate: foreground/background downscale before matching (1 = match at full resolution).
        stride: background patch stride on the downscaled grid (1 = every position).
        fuse: whether to apply attention propagation.
    """

    def __init__(
        self,
        patch_size: int = 3,
        propagate_size: int = 3,
        softmax_scale: float = 10.0,
        rate: int = 2,
        stride: int = 1,
        fuse: bool = True,
    ) -> None:
        super().__init__()
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

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, propagate_size={self.propagate_size}, "
            f"softmax_scale={self.softmax_scale}, rate={self.rate}, stride={self.stride}, "
            f"fuse={self.fuse}"
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
            ``out (N, C, H, W)`` in ``background``'s dtype, and with ``return_offsets``
            ``offsets (N, 2, H, W)`` int64: ``(dy, dx)`` in feature pixels from each hole
            position to the block at the centre of its most-attended background patch
            (a multiple of ``rate``); 0 at known positions and where nothing is attended.
        """
        _check_inputs(foreground, background, mask)
        n, c, height, width = foreground.shape
        r, s, k = self.rate, self.stride, self.patch_size
        hole = _mask_at(mask, n, height, width)  # float32 (N, 1, H, W) in {0, 1}

        # Matching grid: nearest downscale by rate (pixel r·p represents block p).
        fg_small = foreground[:, :, ::r, ::r]
        bg_small = background[:, :, ::r, ::r]
        h_small, w_small = fg_small.shape[-2:]

        bg_h, bg_w = _strided_size(h_small, s), _strided_size(w_small, s)
        scores = _cosine_scores(fg_small, bg_small, k, s)  # (N, Lf, Lb), fp32 or fp64
        if self.fuse and self.propagate_size > 1:
            scores = propagate(scores, (h_small, w_small), (bg_h, bg_w), self.propagate_size)
        valid = _valid_background(hole, r, k, s).to(scores.dtype)  # (N, 1, Lb)
        # Released order: invalid scores set to 0, softmax of λ·scores, invalid weights set to 0.
        # ``scores`` is a fresh tensor no backward formula saved, so it is scaled in place; the
        # softmax output is saved by its backward, so it is masked in place only without autograd.
        attention = torch.softmax(scores.mul_(valid * self.softmax_scale), dim=2)
        attention = attention * valid if attention.requires_grad else attention.mul_(valid)

        # A copy when the features are bf16/fp16; otherwise flushed in place, which leaves the
        # argmax (the offsets) unchanged: a row's largest weight is at least 1 / Lb.
        weights = _flush_subnormal_(attention.to(background.dtype))
        out = _reconstruct(weights, background, (height, width), r, s)
        if not return_offsets:
            return out
        offsets = _offsets(attention, valid, hole, (h_small, w_small), bg_w, r, s)
        return out, offsets


def _cosine_scores(
    fg_small: torch.Tensor, bg_small: torch.Tensor, patch_size: int, stride: int
) -> torch.Tensor:
    """Matching scores ``(N, Lf, Lb)`` on the downscaled grid, as batched matrix products.

    ``scores[n, p, q] = <foreground patch p, background patch q> / max(‖background patch q‖, ε)``
    with zero-padded ``patch_size²`` patches around every foreground position ``p`` and every
    ``stride``-th background position ``q`` (both row-major): the released code's convolution
    of the foreground with the normalised background patches as filters.

    With ``stride == 1`` a patch product is the sum of ``patch_size²`` pixel products along a
    diagonal of the pixel-correlation volume, so the volume is computed once (``patch_size²``
    times fewer multiply-adds than correlating whole patches) and summed along diagonals.
    With a background stride that volume would be as large as without it, defeating the
    memory option, so whole patches are correlated instead. Products of bf16/fp16 features
    are summed and returned in fp32: propagation and the softmax need the precision.
    """
    n, _, h, w = fg_small.shape
    pad = patch_size // 2
    if stride == 1:
        pixels = torch.bmm(fg_small.flatten(2).transpose(1, 2), bg_small.flatten(2))
        pixels = pixels.to(torch.promote_types(pixels.dtype, torch.float32))
        shifts = range(-pad, pad + 1)
        volume = pixels.view(n, h, w, h, w)
        volume = _diagonal_shift_sum(volume, (2, 4), shifts, (w, w))  # along x
        volume = _diagonal_shift_sum(volume, (1, 3), shifts, (h, h))  # along y
        products = volume.reshape(n, h * w, h * w)
    else:
        fg_patches = F.unfold(fg_small, patch_size, padding=pad)  # (N, C·k², Lf)
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
        for fy, fy_to, fy_len, fx_carry in _column_major_shift(d, hf):
            for by, by_to, by_len, bx_carry in _column_major_shift(d, hb):
                target, source = out, volume
                for dim, start, source_start, length in (
                    (1, fy, fy_to, fy_len),
                    (2, max(0, -fx_carry), max(0, fx_carry), wf - abs(fx_carry)),
                    (3, by, by_to, by_len),
                    (4, max(0, -bx_carry), max(0, bx_carry), wb - abs(bx_carry)),
                ):
                    if length <= 0:
                        break
                    target = target.narrow(dim, start, length)
                    source = source.narrow(dim, source_start, length)
                else:
                    target.add_(source)
    return out.view(n, lf, lb)


def _column_major_shift(shift: int, height: int) -> list[tuple[int, int, int, int]]:
    """How a shift of column-major index ``x·height + y`` by ``shift`` splits into slices.

    Returns ``(y, source_y, length, carry)`` runs: rows ``y … y + length − 1`` take rows
    ``source_y …`` of column ``x + carry`` (the carry is where the shift wraps into another column).
    """
    carry, rest = divmod(shift, height)
    return [(0, rest, height - rest, carry), (height - rest, 0, rest, carry + 1)]


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
    attention: torch.Tensor, background: torch.Tensor, size: tuple[int, int], rate: int, stride: int
) -> torch.Tensor:
    """Paste raw background patches weighted by ``attention (N, Lf, Lb)``: ``(N, C, H, W)``.

    Background patch ``q`` (at downscaled position ``Q``) is the full-resolution
    ``2r × 2r`` window whose centre ``r × r`` block is block ``Q``: rows
    ``r·Q − r//2 … r·Q − r//2 + 2r − 1``, edge pixels replicated beyond the image. It is
    pasted at the same offset around each foreground block ``P``: a transposed convolution
    with stride ``r``. Each pixel is divided by the number of patches covering it.
    """
    n, c, height, width = background.shape
    h_small, w_small = _strided_size(height, rate), _strided_size(width, rate)
    kernel, lead = 2 * rate, rate // 2
    canvas_size = (rate * (h_small + 1), rate * (w_small + 1))
    if stride == 1:
        canvas = _paste_dense(attention, background, (h_small, w_small), rate, lead)
    else:
        raw = _raw_patches(background, rate, stride, kernel, lead)  # (N, C·kernel², Lb)
        columns = torch.bmm(raw, attention.transpose(1, 2))  # (N, C·kernel², Lf)
        canvas = F.fold(columns, canvas_size, kernel, stride=rate)
    # How many pasted patches cover each pixel (4 inside, fewer on the border).
    ones = attention.new_ones(1, kernel * kernel, h_small * w_small)
    coverage = F.fold(ones, canvas_size, kernel, stride=rate)
    out = canvas / coverage
    return out[:, :, lead : lead + height, lead : lead + width]


def _paste_dense(
    attention: torch.Tensor,
    background: torch.Tensor,
    small_size: tuple[int, int],
    rate: int,
    lead: int,
) -> torch.Tensor:
    """The transposed convolution of :func:`_reconstruct` for background stride 1.

    Canvas pixel ``r·Y + u`` (``0 ≤ u < r``) is covered by foreground blocks ``Y`` and
    ``Y − 1`` only, and receives from patch ``Q`` of block ``P = Y − e`` the padded
    background pixel ``r·(Q + e) + u``. Summing the attention along the diagonal first,
    ``A[Y, T] = Σ_{e ∈ {0, 1}²} attention[Y − e, T − e]``, leaves one matrix product per
    phase ``u`` with the background's space-to-depth rearrangement: ``r²·C`` instead of
    ``4r²·C`` multiply-adds per (position, patch) pair. Returns the
    ``(N, C, r·(h + 1), r·(w + 1))`` canvas, starting ``lead`` pixels before the image.
    """
    n, c, height, width = background.shape
    h, w = small_size
    volume = attention.view(n, h, w, h, w)
    volume = _diagonal_shift_sum(volume, (2, 4), range(-1, 1), (w + 1, w + 1))
    volume = _diagonal_shift_sum(volume, (1, 3), range(-1, 1), (h + 1, h + 1))
    summed = volume.reshape(n, (h + 1) * (w + 1), (h + 1) * (w + 1))
    pad_bottom = rate * (h + 1) - lead - height
    pad_right = rate * (w + 1) - lead - width
    padded = F.pad(background, (lead, pad_right, lead, pad_bottom), mode="replicate")
    phases = F.pixel_unshuffle(padded, rate).flatten(2)  # (N, C·r², (h+1)(w+1))
    columns = torch.bmm(phases, summed.transpose(1, 2))  # (N, C·r², (h+1)(w+1))
    return F.pixel_shuffle(columns.view(n, c * rate * rate, h + 1, w + 1), rate)


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
) -> torch.Tensor:
    """``(N, 2, H, W)`` int64 (dy, dx) from each hole pixel to its most-attended patch's centre block."""
    n, _, height, width = hole.shape
    h_small, w_small = fg_size
    best = attention.argmax(dim=2)  # (N, Lf)
    target_y = torch.div(best, bg_w, rounding_mode="floor") * stride
    target_x = (best % bg_w) * stride
    grid_y = torch.arange(h_small, device=best.device).repeat_interleave(w_small)
    grid_x = torch.arange(w_small, device=best.device).repeat(h_small)
    offsets = torch.stack([target_y - grid_y, target_x - grid_x], dim=1) * rate  # (N, 2, Lf)
    offsets = offsets.view(n, 2, h_small, w_small)
    offsets = offsets.repeat_interleave(rate, dim=2).repeat_interleave(rate, dim=3)
    offsets = offsets[:, :, :height, :width]
    # Zero where nothing was attended (no valid patch) and at known positions.
    attended = (valid.amax(dim=2) > 0).view(n, 1, 1, 1)
    keep = (hole > 0.5) & attended
    return torch.where(keep, offsets, torch.zeros_like(offsets))


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
