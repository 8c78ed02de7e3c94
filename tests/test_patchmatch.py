"""PatchMatch inpainting: kernels against brute-force references, and the fill's guarantees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from inpaintkit.masks import MaskConfig, generate_mask
from inpaintkit.patchmatch import batched, cpu, nearest_neighbor_field, patchmatch_inpaint
from inpaintkit.patchmatch.pyramid import (
    build_pyramid,
    dilate,
    downsample,
    onion_peel_fill,
    upsample_nnf,
    valid_centres,
)

BACKENDS = ["numba", "torch"]


# ---------------------------------------------------------------- plain references


def reference_distance(target, source, ty, tx, sy, sx, radius):
    """Mean over the target patch's in-image pixels of the channel-summed squared difference."""
    total, count = 0.0, 0
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            y, x = ty + dy, tx + dx
            if 0 <= y < target.shape[0] and 0 <= x < target.shape[1]:
                diff = target[y, x].astype(np.float64) - source[sy + dy, sx + dx]
                total += float((diff * diff).sum())
                count += 1
    return total / count


def brute_force_nnf(target, source, radius, valid=None):
    """Minimum distance over every allowed source centre, for every target pixel."""
    src_h, src_w = source.shape[:2]
    if valid is None:
        valid = valid_centres(np.zeros((src_h, src_w), dtype=bool), radius)
    best = np.full(target.shape[:2], np.inf)
    for ty in range(target.shape[0]):
        for tx in range(target.shape[1]):
            for sy, sx in zip(*np.nonzero(valid), strict=True):
                best[ty, tx] = min(
                    best[ty, tx], reference_distance(target, source, ty, tx, sy, sx, radius)
                )
    return best


def reference_vote(image, hole, targets, nnf, dist, weight, radius, best_only):
    out = image.astype(np.float64).copy()
    for y, x in zip(*np.nonzero(hole), strict=True):
        total, acc, best = 0.0, np.zeros(image.shape[2]), np.inf
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                ty, tx = y - dy, x - dx
                if not (0 <= ty < hole.shape[0] and 0 <= tx < hole.shape[1]) or not targets[ty, tx]:
                    continue
                value = image[nnf[ty, tx, 0] + dy, nnf[ty, tx, 1] + dx]
                if best_only:
                    if dist[ty, tx] < best:
                        best, acc, total = dist[ty, tx], value.astype(np.float64), 1.0
                else:
                    acc = acc + weight[ty, tx] * value
                    total += weight[ty, tx]
        out[y, x] = acc / total
    return out


def random_field(hole, targets, radius, rng):
    """A valid random field: every target gets a random valid source centre."""
    valid = valid_centres(hole, radius)
    ys, xs = np.nonzero(valid)
    pick = rng.integers(0, ys.size, size=hole.shape)
    nnf = np.stack([ys[pick], xs[pick]], axis=-1).astype(np.int32)
    nnf[~targets] = -1
    return nnf


def textured(height, width, seed=0):
    """A smooth-ish RGB test picture cut from a bundled photo (not noise, so matches are meaningful)."""
    photo = data.coffee()
    return np.ascontiguousarray(
        photo[100 + seed : 100 + seed + 4 * height : 4, 100 : 100 + 4 * width : 4]
    )


# ---------------------------------------------------------------- nearest-neighbour field


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("patch_size", [3, 5])
def test_shifted_copy_converges_to_brute_force(backend, patch_size):
    rng = np.random.default_rng(1)
    source = rng.integers(0, 256, size=(13, 12, 3)).astype(np.float32)
    target = source[3:11, 2:10]  # a shifted copy: every target patch has an exact match
    radius = patch_size // 2
    nnf, dist = nearest_neighbor_field(
        target, source, patch_size, iterations=4, seed=0, backend=backend
    )
    expected = brute_force_nnf(target, source, radius)
    assert np.allclose(expected, 0.0)
    np.testing.assert_allclose(dist, expected, atol=1e-4)
    interior = np.s_[radius:-radius, radius:-radius]
    ys, xs = np.mgrid[0:8, 0:8]
    np.testing.assert_array_equal(nnf[..., 0][interior], (ys + 3)[interior])
    np.testing.assert_array_equal(nnf[..., 1][interior], (xs + 2)[interior])


@pytest.mark.parametrize("backend", BACKENDS)
def test_field_distances_are_true_and_never_beat_brute_force(backend):
    rng = np.random.default_rng(2)
    target = rng.integers(0, 256, size=(7, 8, 3)).astype(np.float32)
    source = rng.integers(0, 256, size=(9, 10, 3)).astype(np.float32)
    allowed = rng.random((9, 10)) > 0.3
    nnf, dist = nearest_neighbor_field(
        target, source, 3, iterations=3, seed=5, source_valid=allowed, backend=backend
    )
    valid = valid_centres(np.zeros((9, 10), dtype=bool), 1) & allowed
    minimum = brute_force_nnf(target, source, 1, valid)
    for ty in range(7):
        for tx in range(8):
            sy, sx = nnf[ty, tx]
            assert valid[sy, sx], "matched a forbidden or partial source patch"
            true = reference_distance(target, source, ty, tx, sy, sx, 1)
            assert dist[ty, tx] == pytest.approx(true, rel=1e-5, abs=1e-3)
            assert dist[ty, tx] >= minimum[ty, tx] - 1e-3


def test_batched_distance_matches_reference():
    rng = np.random.default_rng(3)
    target = rng.random((6, 7, 2)).astype(np.float32) * 255
    source = rng.random((8, 9, 2)).astype(np.float32) * 255
    targets = rng.random((6, 7)) > 0.4
    patches = batched._Targets(targets, 2, torch.device("cpu"))
    valid = valid_centres(np.zeros((8, 9), dtype=bool), 2)
    ys, xs = np.nonzero(valid)
    pick = rng.integers(0, ys.size, size=len(patches))
    rows = torch.arange(len(patches))
    got = batched._distance(
        torch.from_numpy(target),
        torch.from_numpy(source),
        patches,
        rows,
        torch.from_numpy(ys[pick]),
        torch.from_numpy(xs[pick]),
    )
    ty, tx = np.nonzero(targets)
    for k in range(len(patches)):
        want = reference_distance(target, source, ty[k], tx[k], ys[pick[k]], xs[pick[k]], 2)
        assert got[k].item() == pytest.approx(want, rel=1e-5)


def test_nearest_neighbor_field_rejects_bad_arguments():
    with pytest.raises(ValueError, match="patch_size"):
        nearest_neighbor_field(np.zeros((4, 4)), np.zeros((4, 4)), patch_size=4)
    with pytest.raises(ValueError, match="no valid 5x5 source patch"):
        nearest_neighbor_field(np.zeros((4, 4)), np.zeros((4, 4)), patch_size=5)
    with pytest.raises(ValueError, match="channels"):
        nearest_neighbor_field(np.zeros((4, 4, 3)), np.zeros((4, 4)), patch_size=3)


# ---------------------------------------------------------------- voting and pyramid


@pytest.mark.parametrize("best_only", [False, True])
def test_votes_match_reference(best_only):
    rng = np.random.default_rng(4)
    image = (rng.random((11, 12, 3)) * 255).astype(np.float32)
    hole = np.zeros((11, 12), dtype=bool)
    hole[0:3, 4:7] = True  # touches the border
    hole[7:9, 8:10] = True
    radius = 1
    targets = dilate(hole, radius)
    nnf = random_field(hole, targets, radius, rng)
    dist = (rng.random((11, 12)) * 100).astype(np.float32)
    weight = rng.random((11, 12)).astype(np.float32) + 0.1
    want = reference_vote(image, hole, targets, nnf, dist, weight, radius, best_only)

    out = image.copy()
    cpu.vote(image, hole, targets, nnf, dist, weight, radius, best_only, out)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-3)

    patches = batched._Targets(targets, radius, torch.device("cpu"))
    ty, tx = np.nonzero(targets)
    hole_pixels = torch.from_numpy(np.flatnonzero(hole))
    values = batched._vote(
        torch.from_numpy(image),
        hole_pixels,
        patches,
        torch.from_numpy(nnf[ty, tx]).long(),
        torch.from_numpy(dist[ty, tx]),
        torch.from_numpy(weight[ty, tx]),
        best_only,
    )
    np.testing.assert_allclose(values.numpy(), want[hole], rtol=1e-5, atol=1e-3)


def test_downsample_matches_reference():
    rng = np.random.default_rng(5)
    image = (rng.random((7, 9, 3)) * 255).astype(np.float32)
    hole = rng.random((7, 9)) > 0.7
    coarse, coarse_hole = downsample(image, hole)
    assert coarse.shape == (4, 5, 3) and coarse_hole.shape == (4, 5)
    for y in range(4):
        for x in range(5):
            children = [(min(2 * y + a, 6), min(2 * x + b, 8)) for a in (0, 1) for b in (0, 1)]
            known = [c for c in children if not hole[c]]
            assert coarse_hole[y, x] == (len(known) == 0)
            if known:
                np.testing.assert_allclose(
                    coarse[y, x], np.mean([image[c] for c in known], axis=0), rtol=1e-5
                )


def test_thin_strokes_vanish_from_coarse_levels_and_still_get_filled():
    # A 1-pixel grid of strokes: every 2x2 block keeps a known child, so the first coarse
    # level has no hole at all; the fill must still cover every stroke pixel at level 0.
    rng = np.random.default_rng(3)
    image = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    hole = np.zeros((64, 64), dtype=bool)
    hole[::4, :] = True
    hole[:, 1::4] = True
    pyramid = build_pyramid(image.astype(np.float32), hole, 1, None)
    assert len(pyramid) > 1 and not pyramid[1][1].any()
    filled = patchmatch_inpaint(image, hole, patch_size=3)
    np.testing.assert_array_equal(filled[~hole], image[~hole])
    assert filled.shape == image.shape and filled.dtype == np.uint8


def test_valid_centres_and_upsampled_field():
    hole = np.zeros((9, 9), dtype=bool)
    hole[4, 4] = True
    valid = valid_centres(hole, 1)
    for y in range(9):
        for x in range(9):
            window_ok = 1 <= y <= 7 and 1 <= x <= 7 and not (abs(y - 4) <= 1 and abs(x - 4) <= 1)
            assert valid[y, x] == window_ok
    coarse = np.array([[[1, 1], [-1, -1]], [[0, 0], [0, 1]]], dtype=np.int32)  # (2, 2, 2)
    fine = upsample_nnf(coarse, (3, 4))
    np.testing.assert_array_equal(fine[0, :2], [[2, 2], [2, 3]])
    assert (fine[1, :2] == -1).all()  # doubled + 1 lands on row 3, outside a 3-row image
    assert (fine[:2, 2:] == -1).all()  # unassigned parent
    np.testing.assert_array_equal(fine[2], [[0, 0], [0, 1], [0, 2], [0, 3]])


def test_onion_peel_fills_everything_from_known_values():
    image = np.zeros((6, 6, 1), dtype=np.float32)
    image[:, :3] = 10.0
    image[:, 3:] = 20.0
    hole = np.zeros((6, 6), dtype=bool)
    hole[1:5, 1:5] = True
    filled = onion_peel_fill(image, hole)
    assert np.all((filled >= 10.0) & (filled <= 20.0))
    np.testing.assert_array_equal(filled[~hole], image[~hole])


def test_pyramid_depth_respects_patch_and_hole():
    image = np.zeros((64, 48, 3), dtype=np.float32)
    hole = np.zeros((64, 48), dtype=bool)
    hole[20:40, 10:30] = True
    # Coarse short side must stay >= 4 * radius + 2 (two patch widths).
    assert [p[1].shape for p in build_pyramid(image, hole, 3, None)] == [(64, 48), (32, 24)]
    assert [p[1].shape for p in build_pyramid(image, hole, 2, None)] == [
        (64, 48),
        (32, 24),
        (16, 12),
    ]
    assert len(build_pyramid(image, hole, 2, 2)) == 2


# ---------------------------------------------------------------- inpainting guarantees


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_pixels_untouched_and_hole_filled(backend):
    image = textured(40, 36)
    mask = np.zeros((40, 36), dtype=bool)
    mask[10:22, 12:24] = True
    out = patchmatch_inpaint(image, mask, patch_size=5, backend=backend, iterations=2)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~mask], image[~mask])
    # The fill continues the picture: clearly closer than the known pixels' mean colour.
    error = np.abs(out.astype(float) - image)[mask].mean()
    mean_fill = np.abs(image[~mask].mean(axis=0) - image.astype(float))[mask].mean()
    assert error < 0.75 * mean_fill


def test_thin_free_form_strokes_are_filled_from_their_surroundings():
    # A real photo (scikit-image's astronaut, 128x128) under LaMa-style thin strokes (43 % of
    # the image): every hole pixel is a few pixels from known ones, so a fill that uses its
    # surroundings is far closer than the known mean colour (0.48 of its error). The pyramid
    # that grew holes at every level (before 2026-12) turned such masks into one big coarse
    # hole and scored 0.85.
    image = np.ascontiguousarray(data.astronaut()[::4, ::4])
    mask = generate_mask(
        MaskConfig(kind="freeform", stroke_style="thin"), 128, 128, seed=0, index=1
    )
    assert 0.05 < mask.mean() < 0.5
    out = patchmatch_inpaint(image, mask)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    error = np.abs(out.astype(float) - image)[mask].mean()
    mean_fill = np.abs(image[~mask].mean(axis=0) - image.astype(float))[mask].mean()
    assert error < 0.65 * mean_fill


def palette_image():
    """Four flat colours in vertical stripes of unequal widths."""
    colours = np.array(
        [[200, 30, 30], [30, 200, 30], [30, 30, 200], [240, 240, 20]], dtype=np.uint8
    )
    stripes = np.repeat(np.arange(4), [9, 7, 10, 8])
    return np.ascontiguousarray(np.broadcast_to(colours[stripes][None], (30, 34, 3))), colours


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        ("numba", {"patch_size": 5, "vote": "best"}),
        ("numba", {"patch_size": 1}),
        ("torch", {"patch_size": 3, "vote": "best", "iterations": 2}),
    ],
)
def test_filled_pixels_come_from_the_known_region(backend, options):
    # Best-patch voting copies one known pixel per hole pixel, and with 1x1 patches each hole
    # pixel is covered by one patch only, so no colour can be averaged with another.
    image, colours = palette_image()
    mask = np.zeros(image.shape[:2], dtype=bool)
    mask[8:20, 5:22] = True  # spans three stripes
    out = patchmatch_inpaint(image, mask, backend=backend, **options)
    filled = out[mask]
    assert (filled[:, None, :] == colours[None]).all(-1).any(-1).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_with_seed(backend):
    image = textured(32, 32, seed=3)
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:20, 10:22] = True
    options = {"patch_size": 3, "backend": backend, "iterations": 2}
    first = patchmatch_inpaint(image, mask, seed=7, **options)
    np.testing.assert_array_equal(first, patchmatch_inpaint(image, mask, seed=7, **options))
    assert not np.array_equal(first, patchmatch_inpaint(image, mask, seed=8, **options))


@pytest.mark.parametrize("shape", [(30, 28), (30, 28, 1)])
def test_grayscale(shape):
    image = textured(30, 28).mean(axis=2).astype(np.uint8).reshape(shape)
    mask = np.zeros((30, 28), dtype=bool)
    mask[5:15, 6:16] = True
    out = patchmatch_inpaint(image, mask, patch_size=3)
    assert out.shape == shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~mask], image[~mask])


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_holes_touching_the_border(backend):
    image = textured(36, 40)
    mask = np.zeros((36, 40), dtype=bool)
    mask[:6, :7] = True  # corner
    mask[15:20, -5:] = True  # right edge
    mask[-4:, 10:30] = True  # bottom edge
    mask[14:18, 14:18] = True  # interior
    out = patchmatch_inpaint(image, mask, patch_size=5, backend=backend, iterations=2)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert np.abs(out.astype(float) - image)[mask].mean() < 40


@pytest.mark.parametrize(
    ("size", "hole"), [((3, 4), np.s_[0:2, 0:3]), ((12, 12), np.s_[1:12, 0:11])]
)
def test_tiny_images_and_huge_holes_fall_back_to_smaller_patches(size, hole):
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    mask = np.zeros(size, dtype=bool)
    mask[hole] = True
    out = patchmatch_inpaint(image, mask, patch_size=7)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    known = image[~mask].astype(int)
    assert out[mask].min() >= known.min() and out[mask].max() <= known.max()


def test_no_hole_returns_input_and_full_hole_is_an_error():
    image = textured(10, 10)
    out = patchmatch_inpaint(image, np.zeros((10, 10), dtype=bool))
    np.testing.assert_array_equal(out, image)
    assert out is not image
    with pytest.raises(ValueError, match="covers the whole image"):
        patchmatch_inpaint(image, np.ones((10, 10), dtype=bool))


@pytest.mark.parametrize(
    ("image", "mask", "options", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), bool), {}, "uint8"),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8), bool), {}, r"\(H, W\) or \(H, W, 3\)"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), bool), {}, "mask must be"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool), {"patch_size": 4}, "odd"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool), {"vote": "mode"}, "vote"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool), {"iterations": 0}, "iterations"),
    ],
)
def test_bad_arguments_are_rejected_clearly(image, mask, options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        patchmatch_inpaint(image, mask, **options)


def test_torch_path_agrees_in_quality_with_numba():
    image = np.ascontiguousarray(data.camera()[200:296:2, 150:246:2])  # 48x48 grayscale photo
    mask = np.zeros((48, 48), dtype=bool)
    mask[18:30, 16:30] = True
    errors = {}
    for backend in BACKENDS:
        out = patchmatch_inpaint(image, mask, patch_size=5, backend=backend, iterations=3)
        errors[backend] = np.abs(out.astype(float) - image)[mask].mean()
    assert errors["torch"] <= 1.5 * errors["numba"] + 3.0, errors
    assert errors["numba"] <= 1.5 * errors["torch"] + 3.0, errors


def test_parallel_search_does_not_depend_on_thread_count():
    # Bands of the search are seeded by (seed, pass, band) and scheduled even/odd, so the
    # field and the fill are the same on one thread as on several.
    import numba

    image = textured(40, 44, seed=5)
    mask = np.zeros((40, 44), dtype=bool)
    mask[6:30, 9:33] = True  # spans several bands of cpu.BAND_ROWS rows
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = patchmatch_inpaint(image, mask, patch_size=3, iterations=2)
        field_single = nearest_neighbor_field(image[:20], image, patch_size=3, iterations=2, seed=3)
        numba.set_num_threads(max(2, threads) if numba.config.NUMBA_NUM_THREADS >= 2 else 1)
        np.testing.assert_array_equal(
            single, patchmatch_inpaint(image, mask, patch_size=3, iterations=2)
        )
        field = nearest_neighbor_field(image[:20], image, patch_size=3, iterations=2, seed=3)
        np.testing.assert_array_equal(field_single[0], field[0])
    finally:
        numba.set_num_threads(threads)


def test_em_stops_early_once_nothing_changes(monkeypatch):
    # On a flat image every patch matches perfectly from the start: after one step the field
    # and the fill are fixed, so each level ends after its second search instead of running
    # all `iterations` steps.
    calls = []
    search = cpu.patchmatch

    def counting(*args):
        improved = search(*args)
        calls.append(improved)
        return improved

    monkeypatch.setattr(cpu, "patchmatch", counting)
    image = np.full((24, 24, 3), 90, dtype=np.uint8)
    mask = np.zeros((24, 24), dtype=bool)
    mask[8:16, 8:16] = True
    out = patchmatch_inpaint(image, mask, patch_size=3, iterations=20, levels=1)
    np.testing.assert_array_equal(out, image)
    assert len(calls) == 2 and calls[-1] == 0, calls
