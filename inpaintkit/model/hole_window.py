"""The hole window of contextual attention (``foreground="hole"``): which part of the grid to compute.

§4.1 matches the *foreground* patches, the missing region, against the background. With
``ContextualAttention(foreground="hole")`` scores, propagation, softmax and reconstruction run
over a :class:`Window` of the matching grid only: :func:`hole_window`, the union over the batch
of the hole's bounding box dilated by one block, for the reconstruction; :func:`score_window`,
that window grown by every position propagation reads for it (wrap-around included), for the
scores; and :func:`propagate_window`, propagation for the window's rows alone, term by term
the full propagation's. docs/model.md, "Contextual attention", has the reasoning and the
measurements.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from inpaintkit.model.shifted_sums import SliceTerm, grid_shift_slices, slice_sum


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


def hole_window(hole: torch.Tensor, rate: int, grid: tuple[int, int]) -> Window | None:
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


def score_window(target: Window, grid: tuple[int, int], kernel: int) -> Window:
    """The bounding box of every foreground position propagation reads for ``target``.

    Away from the grid's edges that is ``target`` dilated by ``kernel // 2`` rows (top-down
    steps) and ``kernel // 2`` columns (left-right steps). Within ``kernel // 2`` of an edge
    the released wrap-around reads the previous or next column's far end (top-down) or row's
    far end (left-right), and the box grows to include it: then it spans the grid's height
    or width, which costs time but keeps the sums exact.
    """
    if kernel <= 1:
        return target
    sources = propagation_sources(target.flat(grid[1]), grid, kernel)
    ys, xs = sources // grid[1], sources % grid[1]
    return Window(int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)


def propagation_sources(flat: torch.Tensor, grid: tuple[int, int], kernel: int) -> torch.Tensor:
    """Row-major indices of every foreground position whose score propagation reads at ``flat``.

    Propagation (:func:`~inpaintkit.model.attention.propagate`) sums scores ``kernel // 2`` steps away along the
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
    scored_window: Window,
    target: Window,
    fg_size: tuple[int, int],
    bg_size: tuple[int, int],
    kernel: int,
) -> torch.Tensor:
    """:func:`~inpaintkit.model.attention.propagate` for the foreground positions of ``target`` only.

    ``scores (N, |scored_window|, Lb)`` hold the foreground positions of ``scored_window``
    (row-major inside it) against every background position of the ``bg_size`` grid;
    ``fg_size`` is the full foreground grid. Returns ``(N, |target|, Lb)``, equal term by
    term (same additions in the same order) to the rows of ``propagate`` on the full volume
    for every target position whose propagation sources (:func:`propagation_sources`, two
    steps deep) lie in ``scored_window``. Every step is a shifted slice of the window
    (:func:`~inpaintkit.model.shifted_sums.grid_shift_slices`), with the released row and
    column wrap-around; a step that leaves the score window reads zero.
    """
    n, _, lb = scores.shape
    (hs, ws), (ht, wt), (hb, wb) = scored_window.size, target.size, bg_size
    shifts = sorted(range(-(kernel // 2), kernel // 2 + 1), key=abs)  # as diagonal_shift_sum
    # Left-right over the whole score window: row-major steps of foreground and background.
    terms = []
    for d in shifts:
        start, stop = max(0, -d), min(lb, lb - d)
        if stop > start:
            background = (3, start, start + d, stop - start)
            for foreground in grid_shift_slices(
                (1, 2), d, fg_size, column_major=False, target=scored_window, source=scored_window
            ):
                terms.append(SliceTerm(0, (*foreground, background)))
    left_right = slice_sum([scores.view(n, hs, ws, lb)], (n, hs, ws, lb), terms)
    # Top-down for the target: column-major steps of foreground and background.
    terms = []
    for d in [0, *(d for d in range(-(kernel // 2), kernel // 2 + 1) if d)]:  # as propagate
        for foreground in grid_shift_slices(
            (1, 2), d, fg_size, column_major=True, target=target, source=scored_window
        ):
            for background in grid_shift_slices((3, 4), d, bg_size, column_major=True):
                terms.append(SliceTerm(0, foreground + background))
    volume = left_right.view(n, hs, ws, hb, wb)
    return slice_sum([volume], (n, ht, wt, hb, wb), terms).view(n, ht * wt, lb)
