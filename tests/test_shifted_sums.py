"""Sums of shifted slices against dense references, and their own backward against autograd's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inpaintkit.model.shifted_sums import (
    SliceTerm,
    diagonal_shift_sum,
    grid_shift_slices,
    slice_sum,
)


def ref_diagonal_shift_sum(volume, shifts, out_sizes, weights):
    """The 2-D case by its definition, one output element at a time."""
    height, width = out_sizes
    out = torch.zeros(height, width, dtype=volume.dtype)
    for i in range(height):
        for j in range(width):
            for d, w in zip(shifts, weights, strict=True):
                if 0 <= i + d < volume.shape[0] and 0 <= j + d < volume.shape[1]:
                    out[i, j] += w * volume[i + d, j + d]
    return out


@pytest.mark.parametrize(
    ("in_size", "out_size", "shifts", "weights"),
    [
        ((5, 7), (5, 7), range(-1, 2), None),
        ((5, 7), (6, 8), range(-1, 1), [0.25, 0.75]),
        ((4, 3), (4, 3), range(-2, 3), [1.0, -2.0, 0.5, 3.0, 0.1]),
        ((2, 2), (2, 2), range(3, 5), None),  # no term reaches the output: zeros
    ],
)
def test_diagonal_shift_sum_matches_definition(in_size, out_size, shifts, weights):
    volume = torch.randn(*in_size, dtype=torch.float64)
    got = diagonal_shift_sum(volume, (0, 1), shifts, out_size, weights)
    want = ref_diagonal_shift_sum(volume, shifts, out_size, weights or [1.0] * len(shifts))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_diagonal_shift_sum_is_an_identity_kernel_convolution():
    volume = torch.randn(1, 1, 9, 11, dtype=torch.float64)
    weights = [0.5, 2.0, -1.0]
    kernel = torch.diag(torch.tensor(weights, dtype=torch.float64))[None, None]
    want = F.conv2d(volume, kernel, padding=1)
    got = diagonal_shift_sum(volume, (2, 3), range(-1, 2), (9, 11), weights)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def ref_slice_sum(sources, shape, terms):
    """Element by element: every output index of every term's target box."""
    out = torch.zeros(shape, dtype=sources[0].dtype)
    for term in terms:
        source = sources[term.source]
        for index in torch.cartesian_prod(*[torch.arange(n) for n in shape]).tolist():
            index = [index] if isinstance(index, int) else index
            source_index = list(index)
            inside = True
            for dim, target_start, source_start, length in term.slices:
                offset = index[dim] - target_start
                inside &= 0 <= offset < length
                source_index[dim] = source_start + offset
            if inside:
                out[tuple(index)] += term.weight * source[tuple(source_index)]
    return out


def random_terms():
    """Three sources of one shape, overlapping boxes, the first term not covering everything."""
    return [
        SliceTerm(0, ((0, 1, 0, 3), (1, 0, 1, 4))),
        SliceTerm(1, ((1, 2, 0, 3),), weight=-0.5),
        SliceTerm(2, ()),
        SliceTerm(0, ((0, 0, 1, 2), (1, 1, 0, 3)), weight=2.0),
    ]


def test_slice_sum_matches_element_by_element_reference():
    sources = [torch.randn(4, 5, dtype=torch.float64) for _ in range(3)]
    torch.testing.assert_close(
        slice_sum(sources, (4, 5), random_terms()),
        ref_slice_sum(sources, (4, 5), random_terms()),
        rtol=0,
        atol=1e-12,
    )


def test_slice_sum_backward_is_its_own_and_passes_gradcheck():
    sources = [torch.randn(4, 5, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    out = slice_sum(sources, (4, 5), random_terms())
    assert type(out.grad_fn).__name__ == "_SliceSumBackward"  # not autograd's CopySlices
    assert torch.autograd.gradcheck(lambda *s: slice_sum(s, (4, 5), random_terms()), sources)
    # Twice differentiable too: the backward is a slice sum itself.
    assert torch.autograd.gradgradcheck(lambda *s: slice_sum(s, (4, 5), random_terms()), sources)


def test_slice_sum_grad_only_for_sources_that_need_it():
    needs = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    fixed = torch.randn(4, 5, dtype=torch.float64)
    slice_sum([needs, fixed, fixed], (4, 5), random_terms()).sum().backward()
    assert fixed.grad is None
    assert needs.grad is not None


@pytest.mark.parametrize("weights", [None, [0.25, 0.75]])
def test_diagonal_shift_sum_gradcheck(weights):
    volume = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v: diagonal_shift_sum(v, (1, 3), range(-1, 1), (5, 6), weights), (volume,)
    )


def ref_grid_shift(values, grid, shift, column_major, target, source):
    """Target box of ``values`` shifted by ``shift`` along the flat order, source box only."""
    height, width = grid
    out = torch.zeros(target[1] - target[0], target[3] - target[2], dtype=values.dtype)
    for y in range(target[0], target[1]):
        for x in range(target[2], target[3]):
            flat = (x * height + y if column_major else y * width + x) + shift
            if not 0 <= flat < height * width:
                continue
            sy, sx = (flat % height, flat // height) if column_major else divmod(flat, width)
            if source[0] <= sy < source[1] and source[2] <= sx < source[3]:
                out[y - target[0], x - target[2]] = values[sy - source[0], sx - source[2]]
    return out


@pytest.mark.parametrize("shift", [-5, -4, -1, 0, 1, 2, 3, 5, 13])
@pytest.mark.parametrize("column_major", [False, True])
@pytest.mark.parametrize(
    ("target", "source"),
    [
        (None, None),  # the whole 3 x 4 grid
        ((1, 2, 1, 3), (0, 3, 0, 4)),
        ((0, 2, 0, 2), (0, 3, 0, 3)),
        ((1, 3, 2, 4), (0, 3, 1, 4)),
        ((0, 3, 3, 4), (0, 3, 0, 4)),
    ],
)
def test_grid_shift_slices_shift_the_flat_index(shift, column_major, target, source):
    grid = (3, 4)
    whole = (0, 3, 0, 4)
    target_box, source_box = target or whole, source or whole
    values = torch.randn(
        source_box[1] - source_box[0], source_box[3] - source_box[2], dtype=torch.float64
    )
    shape = (target_box[1] - target_box[0], target_box[3] - target_box[2])
    slices = grid_shift_slices((0, 1), shift, grid, column_major, target, source)
    got = slice_sum([values], shape, [SliceTerm(0, s) for s in slices])
    want = ref_grid_shift(values, grid, shift, column_major, target_box, source_box)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
