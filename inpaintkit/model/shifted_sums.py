"""Sums of shifted slices: the arithmetic under attention propagation and the stride-1 paths.

Contextual attention sums score (and attention) volumes along diagonals: term ``d`` of a sum
reads the volume shifted by ``d`` along two axes at once, zeros beyond the ends. Written as
shifted slices added in place rather than as convolutions or gathers, because the volumes
are hundreds of megabytes and every extra pass over them counts. Used by
:func:`inpaintkit.model.attention.propagate`, :func:`inpaintkit.model.hole_window.propagate_window`
and :mod:`inpaintkit.model.stride1`.

Every such sum is a :func:`slice_sum`, which has its own backward: the adjoint of adding a
source slice into an output slice is adding the output's gradient slice back into the
source's, another slice sum. Left to autograd, each in-place slice addition would instead cost
a zero-filled, full-size gradient and a full copy of the output's gradient in the backward
(``SliceBackward``, ``CopySlices``): three passes over the volume per term, not one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SliceTerm:
    """One term of a :func:`slice_sum`: ``out[target slices] += weight · sources[source][source slices]``.

    ``slices`` are ``(dim, target_start, source_start, length)`` per sliced axis; axes not
    named are taken whole (the source and the output have the same length there).
    """

    source: int
    slices: tuple[tuple[int, int, int, int], ...]
    weight: float = 1.0

    def transposed(self) -> SliceTerm:
        """The adjoint term: the output's slice added back into the source's."""
        swapped = tuple((dim, src, tgt, length) for dim, tgt, src, length in self.slices)
        return SliceTerm(0, swapped, self.weight)

    def target_view(self, out: torch.Tensor) -> torch.Tensor:
        """The slice of ``out`` this term adds into."""
        for dim, start, _, length in self.slices:
            out = out.narrow(dim, start, length)
        return out

    def source_view(self, sources: Sequence[torch.Tensor]) -> torch.Tensor:
        """The slice of its source this term adds."""
        source = sources[self.source]
        for dim, _, start, length in self.slices:
            source = source.narrow(dim, start, length)
        return source


def _slice_sum(
    sources: Sequence[torch.Tensor], shape: Sequence[int], terms: Sequence[SliceTerm]
) -> torch.Tensor:
    """:func:`slice_sum` without autograd: the first term copied, the others added in place."""
    out = sources[0].new_empty(shape)
    if not terms:
        return out.zero_()
    first, *rest = terms
    target = first.target_view(out)
    target.copy_(first.source_view(sources))
    if first.weight != 1.0:
        target.mul_(first.weight)
    # The first term is copied rather than added to zeros (every pass over a volume of hundreds
    # of megabytes counts), so only what it does not cover is zeroed.
    for dim, start, _, length in first.slices:
        out.narrow(dim, 0, start).zero_()
        out.narrow(dim, start + length, shape[dim] - start - length).zero_()
    for term in rest:
        term.target_view(out).add_(term.source_view(sources), alpha=term.weight)
    return out


class _SliceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shape, terms, *sources):  # type: ignore[override]
        ctx.terms = terms
        ctx.source_shapes = [source.shape for source in sources]
        return _slice_sum(sources, shape, terms)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        grads = []
        for index, shape in enumerate(ctx.source_shapes):
            if not ctx.needs_input_grad[2 + index]:
                grads.append(None)
                continue
            adjoint = [term.transposed() for term in ctx.terms if term.source == index]
            grads.append(slice_sum([grad], shape, adjoint))
        return None, None, *grads


def slice_sum(
    sources: Sequence[torch.Tensor], shape: Sequence[int], terms: Sequence[SliceTerm]
) -> torch.Tensor:
    """A tensor of ``shape``, zero but for ``Σ_terms weight · sources[source][slices]`` added in.

    The terms are added in their order (the first is copied in: give the one that covers the
    most first). Differentiable in every source, by slice sums as well (see the module's doc).
    """
    shape = tuple(shape)
    if torch.is_grad_enabled() and any(source.requires_grad for source in sources):
        return _SliceSum.apply(shape, tuple(terms), *sources)
    return _slice_sum(sources, shape, terms)


def diagonal_shift_sum(
    volume: torch.Tensor,
    dims: tuple[int, int],
    shifts: Sequence[int],
    out_sizes: tuple[int, int],
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """``out[.., i, .., j, ..] = Σ_{d ∈ shifts} w_d · volume[.., i + d, .., j + d, ..]``, zeros outside.

    ``dims`` are the two axes shifted together and ``out_sizes`` their lengths in the output;
    ``weights`` (one per shift, in ``shifts``' order) default to 1. On a 2-D ``(i, j)`` image
    this is ``conv2d`` with a (weighted) identity kernel; it is written as shifted slices
    because a one-channel convolution over a multi-megapixel "image" is slow.
    """
    weight_of = dict(zip(shifts, weights, strict=True)) if weights is not None else {}
    shape = list(volume.shape)
    for dim, size in zip(dims, out_sizes, strict=True):
        shape[dim] = size
    terms = []
    # The unshifted term, which covers the most, comes first: slice_sum copies it in.
    for d in sorted(shifts, key=abs):
        slices = []
        for dim, size in zip(dims, out_sizes, strict=True):
            start, stop = max(0, -d), min(size, volume.shape[dim] - d)
            slices.append((dim, start, start + d, stop - start))
        if all(length > 0 for *_, length in slices):
            terms.append(SliceTerm(0, tuple(slices), weight_of.get(d, 1.0)))
    return slice_sum([volume], shape, terms)


#: Rows ``top … bottom − 1`` and columns ``left … right − 1`` of a grid
#: (:class:`inpaintkit.model.hole_window.Window` is one).
Box = tuple[int, int, int, int]


def grid_shift_slices(
    dims: tuple[int, int],
    shift: int,
    grid: tuple[int, int],
    column_major: bool,
    target: Box | None = None,
    source: Box | None = None,
) -> list[tuple[tuple[int, int, int, int], ...]]:
    """The slices (as in :class:`SliceTerm`) of a shift of a grid's flattened index.

    Position ``p`` of the ``grid = (height, width)`` grid reads position ``p + shift`` of the
    row-major (or ``column_major``) order, zeros beyond the grid's ends: a row's (column's)
    end wraps into the next one's start. ``target`` and ``source`` are the boxes of the grid
    that the target and the source tensors hold along ``dims = (y, x)`` (default: the whole
    grid); a target position whose source lies outside ``source`` reads zero. The flat
    shift is two plain 2-D shifts: of the positions whose fast coordinate does not wrap, and
    of those whose does.
    """
    height, width = grid
    whole = (0, height, 0, width)
    target, source = target or whole, source or whole
    fast_length = height if column_major else width
    carry, rest = divmod(shift, fast_length)
    runs = []
    for fast_start, fast_stop, fast_step, slow_step in (
        (0, fast_length - rest, rest, carry),
        (fast_length - rest, fast_length, rest - fast_length, carry + 1),
    ):
        top, bottom, left, right = target
        if column_major:
            dy, dx = fast_step, slow_step
            top, bottom = max(top, fast_start), min(bottom, fast_stop)
        else:
            dy, dx = slow_step, fast_step
            left, right = max(left, fast_start), min(right, fast_stop)
        # Keep the target positions whose source lies in the source box.
        top, bottom = max(top, source[0] - dy), min(bottom, source[1] - dy)
        left, right = max(left, source[2] - dx), min(right, source[3] - dx)
        if bottom > top and right > left:
            runs.append(
                (
                    (dims[0], top - target[0], top + dy - source[0], bottom - top),
                    (dims[1], left - target[2], left + dx - source[2], right - left),
                )
            )
    return runs
