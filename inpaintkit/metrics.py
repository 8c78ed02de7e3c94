"""Per-image reconstruction metrics of a completed image against its ground truth.

Definitions (docs/metrics.md states them as formulas): every function takes batched float
tensors with values in ``[0, 1]`` and returns one value per image, shape ``(N,)``, in float64.

* ``completed``, ``target``: ``(N, C, H, W)`` in ``[0, 1]``;
* ``mask``: ``(N, 1, H, W)`` in ``{0, 1}``, ``1 = hole`` (the tensors.py convention).

The paper's Table 1 reports mean ℓ1 error, mean ℓ2 error, PSNR and TV loss "for reference
only" without formulas; the ones here are the plainest readings of those names, plus SSIM and
hole-only variants. Hole-only values of an image without a hole are NaN ("undefined"), and a
PSNR of two identical images (or holes) is +inf; :class:`RunningStats` counts both apart
instead of letting them poison a mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: SSIM settings of Wang et al. (2004), identical to scikit-image's
#: ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
#: data_range=1.0, channel_axis=...)``: an 11-tap Gaussian window (radius ``int(3.5 * 1.5 + 0.5)``),
#: constants K1 = 0.01, K2 = 0.03, mean over the positions where the window fits and over channels.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is named, printed and compared."""

    key: str  # the name in metrics.json / metrics.csv
    label: str  # the column header in the terminal table and the HTML page
    higher_is_better: bool | None  # None: no better direction (TV)
    digits: int  # decimals printed


#: Column order of every report, Table 1's four first. ``hole_l1`` (marked †) is the number
#: later re-implementations call "l1 error" (MMagic's DeepFill v1: MAE on [0, 1] over hole
#: pixels x 100); :data:`HOLE_L1_NOTE` says so under every table.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("l1", "ℓ1 (%)", False, 2),
    MetricSpec("l2", "ℓ2 (%)", False, 2),
    MetricSpec("psnr", "PSNR (dB)", True, 2),
    MetricSpec("tv", "TV (%)", None, 2),
    MetricSpec("ssim", "SSIM", True, 3),
    MetricSpec("hole_l1", "hole ℓ1 (%)†", False, 2),
    MetricSpec("hole_l2", "hole ℓ2 (%)", False, 2),
    MetricSpec("hole_psnr", "hole PSNR (dB)", True, 2),
    # Sharpness: the fill's hole_tv over the ground truth's, per image. 1.0 = as much detail
    # as the photo had; a blurry fill is well below, a noisy one above. No better direction
    # (nearer 1.0 is more natural), so no column winner. [ours, after the paper's TV column]
    MetricSpec("hole_tv_ratio", "hole TV / truth's", None, 3),
)

HOLE_L1_NOTE = "† hole ℓ1 (%) is what later re-implementations (e.g. MMagic's DeepFill v1) report as 'l1 error'."


def _check(completed: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> None:
    if completed.ndim != 4 or completed.shape != target.shape:
        raise ValueError(
            f"completed and target must be equal (N, C, H, W) shapes, got "
            f"{tuple(completed.shape)} and {tuple(target.shape)}"
        )
    if mask is not None and mask.shape != (completed.shape[0], 1, *completed.shape[2:]):
        raise ValueError(
            f"mask must be (N, 1, H, W) = {(completed.shape[0], 1, *completed.shape[2:])}, got {tuple(mask.shape)}"
        )


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values (N, C, H, W)`` per image over all pixels, or over hole pixels only.

    With a mask, each hole pixel counts once per channel (as MMagic's masked MAE does);
    an image without hole pixels gets NaN.
    """
    values = values.double()
    if mask is None:
        return values.mean(dim=(1, 2, 3))
    hole = (mask > 0.5).double().expand_as(values)
    count = hole.sum(dim=(1, 2, 3))
    total = (values * hole).sum(dim=(1, 2, 3))
    return torch.where(count > 0, total / count.clamp(min=1.0), torch.full_like(total, math.nan))


def mean_l1_error(
    completed: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute error x 100 (%): ``100 * mean |completed - target|`` -> ``(N,)``.

    Over all pixels and channels, or over hole pixels only when ``mask`` is given.
    """
    _check(completed, target, mask)
    return 100.0 * _masked_mean((completed.double() - target.double()).abs(), mask)


def mean_l2_error(
    completed: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error x 100 (%): ``100 * mean (completed - target)^2`` -> ``(N,)``."""
    _check(completed, target, mask)
    return 100.0 * _masked_mean((completed.double() - target.double()) ** 2, mask)


def psnr(
    completed: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Peak signal-to-noise ratio (dB) for peak 1: ``10 log10(1 / MSE)`` -> ``(N,)``.

    MSE over all pixels and channels (scikit-image's ``peak_signal_noise_ratio`` with
    ``data_range=1``), or over hole pixels only. ``+inf`` when MSE is 0; NaN for an empty hole.
    """
    mse = mean_l2_error(completed, target, mask) / 100.0
    return 10.0 * torch.log10(1.0 / mse)  # 1/0 = inf -> inf dB; NaN stays NaN


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation x 100 (%) of ``image (N, C, H, W)`` in [0, 1] -> ``(N,)``.

    ``100 * (mean |x[i+1, j] - x[i, j]| + mean |x[i, j+1] - x[i, j]|)``, each mean over all
    vertical (resp. horizontal) neighbour pairs and channels. Lower is smoother, not better:
    compare with the ground truth's TV.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (N, C, H, W), got {tuple(image.shape)}")
    x = image.double()
    zero = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    vertical = (
        (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3)) if x.shape[2] > 1 else zero
    )
    horizontal = (
        (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(dim=(1, 2, 3)) if x.shape[3] > 1 else zero
    )
    return 100.0 * (vertical + horizontal)


def hole_tv(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`tv_loss` over the neighbour pairs that touch the hole -> ``(N,)``, x 100 (%).

    ``100 * (mean |x[i+1, j] - x[i, j]| + mean |x[i, j+1] - x[i, j]|)``, each mean over the
    vertical (resp. horizontal) pairs with at least one hole pixel, and channels; a direction
    with no such pair adds 0, an image with none at all is NaN. Detail a fill put into its hole:
    against the ground truth's ``hole_tv`` it says how much blurrier (< 1x) or busier a fill is,
    which PSNR and ℓ1 cannot (a blurry fill scores well on both).
    """
    _check(image, image, mask)
    x = image.double()
    hole = (mask > 0.5).double()
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    pairs = torch.zeros_like(total)
    for dim in (2, 3):
        length = x.shape[dim] - 1
        steps = (x.narrow(dim, 1, length) - x.narrow(dim, 0, length)).abs().mean(dim=1)
        touched = torch.maximum(hole.narrow(dim, 1, length), hole.narrow(dim, 0, length))[:, 0]
        count = touched.sum(dim=(1, 2))
        total += torch.where(count > 0, (steps * touched).sum(dim=(1, 2)) / count.clamp(min=1), 0.0)
        pairs += count
    return torch.where(pairs > 0, 100.0 * total, torch.full_like(total, math.nan))


#: The lattice period contextual attention's paste draws at the paper's settings: 2 × 2 feature
#: blocks (rate 2) on features at a quarter of the image's resolution (docs/model.md, "The faint
#: ~8 px grid").
LATTICE_PERIOD = 8


def high_pass(image: torch.Tensor) -> torch.Tensor:
    """``image (N, C, H, W)`` minus its 3 × 3 box mean (the box cut at the border), same
    shape, signed; differentiable."""
    return image - F.avg_pool2d(image, 3, 1, 1, count_include_pad=False)


def high_pass_detail(image: torch.Tensor) -> torch.Tensor:
    """A pixel's detail: :func:`high_pass`, absolute, channel-averaged -> ``(N, H, W)``."""
    return high_pass(image).abs().mean(dim=1)


def hole_interior(mask: torch.Tensor) -> torch.Tensor:
    """``mask (N, 1, H, W)`` (1 = hole) eroded by 2 px -> bool ``(N, H, W)``: the hole pixels
    whose 3 × 3 box mean sees no known pixel's neighbour (nearer, detail sees the seam)."""
    return (-F.max_pool2d(-mask.double(), 5, 1, 2))[:, 0] > 0.5


def lattice_cell_sums(
    values: torch.Tensor, where: torch.Tensor, period: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and per cell ``(y mod period, x mod period)`` of the lattice anchored at the
    origin, the sum of ``values (N, H, W)`` and the count of pixels where ``where (N, H, W)``
    holds -> ``(sums, counts)``, each ``(N, period²)``, row-major cells; differentiable in
    ``values``."""
    height, width = values.shape[-2:]
    # Padded (with pixels outside ``where``) to whole cells, so one reshape lines every
    # pixel up with its cell.
    pad = (0, -width % period, 0, -height % period)
    chosen = F.pad(where.to(values.dtype), pad)
    weighted = torch.where(chosen > 0, F.pad(values, pad), 0.0)

    def per_cell(x: torch.Tensor) -> torch.Tensor:
        n, h, w = x.shape
        cells = x.reshape(n, h // period, period, w // period, period)
        return cells.sum(dim=(1, 3)).flatten(1)

    return per_cell(weighted), per_cell(chosen)


class LatticeProfile:
    """Detail a set of fills puts on each cell of a ``period × period`` lattice, over batches.

    A grid of period P shows as detail that depends on where a pixel lies on the lattice
    anchored at the image's origin (the origin of the generator's stride-2 convolutions and of
    the attention's block paste); a photo's detail does not care. :meth:`add` accumulates, per
    cell ``(y mod P, x mod P)``, the magnitude of the high-pass residual (the image minus its
    3 × 3 box mean, channel-averaged) over hole pixels at least 2 px inside the hole (nearer,
    the residual sees the seam, not the fill); :attr:`spread` is the cells' max / min − 1, in
    % (near 0 for a photo: 5.3 on rect256's ground truth).
    """

    def __init__(self, period: int = LATTICE_PERIOD) -> None:
        self.period = period
        self.sums = torch.zeros(period * period, dtype=torch.float64)
        self.counts = torch.zeros(period * period, dtype=torch.float64)

    def add(self, image: torch.Tensor, mask: torch.Tensor) -> None:
        """Include ``image (N, C, H, W)`` in [0, 1] with its ``mask (N, 1, H, W)`` (1 = hole)."""
        _check(image, image, mask)
        self.add_values(high_pass_detail(image.double()), hole_interior(mask))

    def add_values(self, values: torch.Tensor, where: torch.Tensor) -> None:
        """Include per-pixel ``values (N, H, W)`` at the pixels where ``where (N, H, W)`` is
        True (e.g. a critic's gradient magnitude over the holes) instead of a fill's detail."""
        sums, counts = lattice_cell_sums(values.double(), where, self.period)
        self.sums += sums.detach().sum(dim=0).cpu()
        self.counts += counts.sum(dim=0).cpu()

    @property
    def spread(self) -> float:
        """Max over min cell mean, minus 1, in %; NaN until every cell has a pixel."""
        if not bool((self.counts > 0).all()):
            return math.nan
        means = self.sums / self.counts
        return float(100.0 * (means.max() / means.min() - 1.0))


def _gaussian_window(device: torch.device) -> torch.Tensor:
    """The 1-D SSIM window, exactly as ``scipy.ndimage.gaussian_filter`` builds it."""
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    window = torch.exp(-0.5 / SSIM_SIGMA**2 * x**2)
    return window / window.sum()


def ssim(completed: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) on [0, 1] values -> ``(N,)``.

    Equal (to float64 rounding) to scikit-image's ``structural_similarity(a, b,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
    channel_axis=-1)`` on ``(H, W, C)`` arrays: Gaussian-weighted local statistics, the SSIM
    map averaged over positions where the 11x11 window lies inside the image, then over
    channels. Images must be at least 11x11.
    """
    _check(completed, target, None)
    n, c, h, w = completed.shape
    window = _gaussian_window(completed.device)
    size = window.numel()
    if h < size or w < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size}, got {h}x{w}")
    # Separable 'valid' filtering: outside the crop skimage's reflect padding never matters.
    rows = window.view(1, 1, size, 1).expand(c, 1, size, 1)
    cols = window.view(1, 1, 1, size).expand(c, 1, 1, size)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, rows, groups=c), cols, groups=c)

    x = completed.double()
    y = target.double()
    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1 = SSIM_K1**2
    c2 = SSIM_K2**2
    ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return ssim_map.mean(dim=(2, 3)).mean(dim=1)


def image_metrics(
    completed: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every metric of :data:`METRICS` for a batch -> ``{key: (N,) float64}``.

    ``completed`` is judged as given: callers composite known pixels first if they want the
    whole-image numbers to reflect the fill alone.
    """
    _check(completed, target, mask)
    return {
        "l1": mean_l1_error(completed, target),
        "l2": mean_l2_error(completed, target),
        "psnr": psnr(completed, target),
        "tv": tv_loss(completed),
        "ssim": ssim(completed, target),
        "hole_l1": mean_l1_error(completed, target, mask),
        "hole_l2": mean_l2_error(completed, target, mask),
        "hole_psnr": psnr(completed, target, mask),
        "hole_tv_ratio": hole_tv(completed, mask) / hole_tv(target, mask),
    }


@dataclass
class RunningStats:
    """Streaming mean and (population, ddof = 0) standard deviation of one metric.

    Welford's update keeps it exact-enough and O(1) in memory. ``+inf`` values are counted in
    ``infinite`` and NaN (undefined) ones in ``undefined``; neither enters mean or std — so a
    mean PSNR is the mean over images with a nonzero error, reported beside how many had none.
    """

    count: int = 0
    mean: float = math.nan
    _m2: float = 0.0
    infinite: int = 0
    undefined: int = 0

    def add(self, value: float) -> None:
        """Include one per-image value."""
        if math.isnan(value):
            self.undefined += 1
            return
        if math.isinf(value):
            self.infinite += 1
            return
        self.count += 1
        if self.count == 1:
            self.mean = value
            self._m2 = 0.0
            return
        delta = value - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (value - self.mean)

    @property
    def std(self) -> float:
        """Population standard deviation of the finite values (NaN when there are none)."""
        return math.sqrt(self._m2 / self.count) if self.count else math.nan

    def as_dict(self) -> dict[str, float | int]:
        """``{"mean", "std", "count", "infinite", "undefined"}`` (mean/std NaN when count is 0)."""
        return {
            "mean": self.mean,
            "std": self.std,
            "count": self.count,
            "infinite": self.infinite,
            "undefined": self.undefined,
        }
