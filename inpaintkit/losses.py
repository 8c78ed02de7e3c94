"""Training losses of DeepFill v1 (paper section 3): WGAN-GP with a hole-masked gradient
penalty, and the spatially discounted ℓ1 reconstruction loss; and ours, the lattice loss
against the grid the generator draws in the adversarial phase.

Conventions: images ``(N, 3, H, W)`` in ``[-1, 1]``; ``mask (N, 1, H, W)``, ``1 = hole``.
The paper writes its masks the other way round (0 = missing), so its ``(1 - m)`` is our
``mask``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from inpaintkit.metrics import high_pass, hole_interior, lattice_cell_sums
from inpaintkit.model.critics import hole_boxes
from inpaintkit.model.generator import GeneratorOutput
from inpaintkit.periodicity import MAX_LAG, MIN_LAG, far_shifts, residual_autocorrelation

DiscountMode = Literal["distance", "bbox"]
L1Normalization = Literal["batch", "image"]

#: Side of the window, px, over which :func:`detail_excess_loss` measures detail: wider than the
#: 4-8 px cells the adversarial runs drew, so it measures their strength, not their layout.
DETAIL_WINDOW = 9

#: Bound on the elements of one min-plus block in :func:`_distance_to_known_minplus` (memory, not speed).
_BLOCK_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------- WGAN-GP


def critic_wgan_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Critic's Wasserstein loss ``mean(D(fake)) - mean(D(real))`` (minimised by the critic)."""
    return fake_scores.mean() - real_scores.mean()


def generator_wgan_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator's adversarial loss ``-mean(D(fake))``."""
    return -fake_scores.mean()


def feature_matching_loss(
    fake_maps: Sequence[torch.Tensor], real_maps: Sequence[torch.Tensor]
) -> torch.Tensor:
    """pix2pixHD's feature-matching loss [ours, not DeepFill's]: the mean absolute difference
    between a critic's feature maps of the completed images and of their photos, averaged
    over layers -> scalar.

    ``fake_maps`` and ``real_maps``: one ``(N, C_l, H_l, W_l)`` per layer, in the same order
    and batch order (``_Critic.forward_with_features``); the real maps carry no gradient.
    Paired with its own photo, a fill is asked for the critic's view of the photo, texture
    included, where the WGAN term only asks for a higher score, which a repeating pattern the
    critic happens to like can give (Wang et al. 2018, "High-Resolution Image Synthesis and
    Semantic Manipulation with Conditional GANs", eq. 4).
    """
    if len(fake_maps) != len(real_maps) or not fake_maps:
        raise ValueError(f"expected as many maps of each, got {len(fake_maps)}, {len(real_maps)}")
    terms = [
        (fake - real.detach()).abs().mean() for fake, real in zip(fake_maps, real_maps, strict=True)
    ]
    return torch.stack(terms).mean()


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    mask: torch.Tensor | None,
    weight: float = 10.0,
    t: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty restricted to the hole: ``λ · mean_n (‖∇D(x̂_n) ⊙ mask_n‖₂ − 1)²``.

    ``x̂ = (1 − t)·real + t·fake`` with one ``t ~ U[0, 1]`` per sample (Algorithm 1, line 7);
    pass ``t`` (shape ``(N,)``) or a ``torch.Generator`` for reproducibility. ``real``, ``fake``
    ``(N, C, H, W)``; ``mask (N, 1, H, W)`` weights the gradient (``None``: the plain WGAN-GP
    penalty). For the local critic pass the hole crops of images and mask
    (``crop_hole_boxes(mask, mask, size)``; its bilinear edge values in (0, 1) weight the
    gradient fractionally). The result is differentiable with respect to the critic's
    parameters (double backprop), ``weight`` is the paper's λ = 10.
    """
    n = real.shape[0]
    if fake.shape != real.shape:
        raise ValueError(
            f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must have the same shape"
        )
    if t is None:
        t = torch.rand(n, generator=generator, device=real.device, dtype=real.dtype)
    t = t.to(real.dtype).reshape(n, 1, 1, 1)
    interpolated = (real + t * (fake - real)).detach().requires_grad_(True)
    scores = critic(interpolated)
    (gradients,) = torch.autograd.grad(scores.sum(), interpolated, create_graph=True)
    if mask is not None:
        gradients = gradients * mask
    # vector_norm's backward is 0 (not NaN) at a zero gradient, e.g. for a sample with no hole.
    slopes = torch.linalg.vector_norm(gradients.flatten(1), dim=1)
    return weight * ((slopes - 1.0) ** 2).mean()


# --------------------------------------------------------------------------- spatial discount


def distance_to_known(mask: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean distance from each pixel to the nearest known pixel (``mask < 0.5``).

    ``mask (N, 1, H, W)`` -> float32 ``(N, 1, H, W)``; 0 on known pixels, ``√(dy² + dx²)`` in
    pixels on hole pixels, measured only to known pixels inside the image (the image border
    is not "known"). A sample with no known pixel at all gets ``H + W`` everywhere.

    On the CPU this is scipy's linear-time EDT per sample (``ndimage.distance_transform_edt``:
    ~10 ms for four 256² masks on one core against ~150 ms for the min-plus pass, a few per cent
    of a CPU training step). On other devices the masks stay there, in
    :func:`_distance_to_known_minplus`.
    """
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (N, 1, H, W), got {tuple(mask.shape)}")
    if mask.device.type != "cpu":
        return _distance_to_known_minplus(mask)
    n, _, height, width = mask.shape
    holes = (mask[:, 0] >= 0.5).numpy(force=True)  # (N, H, W) bool, True = hole
    distance = np.full((n, 1, height, width), float(height + width), dtype=np.float32)
    for i, hole in enumerate(holes):
        if not hole.all():  # the EDT measures to the nearest False (known) pixel
            distance[i, 0] = ndimage.distance_transform_edt(hole)
    return torch.from_numpy(distance)


def _distance_to_known_minplus(mask: torch.Tensor) -> torch.Tensor:
    """:func:`distance_to_known` on any device, batched and loop-free over samples.

    Separable exact EDT: a column pass finds the 1-D distance ``g`` to the nearest known pixel
    in each column (two cumulative-max scans), then a row pass takes the min-plus product
    ``D²(i, j) = min_k g(i, k)² + (j − k)²``, in blocks of rows to bound memory (O(H·W²) work;
    for 256² that is 16.8M operations per sample).
    """
    n, _, height, width = mask.shape
    known = mask[:, 0] < 0.5  # (N, H, W)
    device = mask.device
    inf = torch.tensor(float("inf"), device=device)
    rows = torch.arange(height, device=device, dtype=torch.float32)[None, :, None].expand(
        n, height, width
    )
    above = torch.where(known, rows, -inf).cummax(dim=1).values  # last known row at or above
    below = torch.where(known, rows, inf).flip(1).cummin(dim=1).values.flip(1)  # first at or below
    column = torch.minimum(rows - above, below - rows)  # (N, H, W), inf where a column has no known
    column_sq = column * column

    cols = torch.arange(width, device=device, dtype=torch.float32)
    offset_sq = (cols[:, None] - cols[None, :]) ** 2  # (W_j, W_k)
    block = max(1, _BLOCK_ELEMENTS // max(1, n * width * width))
    squared = torch.empty(n, height, width, device=device)
    for start in range(0, height, block):
        g = column_sq[:, start : start + block]  # (N, b, W_k)
        squared[:, start : start + block] = (g[:, :, None, :] + offset_sq).amin(dim=-1)
    distance = squared.sqrt()
    return torch.where(torch.isfinite(distance), distance, float(height + width)).unsqueeze(1)


def distance_to_box_edge(mask: torch.Tensor) -> torch.Tensor:
    """Distance, per axis, from each pixel to the edge of its sample's hole bounding box.

    ``mask (N, 1, H, W)`` -> float32 ``(N, 1, H, W)``: inside the box
    ``min(i − top + 1, bottom − i, j − left + 1, right − j)`` (the nearest row or column just
    outside the box is at distance 1); 0 outside the box. For a rectangular hole surrounded
    by known pixels this equals :func:`distance_to_known`.
    """
    boxes = hole_boxes(mask).to(torch.float32)
    height, width = mask.shape[-2:]
    i = torch.arange(height, device=mask.device, dtype=torch.float32)[None, :]
    j = torch.arange(width, device=mask.device, dtype=torch.float32)[None, :]
    top, left, bottom, right = (boxes[:, k : k + 1] for k in range(4))
    dy = torch.minimum(i - top + 1, bottom - i)  # (N, H); <= 0 outside the box
    dx = torch.minimum(j - left + 1, right - j)  # (N, W)
    distance = torch.minimum(dy[:, :, None], dx[:, None, :]).clamp(min=0.0)
    return distance.unsqueeze(1)


def spatial_discount(
    mask: torch.Tensor, gamma: float = 0.9, mode: DiscountMode = "bbox"
) -> torch.Tensor:
    """Spatial discount weights ``γ^d`` on the hole, 0 on known pixels: ``(N, 1, H, W)`` float32.

    ``mode="distance"``: ``d`` is the Euclidean distance to the nearest known pixel
    (:func:`distance_to_known`) — the paper's definition, with γ = 0.99 in its text.
    ``mode="bbox"``: ``d`` is the distance to the hole's bounding-box edge
    (:func:`distance_to_box_edge`) — the authors' released scheme, trained with γ = 0.9, the
    default (see docs/model.md for the one-pixel indexing difference).
    """
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    if mode == "distance":
        distance = distance_to_known(mask)
    elif mode == "bbox":
        distance = distance_to_box_edge(mask)
    else:
        raise ValueError(f"mode must be 'distance' or 'bbox', got {mode!r}")
    hole = (mask > 0.5).to(torch.float32)
    return torch.pow(gamma, distance) * hole


# --------------------------------------------------------------------------- reconstruction


@dataclass
class ReconstructionLoss:
    """Terms of :func:`reconstruction_loss` (scalars): ``total = hole_weight·hole + known_weight·known``."""

    total: torch.Tensor
    hole: torch.Tensor
    known: torch.Tensor


def reconstruction_loss(
    target: torch.Tensor,
    prediction: GeneratorOutput | tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor,
    *,
    gamma: float = 0.9,
    mode: DiscountMode = "bbox",
    coarse_weight: float = 1.2,
    hole_weight: float = 1.2,
    known_weight: float = 1.2,
    normalization: L1Normalization = "batch",
) -> ReconstructionLoss:
    """Spatially discounted ℓ1 on the hole plus plain ℓ1 on the known pixels, both stages.

    ``target (N, 3, H, W)`` the original image; ``prediction`` a :class:`GeneratorOutput` or
    the tensors ``(coarse, refined)`` (raw, not composited); ``mask (N, 1, H, W)``. With
    ``w = spatial_discount(mask, gamma, mode)`` and ``C = 3``::

        hole(x)  = Σ w·|x − target| / (C · Σ mask)          (mean over the batch's hole pixels)
        known(x) = Σ (1 − mask)·|x − target| / (C · Σ (1 − mask))
        hole     = coarse_weight · hole(coarse) + hole(refined)     (same for known)

    ``normalization="image"`` takes those sums and counts per image and averages the images'
    means instead (over the images whose region is not empty): every image then weighs the
    same, as in per-image metrics, where ``"batch"`` weighs an image by its region's area. With
    equal holes in every image (the released code's one box) the two agree.

    Defaults are the authors' released weights (COARSE_L1_ALPHA, L1_LOSS_ALPHA,
    AE_LOSS_ALPHA = 1.2). An empty region contributes 0.
    """
    if isinstance(prediction, GeneratorOutput):
        coarse, refined = prediction.coarse, prediction.refined
    else:
        coarse, refined = prediction
    if coarse.shape != target.shape or refined.shape != target.shape:
        raise ValueError(
            f"predictions {tuple(coarse.shape)}, {tuple(refined.shape)} must match target {tuple(target.shape)}"
        )
    if normalization not in ("batch", "image"):
        raise ValueError(f"normalization must be 'batch' or 'image', got {normalization!r}")
    discount = spatial_discount(mask, gamma, mode).to(target.dtype)
    hole_mask = (mask > 0.5).to(target.dtype)
    known_mask = 1.0 - hole_mask
    # "batch" sums over everything; "image" keeps the batch axis until the last mean.
    dims = (1, 2, 3) if normalization == "image" else (0, 1, 2, 3)

    def region_mean(x: torch.Tensor, weight: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        area = region.sum(dims) * target.shape[1]
        means = ((x - target).abs() * weight).sum(dims) / area.clamp(min=1)
        if normalization == "batch":
            return means
        return means.sum() / (area > 0).sum().clamp(min=1)

    def hole_term(x: torch.Tensor) -> torch.Tensor:
        return region_mean(x, discount, hole_mask)

    def known_term(x: torch.Tensor) -> torch.Tensor:
        return region_mean(x, known_mask, known_mask)

    hole = coarse_weight * hole_term(coarse) + hole_term(refined)
    known = coarse_weight * known_term(coarse) + known_term(refined)
    return ReconstructionLoss(
        total=hole_weight * hole + known_weight * known, hole=hole, known=known
    )


# --------------------------------------------------------------------------- lattice [ours]


def _lattice_terms(
    residual: torch.Tensor, inside: torch.Tensor, period: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lattice_loss_per_image`'s value for every image at one ``period`` -> ``(loss
    (N,), measured (N,) bool)``; ``loss`` is finite but meaningless where not ``measured``."""
    detail_sums, counts = lattice_cell_sums(residual.abs().mean(dim=1), inside, period)
    measured = (counts > 0).all(dim=1)  # (N,): images with a pixel in every cell
    signed_sums = torch.stack(
        [lattice_cell_sums(residual[:, k], inside, period)[0] for k in range(residual.shape[1])],
        dim=1,
    )  # (N, C, period²)
    counts = counts.clamp(min=1)
    detail = detail_sums / counts  # (N, period²)
    # The floor only keeps an image that is flat, or unmeasured, finite; it never binds on
    # a measured fill (its residual is never exactly 0 on every cell).
    scale = detail.mean(dim=1, keepdim=True).clamp(min=1e-12)
    unevenness = ((detail / scale - 1.0) ** 2).mean(dim=1)
    bias = ((signed_sums / counts[:, None] / scale[:, None]) ** 2).mean(dim=(1, 2))
    return unevenness + bias, measured


def lattice_loss_per_image(
    completed: torch.Tensor, mask: torch.Tensor, periods: int | Sequence[int]
) -> torch.Tensor:
    """How much each fill depends on where it lies on a ``period × period`` lattice, at each
    of ``periods`` -> ``(M,)`` for one period, ``(M, len(periods))`` for a sequence.

    ``completed (N, C, H, W)`` (any range: the loss is scale-free), ``mask (N, 1, H, W)``
    (1 = hole). Over each image's hole eroded by 2 px, per cell ``(y mod period, x mod
    period)`` of the lattice anchored at the origin (where the generator's stride-2
    convolutions and resizes anchor the grid it draws; docs/model.md, "A loss against the
    lattice"), two means of the fill's high-pass residual ``r`` (``metrics.high_pass``):
    ``m_c`` of its magnitude (``metrics.LatticeProfile``'s detail) and ``s_kc`` of its signed
    value per channel ``k``. An image's loss = ``mean_c (m_c / m - 1)²`` + ``mean_kc (s_kc /
    m)²``, ``m`` the mean of ``m_c``. The first sees a grid of edges, the second one of
    brightness or colour, including stripes whose magnitude is the same on every cell
    (``+a, +a, -a, -a``). Both are 0 for detail that ignores the lattice, whatever its amount,
    so the loss moves detail off the grid without asking for less of it.

    A lattice of period P sees the grids whose period divides P, and no other: one watched
    at 8 and 16 px moved to 6 px (stint 13, docs/model.md), hence several periods.

    One row per image whose eroded hole reaches every cell at every period (``M <= N``; the
    others have no measure), in batch order.
    """
    single = isinstance(periods, int)
    residual = high_pass(completed)
    inside = hole_interior(mask)
    terms = [_lattice_terms(residual, inside, p) for p in ([periods] if single else periods)]
    loss = torch.stack([value for value, _ in terms], dim=1)  # (N, P)
    measured = torch.stack([where for _, where in terms], dim=1).all(dim=1)
    loss = loss[measured]
    return loss[:, 0] if single else loss


def lattice_loss(
    completed: torch.Tensor,
    mask: torch.Tensor,
    periods: int | Sequence[int],
    photos: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`lattice_loss_per_image` averaged over the images it measures and over
    ``periods`` -> scalar (0, without a graph to the input, when it measures none). Per
    image, not pooled over the batch: pooled, one image's grid was diluted by the others'
    detail and survived (stint 12).

    With ``photos`` (the ground truth, same shape as ``completed``), each image's loss at each
    period counts only where it exceeds its photo's there (``max(0, fill - photo)``): no more
    lattice than the photo itself has. Without that hinge, a fill kept more even than its
    photo at most periods offset a grid at one (stint 14), and the part of the loss a photo
    has too pulled the fills toward an evenness no photo has.
    """
    per_image = lattice_loss_per_image(completed, mask, periods)
    if photos is not None:
        with torch.no_grad():
            floor = lattice_loss_per_image(photos, mask, periods)
        per_image = (per_image - floor).clamp(min=0.0)
    return per_image.mean() if per_image.numel() else completed.new_zeros(())


# --------------------------------------------------------------------------- periodicity [ours]


def periodicity_loss(
    completed: torch.Tensor,
    photos: torch.Tensor,
    mask: torch.Tensor,
    min_lag: int = MIN_LAG,
    max_lag: int = MAX_LAG,
    two_sided: bool = False,
    photo_units: bool = False,
) -> torch.Tensor:
    """How much more the fills repeat themselves than their photos -> scalar, >= 0.

    ``completed`` and ``photos (N, C, H, W)`` (one range), ``mask (N, 1, H, W)`` (1 = hole).
    Per image, the autocorrelation of the hole's detail (``periodicity.
    residual_autocorrelation``) at every shift of ``min_lag`` to ``max_lag`` px, counted only
    above the photo's at that shift, averaged over shifts and images (those with a hole
    interior). A lattice sees a grid only at one phase over the whole hole; the fills of stint
    14 kept checkerboards whose phase drifts across it, which autocorrelation sees.

    ``two_sided``: count the autocorrelation below the photo's too (the mean absolute
    difference). A checkerboard whose phase drifts shows less as a correlation at its period
    than as an anti-correlation at its cells' width (``periodicity.alternation``), which the
    one-sided loss leaves alone: the TTUR run's fills at 4 px, -0.18 against the photos' +0.07
    (stint 19).

    ``photo_units``: normalise the fills' autocovariance by their photos' detail, not their
    own (``residual_autocorrelation``'s ``reference``). Normalised by its own, a fill lowers
    the loss by adding grain that repeats nowhere, which dilutes a pattern without removing
    it: stint 20's noise inputs did (docs/model.md).
    """
    inside = hole_interior(mask).flatten(1).any(dim=1)
    if not bool(inside.any()):
        return completed.new_zeros(())
    reference = photos[inside] if photo_units else None
    fills = residual_autocorrelation(completed[inside], mask[inside], max_lag, reference)
    with torch.no_grad():
        truth = residual_autocorrelation(photos[inside], mask[inside], max_lag)
    difference = (fills - truth)[:, far_shifts(min_lag, max_lag, completed.device)]
    return difference.abs().mean() if two_sided else difference.clamp(min=0.0).mean()


# --------------------------------------------------------------------------- detail budget [ours]


def local_detail(image: torch.Tensor, window: int = DETAIL_WINDOW) -> torch.Tensor:
    """The RMS of the high-pass residual (``metrics.high_pass``, summed over channels) in a
    ``window`` × ``window`` box around each pixel (cut at the border) -> ``(N, H, W)``, >= 0,
    in the image's units; differentiable in ``image``."""
    power = high_pass(image).square().sum(dim=1, keepdim=True)
    local = F.avg_pool2d(power, window, 1, window // 2, count_include_pad=False)
    # The floor keeps the square root's gradient finite where an image is flat.
    return local[:, 0].clamp(min=1e-8).sqrt()


def detail_gap_sums(
    completed: torch.Tensor,
    photos: torch.Tensor,
    mask: torch.Tensor,
    fraction: float = 1.0,
    window: int = DETAIL_WINDOW,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image, from one :func:`local_detail` of each side: the sum over its hole of each
    pixel's local detail in ``completed`` above that in ``photos`` (both ``(N, C, H, W)``, one
    range; 0 where below), the sum of it below ``fraction`` × that in ``photos`` (0 where
    above), and the hole's pixel count -> three ``(N,)``; the sums differentiable in
    ``completed``. ``mask (N, 1, H, W)``, 1 = hole. :func:`detail_excess_loss` and
    :func:`detail_deficit_loss` pool them over the batch; validation divides them image by
    image (``hole_detail_excess``, ``hole_detail_deficit``)."""
    fills = local_detail(completed, window)
    with torch.no_grad():
        truth = local_detail(photos, window)
    hole = mask[:, 0].to(fills.dtype)
    excess = ((fills - truth).clamp(min=0.0) * hole).sum(dim=(1, 2))
    deficit = ((fraction * truth - fills).clamp(min=0.0) * hole).sum(dim=(1, 2))
    return excess, deficit, hole.sum(dim=(1, 2))


def chroma(image: torch.Tensor) -> torch.Tensor:
    """Each pixel's colour: ``image (N, C, H, W)`` minus its mean over channels (its grey),
    same shape. Per pixel, the high-pass residual summed over channels splits into ``C`` × the
    grey's squared plus the colour's squared, so :func:`local_detail` of this is the part of a
    fill's detail that is colour."""
    return image - image.mean(dim=1, keepdim=True)


def detail_excess_loss(
    completed: torch.Tensor, photos: torch.Tensor, mask: torch.Tensor, window: int = DETAIL_WINDOW
) -> torch.Tensor:
    """How much more detail the fills have than their photos, where they have more -> scalar,
    >= 0, in the images' units.

    ``completed`` and ``photos (N, C, H, W)`` (one range), ``mask (N, 1, H, W)`` (1 = hole).
    The mean over the hole's pixels of ``max(0, d(fill) - d(photo))``, ``d`` the local RMS of
    detail (:func:`local_detail`, :func:`detail_gap_sums`). One-sided: a fill with less
    detail than its photo is the blur the critics work against; this term only forbids detail
    where the photo has none, such as speckles on a clear sky or grain on skin (stint 20's
    fills), wherever the fill puts them and whatever their pattern. Validation logs it per
    image (``hole_detail_excess``).
    """
    return detail_gap_losses(completed, photos, mask, window=window)[0]


def chroma_excess_loss(
    completed: torch.Tensor, photos: torch.Tensor, mask: torch.Tensor, window: int = DETAIL_WINDOW
) -> torch.Tensor:
    """:func:`detail_excess_loss` of the images' colour (:func:`chroma`): how much more colour
    detail the fills have than their photos, where they have more -> scalar, >= 0. Photos' detail
    is mostly grey (their colour detail is 0.13-0.28 of it in ``../shared/data/eval``'s holes);
    stint 21's fills spent 0.6 of theirs on colour, which reads as pink and green speckles.
    Validation logs it per image (``hole_chroma_excess``)."""
    return detail_excess_loss(chroma(completed), chroma(photos), mask, window)


def detail_deficit_loss(
    completed: torch.Tensor,
    photos: torch.Tensor,
    mask: torch.Tensor,
    fraction: float = 1.0,
    window: int = DETAIL_WINDOW,
) -> torch.Tensor:
    """How much less detail the fills have than ``fraction`` of their photos', where they have
    less -> scalar, >= 0, in the images' units: the mean over the hole's pixels of
    ``max(0, fraction · d(photo) - d(fill))`` (:func:`local_detail`, :func:`detail_gap_sums`).

    The other side of :func:`detail_excess_loss`. With noise gates (``model.noise_gates``)
    the budget closed the noise on skies, and the gates, one 1 × 1 conv each, closed it
    everywhere else too (stint 25: the fills' detail fell from 0.047 to 0.040 on the busiest
    fifth of the photos' detail, the photos' 0.173). This term asks for detail only where
    the photo has it, as energy: the 9 px window does not care where the fill puts it, so it
    does not ask a fill to be the photo, which no fill can know. ``fraction < 1`` leaves room
    for what a fill cannot know. Validation logs it at ``fraction = 1`` per image
    (``hole_detail_deficit``)."""
    return detail_gap_losses(completed, photos, mask, fraction, window)[1]


def detail_gap_losses(
    completed: torch.Tensor,
    photos: torch.Tensor,
    mask: torch.Tensor,
    fraction: float = 1.0,
    window: int = DETAIL_WINDOW,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`detail_excess_loss` and :func:`detail_deficit_loss` (at ``fraction``) from one
    :func:`detail_gap_sums`, pooled over the batch's hole pixels -> two scalars: the trainer
    computes the fills' and photos' local detail once when both terms are on."""
    excess, deficit, pixels = detail_gap_sums(completed, photos, mask, fraction, window)
    total = pixels.sum().clamp(min=1.0)
    return excess.sum() / total, deficit.sum() / total


def flat_gate_loss(
    gates: Sequence[torch.Tensor],
    photos: torch.Tensor,
    mask: torch.Tensor,
    threshold: float,
    window: int = DETAIL_WINDOW,
) -> torch.Tensor:
    """How open the noise gates are where the photo is flat -> scalar in ``[0, 2)``.

    ``gates``: each injection point's gate (``GeneratorOutput.noise_gates``), ``(N, 1, h, w)``
    in ``(0, 2)``, ``h`` and ``w`` dividing ``photos (N, C, H, W)``'s; ``mask (N, 1, H, W)``,
    1 = hole. A photo pixel is flat where its :func:`local_detail` is below ``threshold`` (the
    photos' units). Per gate: each gate pixel weighted by the share of its footprint that is
    flat hole, summed, over the hole's pixels at that resolution; the mean over the gates. So
    it is the mean gate over the hole's flat pixels times their share of the hole: 1 × that
    share for gates that have not learned yet, 0 once they close on every flat pixel.

    Why: the fills' grain on clear skies is the noise inputs' (zeroing the noise takes the
    flattest fifth of the holes' detail from 0.020 to 0.010, the photos' 0.011; stint 26), and
    the detail budget reaches the gates only through the noise, whose sign is a fresh draw at
    every pixel and step: after 1,700 steps the gates on the flattest fifth were still 0.5-0.7
    (stint 25). This term gives them the photos' answer directly, where it is known: close
    where the photo is flat. It says nothing where the photo has detail.
    """
    with torch.no_grad():
        flat = (local_detail(photos, window) < threshold)[:, None].to(mask.dtype) * mask
    per_gate = []
    for gate in gates:
        size = gate.shape[-2:]
        share = F.adaptive_avg_pool2d(flat, size)
        hole = F.adaptive_avg_pool2d(mask, size).sum()
        per_gate.append((share * gate.float()).sum() / hole.clamp(min=1e-8))
    return torch.stack(per_gate).mean()
