"""PatchMatch as batched tensor operations, for CUDA (runs on any torch device).

The CPU kernels (:mod:`.cpu`) scan pixels one by one; a GPU wants every target patch updated
at once. So propagation becomes jump flooding (Rong & Tan 2006): each pass offers every
target the matches of its neighbours at distance ``s`` (shifted back by ``s``), for
``s = 2^k, ..., 2, 1``, which spreads a good match across ``2^(k+1)`` pixels in ``k+1``
vectorised steps. Random search draws one candidate per target and radius, all at once.
Patch distances are gathers of ``(K, P, C)`` blocks (``K`` targets, ``P = patch_size^2``),
chunked to bound memory. Voting gathers, for every hole pixel, the ``P`` proposals covering
it and reduces them in a fixed order, so results do not depend on atomic-add ordering.

Conventions match :mod:`.cpu`: images ``(H, W, C)`` in ``[0, 255]``; fields hold source
centres ``(y, x)``; distances are means over in-image target pixels of squared colour
differences summed over channels.
"""

from __future__ import annotations

import numpy as np
import torch

from inpaintkit.patchmatch.pyramid import dilate, valid_centres

#: Upper bound on gathered elements per chunk (floats), about 64 MB.
CHUNK_ELEMENTS = 1 << 24


class _Targets:
    """Index bookkeeping for ``K`` target patches of radius ``radius`` in an ``(H, W)`` image."""

    def __init__(self, targets: np.ndarray, radius: int, device: torch.device) -> None:
        self.height, self.width = targets.shape
        self.radius = radius
        ty, tx = np.nonzero(targets)
        self.ty = torch.from_numpy(ty).to(device)
        self.tx = torch.from_numpy(tx).to(device)
        grid = np.full(targets.shape, -1, dtype=np.int64)
        grid[ty, tx] = np.arange(ty.size)
        self.grid = torch.from_numpy(grid).to(device)  # (H, W): target index or -1
        span = torch.arange(-radius, radius + 1, device=device)
        self.dy = span.repeat_interleave(2 * radius + 1)  # (P,)
        self.dx = span.repeat(2 * radius + 1)

    def __len__(self) -> int:
        return self.ty.numel()

    def neighbour(self, oy: int, ox: int) -> torch.Tensor:
        """``(K,)`` index of the target at offset (oy, ox) from each target, -1 if none."""
        ny, nx = self.ty + oy, self.tx + ox
        inside = (ny >= 0) & (ny < self.height) & (nx >= 0) & (nx < self.width)
        found = self.grid[ny.clamp(0, self.height - 1), nx.clamp(0, self.width - 1)]
        return torch.where(inside, found, torch.full_like(found, -1))


def _distance(target, source, patches: _Targets, rows, cy, cx):
    """Distances for targets ``rows (M,)`` against source centres ``(cy, cx) (M,)``."""
    height, width, channels = target.shape
    src_w = source.shape[1]
    flat_target = target.reshape(-1, channels)
    flat_source = source.reshape(-1, channels)
    out = torch.empty(rows.numel(), dtype=target.dtype, device=target.device)
    step = max(1, CHUNK_ELEMENTS // (patches.dy.numel() * channels))
    for start in range(0, rows.numel(), step):
        r = rows[start : start + step]
        py = patches.ty[r, None] + patches.dy
        px = patches.tx[r, None] + patches.dx
        inside = (py >= 0) & (py < height) & (px >= 0) & (px < width)
        t_index = py.clamp(0, height - 1) * width + px.clamp(0, width - 1)
        s_index = (
            (cy[start : start + step, None] + patches.dy) * src_w
            + cx[start : start + step, None]
            + patches.dx
        )
        diff = flat_target[t_index] - flat_source[s_index]
        total = (diff * diff).sum(-1).mul_(inside).sum(-1)
        out[start : start + step] = total / inside.sum(-1)
    return out


def _search(target, source, patches: _Targets, valid, nnf, dist, iterations, generator, max_jump):
    """Improve ``nnf (K, 2)`` / ``dist (K,)`` in place: jump-flood propagation + random search."""
    src_h, src_w = valid.shape

    def offer(rows, cy, cx):
        inside = (cy >= 0) & (cy < src_h) & (cx >= 0) & (cx < src_w)
        ok = inside & valid[cy.clamp(0, src_h - 1), cx.clamp(0, src_w - 1)]
        ok &= (cy != nnf[rows, 0]) | (cx != nnf[rows, 1])
        rows, cy, cx = rows[ok], cy[ok], cx[ok]
        if rows.numel() == 0:
            return
        d = _distance(target, source, patches, rows, cy, cx)
        better = d < dist[rows]
        rows = rows[better]
        nnf[rows, 0] = cy[better]
        nnf[rows, 1] = cx[better]
        dist[rows] = d[better]

    everyone = torch.arange(len(patches), device=nnf.device)
    jumps = []
    jump = 1
    while jump <= max_jump:
        jumps.insert(0, jump)
        jump *= 2
    for _ in range(iterations):
        for jump in jumps:
            for oy, ox in ((jump, 0), (-jump, 0), (0, jump), (0, -jump)):
                n = patches.neighbour(oy, ox)
                has = n >= 0
                rows, n = everyone[has], n[has]
                offer(rows, nnf[n, 0] - oy, nnf[n, 1] - ox)
        radius = max(src_h, src_w)
        while radius >= 1:
            shift = torch.randint(
                -radius, radius + 1, (len(patches), 2), generator=generator, device=nnf.device
            )
            cand = nnf + shift
            offer(everyone, cand[:, 0].clamp(0, src_h - 1), cand[:, 1].clamp(0, src_w - 1))
            radius //= 2


def _initialise(target, source, patches: _Targets, valid, nnf_grid: np.ndarray, generator):
    """``(K, 2)`` field from the ``(H, W, 2)`` grid, invalid entries replaced at random; its distances."""
    device = target.device
    nnf = torch.from_numpy(nnf_grid).to(device)[patches.ty, patches.tx].long()
    src_h, src_w = valid.shape
    cy, cx = nnf[:, 0], nnf[:, 1]
    inside = (cy >= 0) & (cy < src_h) & (cx >= 0) & (cx < src_w)
    ok = inside & valid[cy.clamp(0, src_h - 1), cx.clamp(0, src_w - 1)]
    centres = valid.nonzero()
    pick = torch.randint(0, centres.shape[0], (len(patches),), generator=generator, device=device)
    nnf = torch.where(ok[:, None], nnf, centres[pick])
    rows = torch.arange(len(patches), device=device)
    return nnf, _distance(target, source, patches, rows, nnf[:, 0], nnf[:, 1])


def _to_grid(patches: _Targets, values: torch.Tensor, fill) -> np.ndarray:
    grid = torch.full(
        (patches.height, patches.width, *values.shape[1:]),
        fill,
        dtype=values.dtype,
        device=values.device,
    )
    grid[patches.ty, patches.tx] = values
    return grid.cpu().numpy()


def _vote(image, hole_pixels, patches: _Targets, nnf, dist, weight, best_only):
    """New values ``(Q, C)`` for the hole pixels ``(Q,)`` (flat indices), see :func:`.cpu.vote`."""
    height, width, channels = image.shape
    flat = image.reshape(-1, channels)
    out = torch.empty(hole_pixels.numel(), channels, dtype=image.dtype, device=image.device)
    step = max(1, CHUNK_ELEMENTS // (patches.dy.numel() * channels))
    for start in range(0, hole_pixels.numel(), step):
        q = hole_pixels[start : start + step]
        ty = (q // width)[:, None] - patches.dy  # covering patch centred at t = q - d
        tx = (q % width)[:, None] - patches.dx
        inside = (ty >= 0) & (ty < height) & (tx >= 0) & (tx < width)
        k = patches.grid[ty.clamp(0, height - 1), tx.clamp(0, width - 1)]
        covered = inside & (k >= 0)
        k = k.clamp(min=0)
        s_index = (nnf[k, 0] + patches.dy) * width + nnf[k, 1] + patches.dx
        s_index = torch.where(covered, s_index, torch.zeros_like(s_index))
        proposals = flat[s_index]  # (Q', P, C)
        if best_only:
            key = torch.where(covered, dist[k], torch.full_like(dist[k], float("inf")))
            choice = key.argmin(dim=1)
            out[start : start + step] = proposals[torch.arange(q.numel(), device=q.device), choice]
        else:
            w = torch.where(covered, weight[k], torch.zeros_like(weight[k]))
            out[start : start + step] = (proposals * w[..., None]).sum(1) / w.sum(1, keepdim=True)
    return out


def em_level(
    start: np.ndarray,
    hole: np.ndarray,
    nnf_grid: np.ndarray,
    radius: int,
    iterations: int,
    passes: int,
    seed: int,
    best_last: bool,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """One pyramid level of EM (search + vote) on ``device``; same contract as the numba path.

    ``start (H, W, C)`` float32 with a first guess in the hole; ``nnf_grid (H, W, 2)`` int32
    (``-1`` = unassigned). Returns the filled image and the field, both numpy.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    patches = _Targets(dilate(hole, radius), radius, device)
    valid = torch.from_numpy(valid_centres(hole, radius)).to(device)
    image = torch.from_numpy(np.ascontiguousarray(start)).to(device)
    hole_pixels = torch.from_numpy(np.flatnonzero(hole)).to(device)
    fresh = bool((nnf_grid < 0).all())
    # A random start needs long jumps; an upsampled field is already close everywhere.
    max_jump = max(hole.shape) // 2 if fresh else 8
    nnf, dist = _initialise(image, image, patches, valid, nnf_grid, generator)
    for step in range(iterations):
        if step > 0:
            rows = torch.arange(len(patches), device=device)
            dist = _distance(image, image, patches, rows, nnf[:, 0], nnf[:, 1])
        _search(image, image, patches, valid, nnf, dist, passes, generator, max_jump)
        sigma2 = torch.quantile(dist, 0.75) if dist.numel() > 0 else dist.new_zeros(())
        weight = (
            torch.exp(-dist / (2.0 * sigma2)).clamp_min(1e-30)
            if sigma2 > 0
            else torch.ones_like(dist)
        )
        values = _vote(
            image, hole_pixels, patches, nnf, dist, weight, best_last and step == iterations - 1
        )
        image = image.clone()
        image.reshape(-1, image.shape[2])[hole_pixels] = values
    return image.cpu().numpy(), _to_grid(patches, nnf.int(), -1)


def nearest_neighbor_field(
    target, source, targets, valid, nnf_grid, radius, iterations, seed, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Batched counterpart of :func:`.cpu.patchmatch` for :func:`..nearest_neighbor_field`."""
    generator = torch.Generator(device=device).manual_seed(seed)
    patches = _Targets(targets, radius, device)
    target_t = torch.from_numpy(np.ascontiguousarray(target)).to(device)
    source_t = torch.from_numpy(np.ascontiguousarray(source)).to(device)
    valid_t = torch.from_numpy(valid).to(device)
    nnf, dist = _initialise(target_t, source_t, patches, valid_t, nnf_grid, generator)
    _search(
        target_t,
        source_t,
        patches,
        valid_t,
        nnf,
        dist,
        iterations,
        generator,
        max(source.shape[:2]) // 2,
    )
    return _to_grid(patches, nnf.int(), -1), _to_grid(patches, dist, float("inf"))
