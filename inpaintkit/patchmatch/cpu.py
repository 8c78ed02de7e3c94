"""PatchMatch kernels compiled for the CPU with numba (Barnes et al. 2009, sec. 3).

The search is the paper's scan: propagation from the already-visited neighbours (left/up on
even passes, right/down on odd ones) and a random search at exponentially shrinking radii
around the current best match. Within a band of ``BAND_ROWS`` rows the scan is sequential (that
order is what lets one good match spread along a row in a single pass); bands run in parallel,
even bands first and then odd ones, so no band ever reads a row another thread is writing.
Every band draws from its own random stream seeded by ``(seed, pass, band)``, so the result
does not depend on the number of threads. Voting (Wexler et al. 2007) is independent per
pixel, so it runs in parallel over rows.

Shapes: images ``float32 (H, W, C)`` in ``[0, 255]``; fields ``int32 (H, W, 2)`` of source
centres ``(y, x)``; distances ``float32 (H, W)``: mean over the target patch's in-image
pixels of the squared colour difference summed over channels.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Rows per independently seeded band of the parallel search. Fixed (not derived from the
#: thread count) so that results are identical on any machine.
BAND_ROWS = 8

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def _mix(z):
    """splitmix64's finaliser: a well-scrambled uint64 from a uint64."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _randint(state, n):
    """``(new_state, k)`` with ``k`` uniform in ``[0, n)`` (splitmix64 stream; n < 2^31)."""
    state = state + _GOLDEN
    return state, np.int64(_mix(state) % np.uint64(n))


@njit(cache=True)
def _stream(seed, step, band):
    """Start of the random stream for one band of one pass."""
    state = _mix(np.uint64(seed) + _GOLDEN * np.uint64(step + 1))
    return _mix(state ^ (_GOLDEN * np.uint64(band + 1)))


@njit(cache=True)
def _patch_distance(target, source, ty, tx, sy, sx, radius, limit):
    """Distance between the target patch at (ty, tx) and the source patch at (sy, sx).

    Target patches may stick out of the image (those pixels are skipped); source patches are
    always whole. Stops early, returning something >= ``limit``, once it cannot beat ``limit``.
    """
    height, width, channels = target.shape
    y0 = max(ty - radius, 0)
    y1 = min(ty + radius, height - 1)
    x0 = max(tx - radius, 0)
    x1 = min(tx + radius, width - 1)
    count = (y1 - y0 + 1) * (x1 - x0 + 1)
    budget = limit * count
    total = 0.0
    for y in range(y0, y1 + 1):
        oy = sy + y - ty
        for x in range(x0, x1 + 1):
            ox = sx + x - tx
            for c in range(channels):
                diff = target[y, x, c] - source[oy, ox, c]
                total += diff * diff
        if total >= budget:
            return total / count
    return total / count


@njit(cache=True)
def _try(target, source, valid, y, x, cy, cx, radius, best):
    """Distance of candidate (cy, cx) for target (y, x), or inf when it is not a valid centre."""
    if cy < 0 or cx < 0 or cy >= valid.shape[0] or cx >= valid.shape[1] or not valid[cy, cx]:
        return np.inf
    return _patch_distance(target, source, y, x, cy, cx, radius, best)


@njit(cache=True)
def _scan_band(
    target, source, targets, valid, nnf, dist, radius, rows, cols, step, search_radius, state
):
    """One propagation + random-search pass over rows ``rows = (r0, r1)`` of the target box.

    Returns the number of targets whose match improved.
    """
    height, width = targets.shape
    src_h, src_w = valid.shape
    r0, r1 = rows
    c0, c1 = cols
    improved = 0
    for i in range(r1 - r0):
        y = r0 + i if step == 1 else r1 - 1 - i
        for j in range(c1 - c0):
            x = c0 + j if step == 1 else c1 - 1 - j
            if not targets[y, x]:
                continue
            by = nnf[y, x, 0]
            bx = nnf[y, x, 1]
            best = dist[y, x]
            # Propagation: the neighbour's match, shifted back by one pixel.
            nx = x - step
            if 0 <= nx < width and targets[y, nx]:
                cy = nnf[y, nx, 0]
                cx = nnf[y, nx, 1] + step
                if cy != by or cx != bx:
                    d = _try(target, source, valid, y, x, cy, cx, radius, best)
                    if d < best:
                        best, by, bx = d, cy, cx
            ny = y - step
            if 0 <= ny < height and targets[ny, x]:
                cy = nnf[ny, x, 0] + step
                cx = nnf[ny, x, 1]
                if cy != by or cx != bx:
                    d = _try(target, source, valid, y, x, cy, cx, radius, best)
                    if d < best:
                        best, by, bx = d, cy, cx
            # Random search in windows of radius search_radius * 2^-k around the best.
            w = search_radius
            while w >= 1:
                state, oy = _randint(state, 2 * w + 1)
                state, ox = _randint(state, 2 * w + 1)
                cy = min(max(by + oy - w, 0), src_h - 1)
                cx = min(max(bx + ox - w, 0), src_w - 1)
                if cy != by or cx != bx:
                    d = _try(target, source, valid, y, x, cy, cx, radius, best)
                    if d < best:
                        best, by, bx = d, cy, cx
                w //= 2
            if by != nnf[y, x, 0] or bx != nnf[y, x, 1]:
                improved += 1
            nnf[y, x, 0] = by
            nnf[y, x, 1] = bx
            dist[y, x] = best
    return improved


@njit(cache=True, parallel=True)
def patchmatch(
    target, source, targets, valid, valid_ys, valid_xs, nnf, dist, radius, iterations, seed, box
):
    """Improve ``nnf``/``dist`` in place for every pixel where ``targets`` is True.

    ``valid (Hs, Ws)`` marks allowed source centres and ``(valid_ys, valid_xs)`` lists them (at
    least one); ``box = (y0, y1, x0, x1)`` bounds the targets (half-open), so the work scales
    with the hole's neighbourhood, not the image. Matches that are unassigned (-1) or invalid
    start from a uniformly random valid centre. Returns the number of improved matches over
    all passes (0: the field is a fixed point of this pass sequence).
    """
    src_h, src_w = valid.shape
    n_valid = valid_ys.shape[0]
    y0, y1, x0, x1 = box
    bands = (y1 - y0 + BAND_ROWS - 1) // BAND_ROWS
    for b in prange(bands):
        state = _stream(seed, 0, b)
        for y in range(y0 + b * BAND_ROWS, min(y0 + (b + 1) * BAND_ROWS, y1)):
            for x in range(x0, x1):
                if not targets[y, x]:
                    continue
                sy = nnf[y, x, 0]
                sx = nnf[y, x, 1]
                if sy < 0 or sx < 0 or sy >= src_h or sx >= src_w or not valid[sy, sx]:
                    state, k = _randint(state, n_valid)
                    sy = valid_ys[k]
                    sx = valid_xs[k]
                    nnf[y, x, 0] = sy
                    nnf[y, x, 1] = sx
                dist[y, x] = _patch_distance(target, source, y, x, sy, sx, radius, np.inf)
    search_radius = max(src_h, src_w)
    improved = 0
    for it in range(iterations):
        step = 1 if it % 2 == 0 else -1
        # Even bands, then odd ones: a band reads one row of each neighbouring band, which is
        # then never being written, so the outcome does not depend on thread scheduling.
        for parity in range(2):
            for half in prange((bands - parity + 1) // 2):
                b = 2 * half + parity
                r0 = y0 + b * BAND_ROWS
                r1 = min(r0 + BAND_ROWS, y1)
                improved += _scan_band(
                    target,
                    source,
                    targets,
                    valid,
                    nnf,
                    dist,
                    radius,
                    (r0, r1),
                    (x0, x1),
                    step,
                    search_radius,
                    _stream(seed, it + 1, b),
                )
    return improved


@njit(cache=True, parallel=True)
def vote(image, hole, targets, nnf, dist, weight, radius, best_only, out):
    """Write into ``out`` a new value for every hole pixel from the patches that cover it.

    Pixel q is covered by the target patches centred at t = q - d, |d| <= radius; each
    proposes the source pixel nnf[t] + d. ``best_only=False``: their ``weight``-ed mean
    (Wexler's similarity-weighted vote); ``True``: the proposal of the covering patch with
    the lowest distance, so every value is a copy of a known pixel.
    """
    height, width, channels = image.shape
    for y in prange(height):
        acc = np.zeros(channels, dtype=np.float64)
        for x in range(width):
            if not hole[y, x]:
                continue
            acc[:] = 0.0
            total = 0.0
            best = np.inf
            for dy in range(-radius, radius + 1):
                ty = y - dy
                if ty < 0 or ty >= height:
                    continue
                for dx in range(-radius, radius + 1):
                    tx = x - dx
                    if tx < 0 or tx >= width or not targets[ty, tx]:
                        continue
                    sy = nnf[ty, tx, 0] + dy
                    sx = nnf[ty, tx, 1] + dx
                    if best_only:
                        if dist[ty, tx] < best:
                            best = dist[ty, tx]
                            for c in range(channels):
                                acc[c] = image[sy, sx, c]
                            total = 1.0
                    else:
                        w = weight[ty, tx]
                        for c in range(channels):
                            acc[c] += w * image[sy, sx, c]
                        total += w
            for c in range(channels):
                out[y, x, c] = acc[c] / total
