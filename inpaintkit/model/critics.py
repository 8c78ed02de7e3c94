"""The two WGAN-GP critics (paper section 3, appendix D) and the local critic's hole crop.

The global critic judges the whole completed image; the local critic judges the hole's
bounding box, resampled to a fixed size. Both are plain stacks of K5S2 convolutions with
Leaky ReLU (slope 0.2) and a fully connected layer to one unbounded score — no normalisation,
no sigmoid (a Wasserstein critic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inpaintkit.model.layers import init_like_tensorflow

#: Leaky ReLU slope of both critics (appendix D).
LEAKY_SLOPE = 0.2


class BinomialBlur(nn.Module):
    """Each channel low-passed by the 3 × 3 binomial filter ``[1, 2, 1]ᵀ[1, 2, 1] / 16``.

    ``(N, C, H, W) -> (N, C, ceil(H / stride), ceil(W / stride))``, zero "same" padding (as
    the critics' convolutions). Its response falls to 0 at the Nyquist frequency, so a
    stride-2 subsampling after it does not alias, and — what the critics need it for — the
    transpose of "blur, then subsample" (the path a gradient takes back) is a bilinear
    upsampling, with no 2-periodic lattice (Zhang 2019, "Making convolutional networks
    shift-invariant again"; StyleGAN2's discriminator low-passes before every downsampling).
    """

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (taps[:, None] * taps[None]) / 16.0, persistent=False)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(channels, 1, 3, 3)
        return F.conv2d(x, weight, stride=self.stride, padding=1, groups=channels)


def _halving_layer(
    in_channels: int, width: int, *, antialias: bool, on_image: bool
) -> list[nn.Module]:
    """One K5S2 layer of appendix D: a 5 × 5 convolution and Leaky ReLU that halve H and W.

    Zero "same" padding, as the authors' dis_conv (TF padding='SAME'). ``antialias`` [ours]
    keeps the output's size and the weights' shapes but low-passes before each subsampling, so
    the critic's gradient with respect to its input has no lattice anchored at the input's
    origin (docs/model.md, "The faint ~8 px grid"). On the image itself (``on_image``) the
    convolution runs at stride 1 and the blur subsamples after the activation: a blur before
    it would hide from the critic the finest detail (and the generator's 2 px lattice) it
    must judge. Deeper, the blur comes first and the convolution keeps stride 2 (4 × cheaper).
    """
    activation = nn.LeakyReLU(LEAKY_SLOPE)
    if not antialias:
        return [nn.Conv2d(in_channels, width, 5, stride=2, padding=2), activation]
    if on_image:
        return [nn.Conv2d(in_channels, width, 5, padding=2), activation, BinomialBlur(stride=2)]
    return [BinomialBlur(), nn.Conv2d(in_channels, width, 5, stride=2, padding=2), activation]


class _Critic(nn.Module):
    """K5S2 convolutions with the given widths, then a fully connected layer to one score."""

    def __init__(self, input_size: int, widths: tuple[int, ...], antialias: bool = False) -> None:
        super().__init__()
        factor = 2 ** len(widths)
        if input_size <= 0 or input_size % factor:
            raise ValueError(
                f"input_size must be a positive multiple of {factor}, got {input_size}"
            )
        self.input_size = input_size
        layers: list[nn.Module] = []
        in_channels = 3
        for width in widths:
            layers += _halving_layer(in_channels, width, antialias=antialias, on_image=not layers)
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels * (input_size // factor) ** 2, 1)
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                init_like_tensorflow(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, s, s)`` in ``[-1, 1]`` -> ``(N,)`` unbounded scores (s = ``input_size``)."""
        self._check_input(x)
        return self.fc(self.features(x).flatten(1)).squeeze(1)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`forward`'s scores and each halving layer's output -> ``((N,), [(N, c_l,
        s / 2^l, s / 2^l)])`` for l = 1, 2, ...: what the generator's feature-matching term
        compares (``losses.feature_matching_loss``)."""
        self._check_input(x)
        maps = []
        for layer in self.features:
            x = layer(x)
            # A layer's output is where its subsampling is done: after the activation
            # without anti-aliasing (or deeper, where the blur comes first), after the
            # activation's blur on the image.
            if isinstance(layer, nn.LeakyReLU | BinomialBlur) and x.shape[-1] < (
                maps[-1].shape[-1] if maps else self.input_size
            ):
                maps.append(x)
        return self.fc(x.flatten(1)).squeeze(1), maps

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"{type(self).__name__} expects (N, 3, {self.input_size}, {self.input_size}), "
                f"got {tuple(x.shape)}"
            )


class LocalCritic(_Critic):
    """Local WGAN-GP critic: K5S2C64 - K5S2C128 - K5S2C256 - K5S2C512 - FC(1) (appendix D).

    Sees the hole's bounding box (:func:`crop_hole_boxes`) at ``input_size``²; widths scale
    with ``channels`` (c, 2c, 4c, 8c); ``antialias`` as :func:`_halving_layer`.
    """

    def __init__(self, input_size: int = 128, channels: int = 64, antialias: bool = False) -> None:
        widths = (channels, 2 * channels, 4 * channels, 8 * channels)
        super().__init__(input_size, widths, antialias)


class GlobalCritic(_Critic):
    """Global WGAN-GP critic: K5S2C64 - K5S2C128 - K5S2C256 - K5S2C256 - FC(1) (appendix D).

    Sees the whole ``input_size``² image; widths scale with ``channels`` (c, 2c, 4c, 4c);
    ``antialias`` as :func:`_halving_layer`.
    """

    def __init__(self, input_size: int = 256, channels: int = 64, antialias: bool = False) -> None:
        widths = (channels, 2 * channels, 4 * channels, 4 * channels)
        super().__init__(input_size, widths, antialias)


def hole_boxes(mask: torch.Tensor) -> torch.Tensor:
    """Each sample's hole bounding box: ``mask (N, 1, H, W)`` -> long ``(N, 4)``.

    Rows are ``(top, left, bottom, right)`` with exclusive ends; a sample without a hole gets
    the whole image ``(0, 0, H, W)``.
    """
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (N, 1, H, W), got {tuple(mask.shape)}")
    hole = mask[:, 0] > 0.5
    rows, cols = hole.any(dim=2), hole.any(dim=1)  # (N, H), (N, W)
    top, bottom = _first_last(rows)
    left, right = _first_last(cols)
    return torch.stack([top, left, bottom, right], dim=1)


def _first_last(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First index and one past the last index of True along dim 1 of ``(N, L)``; 0, L if none."""
    length = flags.shape[1]
    as_int = flags.to(torch.uint8)
    # argmax returns the first maximum, so it finds the first True (and 0 when there is none).
    first = as_int.argmax(dim=1)
    end = length - as_int.flip(1).argmax(dim=1)
    empty = ~flags.any(dim=1)
    return first.masked_fill(empty, 0), end.masked_fill(empty, length)


def _linear_weights(
    start: torch.Tensor, length: torch.Tensor, size: int, full: int, dtype: torch.dtype
) -> torch.Tensor:
    """Bilinear resampling matrices ``(N, size, full)`` taking ``[start, start + length)`` to ``size``.

    Same sampling as ``F.interpolate(mode="bilinear", align_corners=False)`` on the cropped
    range: source coordinate ``(o + 0.5) * length / size - 0.5``, clamped to the range, so no
    pixel outside the crop ever contributes.
    """
    scale = length.to(torch.float64) / size  # (N,)
    out = torch.arange(size, device=start.device, dtype=torch.float64)
    src = ((out[None] + 0.5) * scale[:, None] - 0.5).clamp(min=0.0)  # (N, size)
    last = (length - 1)[:, None]
    i0 = torch.minimum(src.floor().long(), last)
    frac = (src - i0).clamp(0.0, 1.0)
    i1 = torch.minimum(i0 + 1, last)
    weights = torch.zeros(start.shape[0], size, full, dtype=torch.float64, device=start.device)
    weights.scatter_add_(2, (start[:, None] + i0)[..., None], (1.0 - frac)[..., None])
    weights.scatter_add_(2, (start[:, None] + i1)[..., None], frac[..., None])
    return weights.to(dtype)


def crop_hole_boxes(images: torch.Tensor, mask: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each sample's hole bounding box and resample it to ``size × size`` (bilinear).

    ``images (N, C, H, W)`` (any C: images, or the mask itself for the local critic's
    gradient penalty), ``mask (N, 1, H, W)`` with ``1 = hole``, each sample its own box (see
    :func:`hole_boxes`; a sample without a hole uses the whole image). Returns
    ``(N, C, size, size)``, differentiable with respect to ``images``. Boxes smaller than
    ``size`` are upsampled. Written as two batched matrix products with per-sample bilinear
    weight matrices, so there is no loop over the batch.
    """
    if images.ndim != 4 or mask.shape != (images.shape[0], 1, *images.shape[2:]):
        raise ValueError(
            f"images (N, C, H, W) and mask (N, 1, H, W) must match, got {tuple(images.shape)} "
            f"and {tuple(mask.shape)}"
        )
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    boxes = hole_boxes(mask)
    height, width = images.shape[-2:]
    dtype = images.dtype if images.is_floating_point() else torch.float32
    rows = _linear_weights(boxes[:, 0], boxes[:, 2] - boxes[:, 0], size, height, dtype)  # (N, s, H)
    cols = _linear_weights(boxes[:, 1], boxes[:, 3] - boxes[:, 1], size, width, dtype)  # (N, s, W)
    resampled_rows = torch.matmul(rows[:, None], images.to(dtype))  # (N, C, s, W)
    return torch.matmul(resampled_rows, cols[:, None].transpose(-1, -2))  # (N, C, s, s)
