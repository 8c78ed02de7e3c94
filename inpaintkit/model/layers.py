"""Convolution building blocks of the inpainting network (paper section 3, appendix D).

Every generator convolution is "same"-sized with mirror (reflect) padding, ELU activation and
no normalisation layer (the paper found batch norm hurts colour consistency); upsampling is a
nearest-neighbour 2x resize followed by a convolution, as the authors' ``gen_deconv``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["elu", "relu", "none"]


def init_like_tensorflow(layer: nn.Conv2d | nn.Linear) -> None:
    """Glorot-uniform weights and zero biases: the defaults of ``tf.layers.conv2d`` and
    ``tf.layers.dense``, which the authors' code never overrides.

    Why not PyTorch's default (Kaiming-uniform with ``a = sqrt(5)``, a third of Glorot's
    variance when fan-in equals fan-out): through the coarse network's 17 plain ELU layers it
    shrinks the activations ~15x (std 0.31 -> 0.02 at init) and the first layer's relative
    gradient to ~1e-6 (Glorot: ~1e-1), so the network starts blind to its input and the early
    training only learns biases, i.e. mean colours (docs/model-card.md, stint 3).
    """
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def pad_exactly(x: torch.Tensor, pads: tuple[int, ...], mode: str) -> torch.Tensor:
    """``F.pad(x, pads, mode=mode)`` in ``x``'s own dtype, even under autocast.

    CPU autocast puts reflection and replication padding on its fp32 list: around every bf16
    conv that meant a cast up before the pad and a cast back before the conv, forward and
    backward, ~14 % of a 256² CPU training step in copies (docs/benchmarks.md). Padding only
    moves values, so the forward is bit-identical (tested). The backward now sums the gradients
    of reflected border pixels in bf16 rather than fp32; the weight gradients stayed as close to
    an fp32 step's as before (benchmarks/bench_pad.py).
    """
    with torch.autocast(x.device.type, enabled=False):
        return F.pad(x, pads, mode=mode)


def mirror_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad ``(N, C, H, W)`` by ``pad`` on every side with reflection.

    Reflection is undefined when ``pad >= H`` or ``pad >= W`` (e.g. the dilation-16 layer on the
    16x16 feature map of a 64x64 input); there the edge pixel is repeated instead, the same
    fallback as :func:`inpaintkit.tensors.pad_to_multiple`, so any multiple-of-8 size works.
    """
    if pad == 0:
        return x
    mode = "reflect" if pad < x.shape[-2] and pad < x.shape[-1] else "replicate"
    return pad_exactly(x, (pad, pad, pad, pad), mode)


class GenConv(nn.Module):
    """One generator layer ``K{kernel}D{dilation}S{stride}C{out}``: mirror pad, conv, activation.

    ``(N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride)`` (H, W divisible by
    ``stride``). The padding is ``dilation * (kernel - 1) / 2`` so stride 1 keeps the size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        activation: Activation = "elu",
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for symmetric padding, got {kernel_size}")
        self.out_channels = out_channels
        self.pad = dilation * (kernel_size - 1) // 2
        self.activation = activation
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, padding=0
        )
        init_like_tensorflow(self.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(mirror_pad(x, self.pad))
        # The conv output is a fresh tensor, so the activation may overwrite it in place.
        if self.activation == "elu":
            return F.elu(x, inplace=True)
        if self.activation == "relu":
            return F.relu(x, inplace=True)
        return x

    def extra_repr(self) -> str:
        return f"pad={self.pad}, activation={self.activation}"


#: ``_PHASE_TAPS[a]`` folds the 3 taps of a 3x3 kernel row (dy = -1, 0, 1) into the 2 taps
#: that output phase ``a`` of a nearest 2x upsampling sees: phase 0 (even rows) reads low-res
#: rows i-1 and i, phase 1 (odd rows) rows i and i+1.
_PHASE_TAPS = (((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0)))


def upsample_conv_kernels(weight: torch.Tensor) -> torch.Tensor:
    """3x3 kernels ``(O, I, 3, 3)`` -> equivalent 2x2 sub-pixel kernels ``(4·O, I, 2, 2)``.

    Output channel ``4·o + 2·a + b`` produces phase ``(a, b)`` (row parity, column parity) of
    output channel ``o`` of "nearest 2x upsample, then 3x3 conv".
    """
    taps = torch.tensor(_PHASE_TAPS, dtype=weight.dtype, device=weight.device)  # (2, 2, 3)
    kernels = torch.einsum("apy,bqx,oiyx->oabipq", taps, taps, weight)
    return kernels.reshape(4 * weight.shape[0], weight.shape[1], 2, 2)


#: The decoders' 2x resize modes (:class:`GenDeconv`).
UPSAMPLE_MODES = ("nearest", "bilinear")


class GenDeconv(nn.Module):
    """``resize(2x)`` then ``K3S1C{out}``: nearest-neighbour upsampling and a mirror-padded conv.

    ``(N, in_channels, H, W) -> (N, out_channels, 2H, 2W)``, ELU. Resize-then-convolve avoids
    the checkerboard artefacts of transposed convolutions (the authors' ``gen_deconv``).

    Computed without materialising the upsampled map: each output pixel of a nearest 2x
    upsampling followed by a 3x3 conv sees only 2x2 low-resolution pixels, with a kernel that
    depends on its phase (row and column parity), so one 2x2 conv with ``4·out`` channels on
    the low-resolution input, then a pixel shuffle, gives the same result with 16 instead of
    36 multiply-adds per 4 outputs. Mirror padding the upsampled map by one pixel repeats its
    edge rows, which is replicate padding of the low-resolution map, so the result is exactly
    "upsample, reflect pad, conv" up to float rounding (tested). The parameters are the
    ordinary 3x3 conv's, so checkpoints do not depend on this.

    ``mode="bilinear"`` [ours] resizes bilinearly (``align_corners=False``, which is nearest
    neighbour followed by the ``[1, 2, 1] / 4`` blur along each axis) and then runs the
    mirror-padded conv on the upsampled map. Nearest neighbour hands the next convs 2 × 2 blocks whose edges sit at a
    fixed phase, from which they can draw a pattern that repeats every 2 (and, after two
    resizes, 4) output pixels; a bilinear map has no such edges (docs/model.md, "The faint
    ~8 px grid").
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest") -> None:
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
        self.conv = GenConv(in_channels, out_channels, 3)
        self.out_channels = out_channels
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            upsampled = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            return self.conv(upsampled)
        conv = self.conv.conv
        height, width = x.shape[-2:]
        kernels = upsample_conv_kernels(conv.weight)
        bias = conv.bias.repeat_interleave(4) if conv.bias is not None else None
        # (N, 4·O, H + 1, W + 1): window (i, j) covers low-res rows i-1..i, cols j-1..j.
        phases = F.conv2d(pad_exactly(x, (1, 1, 1, 1), "replicate"), kernels, bias)
        phases = phases.unflatten(1, (-1, 4))
        # Phase (a, b) at output (2i + a, 2j + b) uses window (i + a, j + b).
        shifted = [
            phases[:, :, 2 * a + b, a : a + height, b : b + width] for a in (0, 1) for b in (0, 1)
        ]
        out = F.pixel_shuffle(torch.stack(shifted, dim=2).flatten(1, 2), 2)
        return F.elu(out, inplace=True)
