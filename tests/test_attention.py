"""ContextualAttention against a plain loop-based reference written here from the definition."""

from __future__ import annotations

import math

import pytest
import torch

from inpaintkit.model import attention as attention_module
from inpaintkit.model.attention import (
    PASTE_WINDOWS,
    ContextualAttention,
    cosine_scores,
    propagate,
    reconstruct,
    valid_background,
)
from inpaintkit.model.hole_window import Window, hole_window, propagate_window, score_window

# ---------------------------------------------------------------------------------------------
# Naive reference: one sample at a time, explicit loops over positions and patches.
# ---------------------------------------------------------------------------------------------


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def ref_patch(small: torch.Tensor, y: int, x: int, k: int) -> torch.Tensor:
    """The k×k patch of ``small (C, h, w)`` centred at (y, x), zeros outside."""
    c, h, w = small.shape
    patch = torch.zeros(c, k, k, dtype=small.dtype)
    for a in range(k):
        for b in range(k):
            yy, xx = y + a - k // 2, x + b - k // 2
            if 0 <= yy < h and 0 <= xx < w:
                patch[:, a, b] = small[:, yy, xx]
    return patch


def ref_grids(height: int, width: int, rate: int, stride: int):
    h, w = ceil_div(height, rate), ceil_div(width, rate)
    fg_positions = [(y, x) for y in range(h) for x in range(w)]
    bh, bw = ceil_div(h, stride), ceil_div(w, stride)
    bg_positions = [(stride * ty, stride * tx) for ty in range(bh) for tx in range(bw)]
    return (h, w), (bh, bw), fg_positions, bg_positions


def ref_scores(fg: torch.Tensor, bg: torch.Tensor, rate: int, stride: int, k: int) -> torch.Tensor:
    """(Lf, Lb) scores of one sample: <fg patch, bg patch / max(|bg patch|, 1e-4)>."""
    _, height, width = fg.shape
    fg_small, bg_small = fg[:, ::rate, ::rate], bg[:, ::rate, ::rate]
    _, _, fg_pos, bg_pos = ref_grids(height, width, rate, stride)
    fg_patches = [ref_patch(fg_small, py, px, k) for py, px in fg_pos]
    bg_patches = [ref_patch(bg_small, qy, qx, k) for qy, qx in bg_pos]
    scores = torch.zeros(len(fg_pos), len(bg_pos), dtype=fg.dtype)
    for i, fp in enumerate(fg_patches):
        for j, bp in enumerate(bg_patches):
            norm = max(math.sqrt(float((bp * bp).sum())), 1e-4)
            scores[i, j] = (fp * bp).sum() / norm
    return scores


def ref_diagonal_sum(scores: torch.Tensor, kernel: int) -> torch.Tensor:
    lf, lb = scores.shape
    out = torch.zeros_like(scores)
    for i in range(lf):
        for j in range(lb):
            for d in range(-(kernel // 2), kernel // 2 + 1):
                if 0 <= i + d < lf and 0 <= j + d < lb:
                    out[i, j] += scores[i + d, j + d]
    return out


def ref_propagate(scores, fg_size, bg_size, kernel):
    """Released code's fusion: identity-kernel sums over row-major, then column-major indices."""
    (h, w), (bh, bw) = fg_size, bg_size
    lr = ref_diagonal_sum(scores, kernel)
    # Re-index to column-major: i' = x*h + y, j' = tx*bh + ty.
    colmajor = torch.zeros_like(lr)
    for y in range(h):
        for x in range(w):
            for ty in range(bh):
                for tx in range(bw):
                    colmajor[x * h + y, tx * bh + ty] = lr[y * w + x, ty * bw + tx]
    td = ref_diagonal_sum(colmajor, kernel)
    out = torch.zeros_like(td)
    for y in range(h):
        for x in range(w):
            for ty in range(bh):
                for tx in range(bw):
                    out[y * w + x, ty * bw + tx] = td[x * h + y, tx * bh + ty]
    return out


def ref_valid(hole: torch.Tensor, rate: int, stride: int, k: int) -> torch.Tensor:
    """(Lb,) 1 where the patch's feature-pixel footprint holds no hole pixel (hole (H, W))."""
    height, width = hole.shape
    _, _, _, bg_pos = ref_grids(height, width, rate, stride)
    valid = torch.ones(len(bg_pos), dtype=torch.float64)
    for j, (qy, qx) in enumerate(bg_pos):
        y0, x0 = rate * (qy - k // 2), rate * (qx - k // 2)
        y1, x1 = rate * (qy + k // 2 + 1), rate * (qx + k // 2 + 1)
        for y in range(max(y0, 0), min(y1, height)):
            for x in range(max(x0, 0), min(x1, width)):
                if hole[y, x] > 0.5:
                    valid[j] = 0.0
    return valid


def ref_softmax(scores: torch.Tensor, valid: torch.Tensor, scale: float) -> torch.Tensor:
    lf, lb = scores.shape
    masked = scores * valid
    out = torch.zeros_like(scores)
    for i in range(lf):
        exps = [math.exp(scale * float(masked[i, j])) for j in range(lb)]
        total = sum(exps)
        for j in range(lb):
            out[i, j] = exps[j] / total * valid[j]
    return out


def ref_patch_weight(a: int, rate: int, paste: str) -> float:
    """Weight of pixel ``a`` of a pasted 2r-pixel patch along one axis.

    Box: 1. Tent: 1 minus the distance, in blocks, from the pixel's centre ``a + 1/2`` to the
    centre of the patch's own block (pixels ``r // 2 … r // 2 + r − 1``).
    """
    if paste == "box":
        return 1.0
    own_block_centre = rate // 2 + rate / 2
    return 1.0 - abs(a + 0.5 - own_block_centre) / rate


def ref_reconstruct(attention, bg, rate, stride, paste="box"):
    """Sum 2r×2r raw patches (edge-replicated) weighted by attention; weighted overlap average."""
    c, height, width = bg.shape
    _, _, fg_pos, bg_pos = ref_grids(height, width, rate, stride)
    kernel, lead = 2 * rate, rate // 2
    out = torch.zeros(c, height, width, dtype=attention.dtype)
    count = torch.zeros(height, width, dtype=attention.dtype)
    for i, (py, px) in enumerate(fg_pos):
        for a in range(kernel):
            for b in range(kernel):
                y, x = rate * py - lead + a, rate * px - lead + b
                if not (0 <= y < height and 0 <= x < width):
                    continue
                weight = ref_patch_weight(a, rate, paste) * ref_patch_weight(b, rate, paste)
                count[y, x] += weight
                for j, (qy, qx) in enumerate(bg_pos):
                    sy = min(max(rate * qy - lead + a, 0), height - 1)
                    sx = min(max(rate * qx - lead + b, 0), width - 1)
                    out[:, y, x] += weight * attention[i, j] * bg[:, sy, sx]
    return out / count


def ref_forward(fg, bg, hole, *, rate, stride, k=3, fuse=True, kernel=3, scale=10.0, paste="box"):
    """Whole layer for one sample; hole (H, W) at feature resolution."""
    _, height, width = fg.shape
    fg_size, bg_size, _, _ = ref_grids(height, width, rate, stride)
    scores = ref_scores(fg, bg, rate, stride, k)
    if fuse:
        scores = ref_propagate(scores, fg_size, bg_size, kernel)
    valid = ref_valid(hole, rate, stride, k)
    attention = ref_softmax(scores, valid, scale)
    return ref_reconstruct(attention, bg, rate, stride, paste), attention


# ---------------------------------------------------------------------------------------------
# Helpers for the tests
# ---------------------------------------------------------------------------------------------


def random_case(n=2, c=3, height=9, width=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    fg = torch.randn(n, c, height, width, generator=gen, dtype=torch.float64)
    bg = torch.randn(n, c, height, width, generator=gen, dtype=torch.float64)
    mask = torch.zeros(n, 1, height, width, dtype=torch.float64)
    mask[0, :, 2:5, 3:7] = 1  # a rectangle
    mask[-1, :, 5:, 1:3] = 1  # touching the border
    mask[-1, :, 1, width - 2] = 1  # a single pixel (thin holes must not slip through the downscale)
    return fg, bg, mask


OPTIONS = [
    pytest.param(dict(rate=r, stride=s, fuse=f), id=f"rate{r}-stride{s}-fuse{int(f)}")
    for r in (1, 2)
    for s in (1, 2)
    for f in (True, False)
]


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate,stride,k", [(1, 1, 3), (2, 1, 3), (2, 2, 3), (3, 2, 3), (1, 1, 5)])
def test_cosine_scores_match_reference(rate, stride, k):
    fg, bg, _ = random_case(height=9, width=11)
    bg[1, :, :3, :3] = 0  # an all-zero background patch: the norm's epsilon must apply
    got = cosine_scores(fg[:, :, ::rate, ::rate], bg[:, :, ::rate, ::rate], k, stride)
    for n in range(fg.shape[0]):
        want = ref_scores(fg[n], bg[n], rate, stride, k)
        torch.testing.assert_close(got[n], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "kernel,fg_size,bg_size",
    [
        (3, (3, 4), (2, 5)),  # non-square, different grids: catches transposition slips
        (5, (3, 4), (2, 5)),
        (5, (1, 6), (4, 1)),  # shifts wrap across two columns, or have no column to wrap into
        (7, (2, 3), (3, 3)),
    ],
)
def test_propagation_matches_reference(kernel, fg_size, bg_size):
    gen = torch.Generator().manual_seed(1)
    lf, lb = fg_size[0] * fg_size[1], bg_size[0] * bg_size[1]
    scores = torch.randn(2, lf, lb, generator=gen, dtype=torch.float64)
    got = propagate(scores, fg_size, bg_size, kernel)
    for n in range(2):
        torch.testing.assert_close(got[n], ref_propagate(scores[n], fg_size, bg_size, kernel))


def test_propagation_equals_identity_kernel_convolution():
    """The released code's literal form: conv2d with an identity kernel, transpose, again."""
    gen = torch.Generator().manual_seed(2)
    (h, w), (bh, bw) = (2, 3), (3, 2)
    scores = torch.randn(1, h * w, bh * bw, generator=gen, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).view(1, 1, 3, 3)

    def conv(x):
        return torch.nn.functional.conv2d(x.reshape(1, 1, h * w, bh * bw), eye, padding=1)

    y = conv(scores).reshape(1, h, w, bh, bw).permute(0, 2, 1, 4, 3)
    y = conv(y).reshape(1, w, h, bw, bh).permute(0, 2, 1, 4, 3).reshape(1, h * w, bh * bw)
    torch.testing.assert_close(propagate(scores, (h, w), (bh, bw), 3), y)


@pytest.mark.parametrize("rate,stride", [(1, 1), (2, 1), (2, 2), (3, 1)])
def test_valid_background_matches_reference(rate, stride):
    _, _, mask = random_case(height=11, width=10)
    got = valid_background(mask.float(), rate, 3, stride)
    for n in range(mask.shape[0]):
        want = ref_valid(mask[n, 0], rate, stride, 3)
        torch.testing.assert_close(got[n, 0].double(), want)
    assert got.min() == 0 and got.max() == 1  # the case exercises both outcomes


@pytest.mark.parametrize("paste", PASTE_WINDOWS)
@pytest.mark.parametrize("rate,stride", [(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (4, 1)])
def test_reconstruction_matches_reference(rate, stride, paste):
    fg, bg, _ = random_case(height=9, width=8)
    _, _, fg_pos, bg_pos = ref_grids(9, 8, rate, stride)
    gen = torch.Generator().manual_seed(3)
    attention = torch.rand(2, len(fg_pos), len(bg_pos), generator=gen, dtype=torch.float64)
    got = reconstruct(attention, bg, (9, 8), rate, stride, paste=paste)
    for n in range(2):
        want = ref_reconstruct(attention[n], bg[n], rate, stride, paste)
        torch.testing.assert_close(got[n], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("paste", PASTE_WINDOWS)
def test_reconstruction_of_a_constant_background_is_that_constant_everywhere(paste):
    """Overlap averaging must use the real coverage count: borders are not darkened."""
    bg = torch.full((1, 2, 10, 12), 0.7, dtype=torch.float64)
    _, _, fg_pos, bg_pos = ref_grids(10, 12, 2, 1)
    attention = torch.full((1, len(fg_pos), len(bg_pos)), 1.0 / len(bg_pos), dtype=torch.float64)
    out = reconstruct(attention, bg, (10, 12), 2, 1, paste=paste)
    torch.testing.assert_close(out, bg)


@pytest.mark.parametrize("paste", PASTE_WINDOWS)
def test_a_coherent_paste_is_the_shifted_background_for_both_windows(paste):
    """Every block copying the block (1, 2) blocks away pastes the background shifted by that.

    Both windows' weights sum to 1 over a pixel's covering patches, so they differ only where
    neighbouring blocks copy unrelated patches.
    """
    gen = torch.Generator().manual_seed(5)
    bg = torch.randn(1, 3, 12, 16, generator=gen, dtype=torch.float64)
    (h, w), _, fg_pos, bg_pos = ref_grids(12, 16, 2, 1)
    attention = torch.zeros(1, len(fg_pos), len(bg_pos), dtype=torch.float64)
    for i, (py, px) in enumerate(fg_pos):
        attention[0, i, min(py + 1, h - 1) * w + min(px + 2, w - 1)] = 1.0
    out = reconstruct(attention, bg, (12, 16), 2, 1, paste=paste)
    # Away from the last blocks (clamped) and the image border (fewer covering patches).
    torch.testing.assert_close(out[..., 1:8, 1:10], bg[..., 3:10, 5:14])


def test_tent_paste_has_no_step_at_the_block_centre():
    """Blocks copying unrelated constant patches: the box steps inside each block, the tent ramps.

    Along a row, block ``X`` copies a patch of constant value ``v_X``. The box makes the
    block's two pixels the means of ``(v_{X−1}, v_X)`` and ``(v_X, v_{X+1})``; the tent makes
    them ``¾ v_X + ¼`` of the nearer neighbour, so the pixels change linearly between block
    centres.
    """
    values = torch.tensor([0.0, 4.0, -4.0, 8.0, 1.0, 5.0], dtype=torch.float64)
    # Regions of 3 blocks (6 px) of one value: the 4-pixel patch of a region's centre block
    # is that constant.
    bg = values.repeat_interleave(6).expand(1, 1, 2, 36).clone()
    _, _, fg_pos, bg_pos = ref_grids(2, 36, 2, 1)
    order = [3, 0, 5, 2, 4, 1]  # foreground block X copies region order[X % 6]
    attention = torch.zeros(1, len(fg_pos), len(bg_pos), dtype=torch.float64)
    for i, (_, px) in enumerate(fg_pos):
        attention[0, i, 3 * order[px % 6] + 1] = 1.0
    copied = values[order * 3]
    row = {p: reconstruct(attention, bg, (2, 36), 2, 1, paste=p)[0, 0, 0] for p in PASTE_WINDOWS}
    for x in range(1, 17):  # interior blocks
        left, own, right = copied[x - 1], copied[x], copied[x + 1]
        assert row["box"][2 * x] == pytest.approx((left + own) / 2)
        assert row["box"][2 * x + 1] == pytest.approx((own + right) / 2)
        assert row["tent"][2 * x] == pytest.approx(0.75 * own + 0.25 * left)
        assert row["tent"][2 * x + 1] == pytest.approx(0.75 * own + 0.25 * right)


# ---------------------------------------------------------------------------------------------
# Whole layer
# ---------------------------------------------------------------------------------------------


def ref_hole_forward(fg, bg, hole, **options):
    """``foreground="hole"`` by definition: the reference reconstruction in the hole, fg elsewhere."""
    full, _ = ref_forward(fg, bg, hole, **options)
    return torch.where(hole > 0.5, full, fg)


@pytest.mark.parametrize("options", OPTIONS)
def test_forward_matches_reference(options):
    fg, bg, mask = random_case(height=9, width=10)
    layer = ContextualAttention(**options, foreground="all")
    got = layer(fg, bg, mask)
    assert got.dtype == torch.float64 and got.shape == fg.shape
    for n in range(fg.shape[0]):
        want, _ = ref_forward(fg[n], bg[n], mask[n, 0], **options)
        torch.testing.assert_close(got[n], want, rtol=0, atol=1e-12)


def small_interior_holes(n, height, width):
    """Two small holes away from the border: the hole window is smaller than the grid."""
    mask = torch.zeros(n, 1, height, width, dtype=torch.float64)
    mask[0, :, 3:5, 4:6] = 1
    mask[-1, :, 5:7, 3:5] = 1
    return mask


@pytest.mark.parametrize(
    "options,holes",
    [(option.values[0], "interior") for option in OPTIONS]
    + [(dict(rate=r, stride=1, fuse=True), "border") for r in (1, 2)]
    + [(dict(rate=2, stride=s, fuse=True, paste="tent"), "interior") for s in (1, 2)]
    + [(dict(rate=2, stride=1, fuse=True, paste="tent"), "border")],
)
def test_hole_mode_matches_restricted_reference(options, holes):
    fg, bg, mask = random_case(height=9, width=10, seed=16)
    if holes == "interior":
        mask = small_interior_holes(2, 9, 10)
        grid = (ceil_div(9, options["rate"]), ceil_div(10, options["rate"]))
        if options["rate"] == 1:  # the case really exercises a partial window
            assert hole_window(mask.float(), 1, grid).size < grid
    layer = ContextualAttention(**options)  # foreground="hole" is the default
    got = layer(fg, bg, mask)
    assert got.dtype == torch.float64 and got.shape == fg.shape
    for n in range(fg.shape[0]):
        want = ref_hole_forward(fg[n], bg[n], mask[n, 0], **options)
        torch.testing.assert_close(got[n], want, rtol=0, atol=1e-12)
        known = mask[n].expand_as(fg[n]) < 0.5
        assert torch.equal(got[n][known], fg[n][known])  # a selection: bit-exact copies


@pytest.mark.parametrize("mode", ["all", "hole"])
def test_forward_with_the_generator_call_pattern(mode):
    """Foreground and background are the same tensor in the generator; 8×12, rate 2."""
    fg, _, mask = random_case(height=8, width=12, seed=4)
    got = ContextualAttention(foreground=mode)(fg, fg, mask)
    reference = ref_forward if mode == "all" else ref_hole_forward
    for n in range(fg.shape[0]):
        want = reference(fg[n], fg[n], mask[n, 0], rate=2, stride=1)
        want = want[0] if mode == "all" else want
        torch.testing.assert_close(got[n], want, rtol=0, atol=1e-12)


EDGE_BOXES = [
    (0, 3, 0, 4),  # top-left corner: both wrap-arounds of propagation
    (6, 10, 9, 14),  # interior
    (17, 20, 21, 26),  # bottom-right corner
    (0, 20, 3, 6),  # a full-height stripe
    (7, 12, 0, 3),  # left edge: left-right steps wrap into the previous row's end
    (3, 8, 24, 26),  # right edge
    (1, 2, 12, 13),  # one pixel next to the top: top-down steps wrap into the previous column
]


@pytest.mark.parametrize("box", EDGE_BOXES)
@pytest.mark.parametrize("rate,kernel,stride", [(1, 3, 1), (2, 3, 1), (1, 5, 1), (2, 5, 2)])
def test_hole_mode_equals_all_mode_inside_the_hole(box, rate, kernel, stride):
    """Every hole position gets the same sums as in "all" mode, wherever the hole lies.

    The windows are computed from the sources propagation really reads (wrap-around
    included), so no hole position is near a window edge it could feel. The two modes run
    the same additions in the same order; only the matrix products' internal summation may
    differ with the matrix shape (not observed at these sizes in float64).
    """
    fg, bg, _ = random_case(n=2, c=3, height=20, width=26, seed=17)
    mask = torch.zeros(2, 1, 20, 26, dtype=torch.float64)
    top, bottom, left, right = box
    mask[0, :, top:bottom, left:right] = 1
    options = dict(rate=rate, stride=stride, propagate_size=kernel)
    want, want_offsets = ContextualAttention(**options, foreground="all")(
        fg, bg, mask, return_offsets=True
    )
    got, offsets = ContextualAttention(**options)(fg, bg, mask, return_offsets=True)
    hole = mask.expand_as(fg) > 0.5
    torch.testing.assert_close(got[hole], want[hole], rtol=0, atol=1e-12)
    assert torch.equal(got[~hole], fg[~hole])
    assert torch.equal(offsets, want_offsets)
    assert (got[1] == fg[1]).all()  # sample 1 has no hole at all


@pytest.mark.parametrize(
    "fg_size,bg_size,kernel",
    [((7, 9), (7, 9), 3), ((7, 9), (4, 5), 3), ((8, 6), (8, 6), 5), ((6, 7), (3, 3), 7)],
)
@pytest.mark.parametrize(
    "target", [Window(2, 4, 3, 6), Window(0, 2, 0, 3), Window(5, 6, 4, 6), Window(1, 5, 0, 1)]
)
def test_propagate_window_matches_reference_rows(fg_size, bg_size, kernel, target):
    """Windowed propagation == the reference's rows for the target, from the score window only."""
    gen = torch.Generator().manual_seed(18)
    hf, wf = fg_size
    lb = bg_size[0] * bg_size[1]
    scores = torch.randn(2, hf * wf, lb, generator=gen, dtype=torch.float64)
    scored_window = score_window(target, fg_size, kernel)
    rows = scored_window.flat(wf)
    # Only the score window's rows are passed: anything else it read would be out of range.
    got = propagate_window(scores[:, rows], scored_window, target, fg_size, bg_size, kernel)
    for n in range(2):
        want = ref_propagate(scores[n], fg_size, bg_size, kernel)[target.flat(wf)]
        torch.testing.assert_close(got[n], want, rtol=0, atol=1e-12)


def test_score_window_is_the_dilated_target_away_from_edges_and_grows_at_edges():
    assert score_window(Window(4, 7, 5, 9), (20, 20), 3) == Window(3, 8, 4, 10)
    assert score_window(Window(4, 7, 5, 9), (20, 20), 5) == Window(2, 9, 3, 11)
    assert score_window(Window(4, 7, 5, 9), (20, 20), 1) == Window(4, 7, 5, 9)
    # Top row: top-down steps wrap into the previous column's bottom.
    assert score_window(Window(0, 3, 5, 9), (20, 20), 3) == Window(0, 20, 3, 10)
    # Left column: left-right steps wrap into the previous row's end.
    assert score_window(Window(4, 7, 0, 3), (20, 20), 3) == Window(2, 8, 0, 20)


def test_hole_window_is_the_batch_union_of_hole_boxes_dilated_by_one_block():
    hole = torch.zeros(3, 1, 32, 40)
    hole[0, :, 10:12, 8:9] = 1  # blocks (5, 4) at rate 2
    hole[2, :, 14:15, 20:26] = 1  # blocks (7, 10 … 12)
    assert hole_window(hole, 2, (16, 20)) == Window(4, 9, 3, 14)
    hole[1, :, 31, 39] = 1  # last block: clipped to the grid
    assert hole_window(hole, 2, (16, 20)) == Window(4, 16, 3, 20)
    assert hole_window(torch.zeros(2, 1, 8, 8), 2, (4, 4)) is None


def test_attention_never_lands_on_a_patch_touching_the_hole():
    fg, bg, mask = random_case(height=10, width=10, seed=5)
    _, out_attention = ref_forward(fg[0], bg[0], mask[0, 0], rate=2, stride=1)
    valid = ref_valid(mask[0, 0], 2, 1, 3)
    # The reference itself: all weight of invalid patches is exactly zero.
    assert (out_attention[:, valid == 0] == 0).all()
    # The layer: a huge value in the hole must not leak into any output pixel, because no
    # patch touching the hole is pasted (valid patches exclude every hole pixel).
    poisoned = bg.clone()
    poisoned[mask.expand_as(bg) > 0.5] = 1e6
    layer = ContextualAttention(rate=2, stride=1)
    clean_fg = fg.clone()
    out = layer(clean_fg, poisoned, mask)
    assert out.abs().max() < 100


def test_mask_at_image_resolution_is_resized_by_nearest():
    fg, bg, mask = random_case(height=8, width=10, seed=6)
    big = mask.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # 32×40 image mask
    layer = ContextualAttention()
    torch.testing.assert_close(layer(fg, bg, big), layer(fg, bg, mask))


def test_no_hole_and_all_hole():
    fg, bg, _ = random_case(height=8, width=9, seed=7)
    layer = ContextualAttention(foreground="all")
    no_hole = torch.zeros(2, 1, 8, 9, dtype=torch.float64)
    out, offsets = layer(fg, bg, no_hole, return_offsets=True)
    for n in range(2):
        want, _ = ref_forward(fg[n], bg[n], no_hole[n, 0], rate=2, stride=1)
        torch.testing.assert_close(out[n], want)
    assert (offsets == 0).all()
    # Sample 1 has no valid background patch: documented fallback is zeros, not NaN.
    mask = no_hole.clone()
    mask[1] = 1
    out, offsets = layer(fg, bg, mask, return_offsets=True)
    assert torch.isfinite(out).all()
    assert (out[1] == 0).all() and (offsets[1] == 0).all()
    torch.testing.assert_close(out[0], layer(fg[:1], bg[:1], mask[:1])[0])


def test_hole_mode_without_a_hole_returns_the_foreground_and_does_no_work(monkeypatch):
    fg, bg, _ = random_case(height=8, width=9, seed=7)

    def fail(*args, **kwargs):
        raise AssertionError("scores computed although there is no hole")

    monkeypatch.setattr(attention_module, "cosine_scores", fail)
    out, offsets = ContextualAttention()(fg, bg, torch.zeros(2, 1, 8, 9), return_offsets=True)
    assert torch.equal(out, fg)
    assert offsets.dtype == torch.int64 and offsets.shape == (2, 2, 8, 9)
    assert (offsets == 0).all()


def test_hole_mode_all_hole_equals_all_mode():
    """An all-hole sample makes the window the whole grid; its output is the fallback zeros."""
    fg, bg, mask = random_case(height=8, width=9, seed=7)
    mask[1] = 1
    want, want_offsets = ContextualAttention(foreground="all")(fg, bg, mask, return_offsets=True)
    got, offsets = ContextualAttention()(fg, bg, mask, return_offsets=True)
    assert (got[1] == 0).all() and (offsets[1] == 0).all()
    hole = mask.expand_as(fg) > 0.5
    torch.testing.assert_close(got[hole], want[hole], rtol=0, atol=1e-12)
    assert torch.equal(got[~hole], fg[~hole])
    assert torch.equal(offsets, want_offsets)


@pytest.mark.parametrize("mode", ["all", "hole"])
def test_batch_independence(mode):
    fg, bg, mask = random_case(n=3, height=8, width=8, seed=8)
    if mode == "hole":  # sample 0's small hole; the others' holes set the union window
        mask[0] = 0
        mask[0, :, 3:5, 2:4] = 1
    layer = ContextualAttention(foreground=mode)
    before = layer(fg, bg, mask)
    fg2, bg2, mask2 = fg.clone(), bg.clone(), mask.clone()
    fg2[1:] = torch.randn_like(fg2[1:])
    bg2[1:] = torch.randn_like(bg2[1:]) * 5
    mask2[1:] = 1 - mask2[1:]
    after = layer(fg2, bg2, mask2)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=1e-12)
    assert not torch.allclose(after[1:], before[1:])
    # And sample 0 alone (a smaller window in "hole" mode) gives the same answer as in the batch.
    torch.testing.assert_close(layer(fg[:1], bg[:1], mask[:1])[0], before[0], rtol=0, atol=1e-12)


def test_broadcast_mask_equals_repeated_mask():
    fg, bg, mask = random_case(n=2, height=8, width=8, seed=9)
    layer = ContextualAttention()
    torch.testing.assert_close(
        layer(fg, bg, mask[:1]), layer(fg, bg, mask[:1].expand(2, -1, -1, -1))
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(rate=2, stride=1, fuse=True, foreground="all"),
        dict(rate=1, stride=2, fuse=False, foreground="all"),
        dict(rate=1, stride=1, fuse=True, foreground="hole"),
        dict(rate=1, stride=2, fuse=False, foreground="hole"),
        dict(rate=2, stride=1, fuse=True, foreground="hole", paste="tent"),
        dict(rate=2, stride=2, fuse=False, foreground="all", paste="tent"),
    ],
)
def test_gradcheck(options):
    fg, bg, mask = random_case(n=1, c=2, height=6, width=5, seed=10)
    if options["rate"] == 1 and options["foreground"] == "hole":
        mask = torch.zeros_like(mask)
        mask[..., 2:4, 2:3] = 1  # a window smaller than the grid
    layer = ContextualAttention(softmax_scale=2.0, **options)  # milder scale: better-conditioned
    fg.requires_grad_(True)
    bg.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f, b: layer(f, b, mask), (fg, bg))


@pytest.mark.parametrize(
    "options",
    [dict(rate=2, stride=1), dict(rate=2, stride=2, fuse=False), dict(rate=2, paste="tent")],
)
def test_autograd_path_equals_inference_path(options):
    """Without autograd the layer works in place; with it, out of place: same numbers."""
    fg, bg, mask = random_case(n=2, c=3, height=10, width=8, seed=15)
    layer = ContextualAttention(**options)
    with torch.no_grad():
        want, want_offsets = layer(fg, bg, mask, return_offsets=True)
    got, offsets = layer(fg.requires_grad_(True), bg, mask, return_offsets=True)
    assert got.requires_grad
    torch.testing.assert_close(got.detach(), want, rtol=0, atol=0)
    assert torch.equal(offsets, want_offsets)


def test_bfloat16_close_to_float32():
    fg, bg, mask = random_case(n=2, c=4, height=12, width=12, seed=11)
    layer = ContextualAttention()
    want = layer(fg.float(), bg.float(), mask)
    got = layer(fg.bfloat16(), bg.bfloat16(), mask)
    assert got.dtype == torch.bfloat16
    assert torch.isfinite(got.float()).all()
    # bf16 has an 8-bit mantissa; λ=10 sharpens score noise, so compare loosely on average.
    assert (got.float() - want).abs().mean() < 0.1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    fg, bg, mask = random_case(n=2, c=4, height=12, width=12, seed=12)
    layer = ContextualAttention()
    want = layer(fg, bg, mask)
    got = layer(fg.cuda(), bg.cuda(), mask.cuda())
    torch.testing.assert_close(got.cpu(), want)


def test_bad_inputs_raise_clear_errors():
    layer = ContextualAttention()
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="background shape"):
        layer(x, torch.zeros(2, 3, 8, 9), torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="mask must be"):
        layer(x, x, torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="patch_size"):
        ContextualAttention(patch_size=4)
    with pytest.raises(ValueError, match="foreground must be one of"):
        ContextualAttention(foreground="known")


# ---------------------------------------------------------------------------------------------
# Offsets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, 2])
def test_offsets_point_at_the_unique_matching_patch(rate):
    """A hole whose content is an exact copy of one distinctive background region."""
    height, width, c = 12 * rate, 12 * rate, 4
    gen = torch.Generator().manual_seed(13)
    small = torch.randn(1, c, 12, 12, generator=gen) * 0.05  # bland background
    source = torch.randn(1, c, 3, 3, generator=gen) * 3.0  # a distinctive 3×3 pattern
    small[:, :, 1:4, 7:10] = source  # background copy, block centre (2, 8)
    small[:, :, 7:10, 2:5] = source  # hole copy, block centre (8, 3)
    features = small.repeat_interleave(rate, dim=2).repeat_interleave(rate, dim=3)
    mask = torch.zeros(1, 1, height, width)
    mask[:, :, 6 * rate : 11 * rate, 1 * rate : 6 * rate] = 1
    layer = ContextualAttention(rate=rate, fuse=False, softmax_scale=10.0)
    _, offsets = layer(features, features, mask, return_offsets=True)
    assert offsets.dtype == torch.int64 and offsets.shape == (1, 2, height, width)
    centre = offsets[0, :, 8 * rate, 3 * rate]
    assert centre.tolist() == [(2 - 8) * rate, (8 - 3) * rate]
    assert (offsets[0][:, mask[0, 0] < 0.5] == 0).all()  # zero at known positions


def test_offsets_follow_the_argmax_of_the_reference_attention():
    fg, bg, mask = random_case(n=2, height=10, width=10, seed=14)
    layer = ContextualAttention(rate=2, stride=2)
    _, offsets = layer(fg, bg, mask, return_offsets=True)
    _, _, fg_pos, bg_pos = ref_grids(10, 10, 2, 2)
    for n in range(2):
        _, attention = ref_forward(fg[n], bg[n], mask[n, 0], rate=2, stride=2)
        for y in range(10):
            for x in range(10):
                i = fg_pos.index((y // 2, x // 2))
                qy, qx = bg_pos[int(attention[i].argmax())]
                want = [2 * (qy - y // 2), 2 * (qx - x // 2)] if mask[n, 0, y, x] else [0, 0]
                assert offsets[n, :, y, x].tolist() == want


def test_attention_map_is_the_reference_attention_and_none_without_a_hole():
    fg, bg, mask = random_case(n=2, height=10, width=10, seed=21)
    layer = ContextualAttention(rate=2, stride=1, foreground="all")
    attended = layer.attention_map(fg, bg, mask)
    assert attended.grid == (5, 5) and attended.background_width == 5
    for n in range(2):
        _, want = ref_forward(fg[n], bg[n], mask[n, 0], rate=2, stride=1)
        torch.testing.assert_close(attended.weights[n], want.to(attended.weights.dtype))
    # "hole" mode matches only the hole's window, and nothing at all without a hole.
    holey = ContextualAttention(rate=2, stride=1).attention_map(fg[:1], bg[:1], mask[:1])
    assert holey.weights.shape[1] == holey.window.size[0] * holey.window.size[1] < 25
    assert ContextualAttention().attention_map(fg, bg, torch.zeros_like(mask)) is None
