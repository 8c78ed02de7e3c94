"""Sums of shifted slices: the arithmetic under attention propagation and the stride-1 paths.

Contextual attention sums score (and attention) volumes along diagonals: term ``d`` of a sum
reads the volume shifted by ``d`` along two axes at once, zeros beyond the ends. Written as
shifted slices added in place rather than as convolutions or gathers, because the volumes
are hundreds of megabytes and every extra pass over them counts. Used by
:func:`inpaintkit.model.attention.propagate`, :func:`inpaintkit.model.hole_window.propagate_window`
and :mod:`inpaintkit.model.stride1`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def diagonal_shift_sum(
    volume: torch.Tensor,
    dims: tuple[int, int],
    shifts: range,
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
            weight = weight_of.get(d, 1.0)
            if initialised:
                target.add_(source, alpha=weight)
                continue
            target.copy_(source)
            if weight != 1.0:
                target.mul_(weight)
            for dim, start, stop, size in bounds:  # zero what the copied term does not cover
                out.narrow(dim, 0, start).zero_()
                out.narrow(dim, stop, size - stop).zero_()
            initialised = True
    return out if initialised else out.zero_()


def _column_major_shift(shift: int, height: int) -> list[tuple[int, int, int, int]]:
    """How a shift of column-major index ``x·height + y`` by ``shift`` splits into slices.

    Returns ``(y, source_y, length, carry)`` runs: rows ``y … y + length − 1`` take rows
    ``source_y …`` of column ``x + carry`` (the carry is where the shift wraps into another column).
    """
    carry, rest = divmod(shift, height)
    return [(0, rest, height - rest, carry), (height - rest, 0, rest, carry + 1)]


def column_major_views(
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
