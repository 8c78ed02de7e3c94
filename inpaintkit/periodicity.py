"""How much a fill repeats itself: the autocorrelation of its detail, whatever the phase.

The per-image lattice (``losses.lattice_loss_per_image``) sees a grid only where the grid keeps
one phase over the whole hole. The adversarial runs' fills learned checkerboards and chevrons
whose phase drifts across the hole, which a lattice averages away (stint 14, docs/model.md):
the lattice loss was met while the pattern was plain to see. Autocorrelation does not care
about phase: a pattern that repeats every ``d`` pixels correlates with itself shifted by
``d``, wherever it starts, while a photo's detail (the high-pass residual) decorrelates within
a pixel or two. :func:`periodicity` is the largest correlation at a shift of 3 px or more.
"""

from __future__ import annotations

import torch

from inpaintkit.metrics import high_pass, hole_interior

#: Shifts nearer than this (Chebyshev distance, px) are left out of :func:`periodicity`: at 1-2
#: px the 3 × 3 high-pass itself correlates neighbours, photo or not.
MIN_LAG = 3
#: The largest shift measured, px: the grids the adversarial runs drew repeat every 3-16 px.
MAX_LAG = 16


def residual_autocovariance(
    image: torch.Tensor, mask: torch.Tensor, max_lag: int = MAX_LAG
) -> torch.Tensor:
    """The autocovariance of the high-pass residual inside each hole -> ``(N, 2·max_lag + 1,
    2·max_lag + 1)``, float64, shift ``(dy, dx)`` at index ``(max_lag + dy, max_lag + dx)``.

    ``image (N, C, H, W)`` (any range), ``mask (N, 1, H, W)`` (1 = hole). With ``r`` the
    residual (``metrics.high_pass``) and ``I`` the hole eroded by 2 px
    (``metrics.hole_interior``): ``c(d) = mean r(x)·r(x + d)``, over the pairs with both pixels
    in ``I`` and over channels (summed over channels, as the power is); 0 where no pair has
    shift ``d``. Computed with FFTs, differentiable in ``image``.
    """
    inside = hole_interior(mask)[:, None].double()  # (N, 1, H, W)
    residual = high_pass(image.double()) * inside
    height, width = residual.shape[-2:]
    # Zero-padded by max_lag, so that the FFTs' circular correlation has no wrapped pairs.
    size = (height + max_lag, width + max_lag)
    spectrum = torch.fft.rfft2(residual, s=size)
    mask_spectrum = torch.fft.rfft2(inside, s=size)
    products = torch.fft.irfft2((spectrum * spectrum.conj()).sum(dim=1), s=size)
    pairs = torch.fft.irfft2((mask_spectrum * mask_spectrum.conj())[:, 0], s=size)
    lags = torch.arange(-max_lag, max_lag + 1, device=image.device)
    rows, cols = lags % size[0], lags % size[1]
    products = products[:, rows][:, :, cols]
    pairs = pairs[:, rows][:, :, cols].round()  # counts; the FFT leaves ~1e-12 of noise
    return torch.where(pairs > 0, products / pairs.clamp(min=1), 0.0)


def residual_power(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The power of the high-pass residual inside each hole -> ``(N,)``, float64: the
    autocovariance at ``d = 0`` (:func:`residual_autocovariance`'s centre), ``mean r(x)²``
    over the hole's eroded interior, summed over channels; 0 where the interior is empty.
    Elementwise, without the FFTs a whole autocovariance needs."""
    inside = hole_interior(mask)[:, None].double()  # (N, 1, H, W)
    energy = (high_pass(image.double()).square() * inside).sum(dim=(1, 2, 3))
    pixels = inside.sum(dim=(1, 2, 3))
    return torch.where(pixels > 0, energy / pixels.clamp(min=1), 0.0)


def power_ratio(image: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The power of ``image``'s residual over ``reference``'s in each hole
    (:func:`residual_power`) -> ``(N,)``, float64, >= 0. :func:`repetition` of ``image`` times
    this is its ``reference=`` variant (a positive factor per image keeps the largest and
    smallest shift), without a second autocovariance."""
    tiny = torch.finfo(torch.float64).tiny
    return residual_power(image, mask) / residual_power(reference, mask).clamp(min=tiny)


def residual_autocorrelation(
    image: torch.Tensor,
    mask: torch.Tensor,
    max_lag: int = MAX_LAG,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """The normalised autocorrelation of the high-pass residual inside each hole ->
    ``(N, 2·max_lag + 1, 2·max_lag + 1)``, float64, shift ``(dy, dx)`` at index ``(max_lag +
    dy, max_lag + dx)``.

    :func:`residual_autocovariance` over its value at ``d = 0`` (the residual's power):
    ``ρ(d) = mean r(x)·r(x + d) / mean r(x)²``; 1 at ``d = 0``, near 0 where detail does not
    repeat, 0 where no pair has shift ``d``.

    ``reference (N, C, H, W)``: divide by the power of this image's residual in the same hole
    instead (the photo behind a fill). Grain that repeats nowhere (stint 20's noise inputs)
    raises a fill's own power and so shrinks every ``ρ(d)`` of its own: a checkerboard under
    grain reads as faint as a faint checkerboard. In the photo's units a pattern is measured by
    its own strength, whatever else the fill adds.
    """
    covariance = residual_autocovariance(image, mask, max_lag)
    if reference is None:
        power = covariance[:, max_lag, max_lag]
    else:
        with torch.no_grad():
            power = residual_power(reference, mask)
    tiny = torch.finfo(covariance.dtype).tiny
    return covariance / power.clamp(min=tiny)[:, None, None]


def far_shifts(min_lag: int, max_lag: int, device: torch.device | None = None) -> torch.Tensor:
    """Which entries of :func:`residual_autocorrelation`'s ``(2·max_lag + 1, 2·max_lag + 1)``
    are shifts of ``min_lag`` px or more (Chebyshev distance) -> bool, that shape."""
    lags = torch.arange(-max_lag, max_lag + 1, device=device)
    return torch.maximum(lags[:, None].abs(), lags[None, :].abs()) >= min_lag


def repetition(
    image: torch.Tensor,
    mask: torch.Tensor,
    min_lag: int = MIN_LAG,
    max_lag: int = MAX_LAG,
    reference: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`periodicity` and :func:`alternation` from one autocorrelation -> two ``(N,)``,
    float64, NaN where the hole's eroded interior is empty (validation logs both).
    ``reference``: in the units of that image's detail (:func:`residual_autocorrelation`)."""
    rho = residual_autocorrelation(image, mask, max_lag, reference)
    far = rho[:, far_shifts(min_lag, max_lag, image.device)]
    empty = ~hole_interior(mask).flatten(1).any(dim=1)
    return (
        torch.where(empty, torch.nan, far.amax(dim=1)),
        torch.where(empty, torch.nan, -far.amin(dim=1)),
    )


def periodicity(
    image: torch.Tensor, mask: torch.Tensor, min_lag: int = MIN_LAG, max_lag: int = MAX_LAG
) -> torch.Tensor:
    """The largest autocorrelation (:func:`residual_autocorrelation`) at a shift of
    ``min_lag`` to ``max_lag`` px (Chebyshev distance) -> ``(N,)``, float64, NaN where the
    hole's eroded interior is empty.

    A photo's hole scores about 0.05-0.4 (the upper end for photos that repeat themselves:
    woven, tiled, striped), a 6 px checkerboard of 5 % contrast over a photo 0.5 and more,
    whatever its phase and wherever its phase changes. Compare a fill with its photo.
    """
    return repetition(image, mask, min_lag, max_lag)[0]


def alternation(
    image: torch.Tensor, mask: torch.Tensor, min_lag: int = MIN_LAG, max_lag: int = MAX_LAG
) -> torch.Tensor:
    """Minus the smallest autocorrelation (:func:`residual_autocorrelation`) at a shift of
    ``min_lag`` to ``max_lag`` px -> ``(N,)``, float64, NaN where the hole's eroded interior
    is empty.

    A checkerboard of cells ``c`` px wide correlates with itself at ``2c`` only while its phase
    holds, but against itself at ``c`` wherever it is: light cells land on dark ones. So
    :func:`periodicity` missed the ~4 px cells of the TTUR run's fills, whose phase drifts
    (0.22 against the photos' 0.19 on rect256, stint 19), where this measure sees them (0.31
    against 0.11). Compare a fill with its photo.
    """
    return repetition(image, mask, min_lag, max_lag)[1]
