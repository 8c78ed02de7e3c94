"""The coarse-to-fine inpainting generator (paper sections 3 and 4.2, appendix D).

Stage one, :class:`CoarseNetwork`, is a dilated-convolution encoder-decoder trained with the
reconstruction loss. Its prediction is pasted into the hole and fed to stage two,
:class:`RefineNetwork`: two parallel encoders — the dilated branch that hallucinates new content
and the contextual-attention branch that borrows features from the known background — whose
outputs are concatenated and decoded by one decoder (fig. 4).

Channel widths below are written for the default ``channels = c = 32`` (appendix D); every
width scales with ``c`` (``C64 = 2c``, ``C128 = 4c``, ``C16 = c / 2``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from inpaintkit.model.attention import FOREGROUND_MODES, PASTE_WINDOWS, ContextualAttention
from inpaintkit.model.layers import UPSAMPLE_MODES, GenConv, GenDeconv
from inpaintkit.model.noise import NoiseInputs
from inpaintkit.tensors import composite

#: The input has 5 channels: masked image (3, holes zeroed), a channel of ones, the mask.
INPUT_CHANNELS = 5


#: The :class:`GeneratorConfig` fields that decide the generator's parameters (their shapes and
#: number). The others (the ``attention_*`` options, ``upsample``) only change how the same
#: weights compute, so weights trained under one setting load under another.
PARAMETER_FIELDS = ("channels", "contextual_attention", "noise_inputs", "noise_gates")


#: Indices of the refinement decoder's layers (:func:`decoder`) whose outputs take noise
#: inputs: every layer from the first resize on but the last (RGB) conv.
NOISE_LAYERS = (2, 3, 4, 5)


@dataclass
class GeneratorConfig:
    """Architecture of :class:`Generator`; stored in every checkpoint.

    ``contextual_attention = False`` builds the paper's "baseline model" (Table 1, fig. 2):
    the refinement network keeps only its dilated branch, so its decoder's first conv takes
    ``4c`` input channels instead of the ``8c`` of the concatenated branches.
    The ``attention_*`` fields are the :class:`~inpaintkit.model.attention.ContextualAttention`
    options of section 4.1 (the authors' values: rate 2, stride 1, λ = 10, propagation k = 3;
    ``attention_propagate_size = 1`` turns attention propagation off).
    ``attention_foreground = "hole"`` (default) computes attention only for the hole's window
    and keeps the features outside the hole; ``"all"`` is the released code's layer, which
    also rebuilds the known positions (docs/model.md, "Contextual attention: which foreground
    positions").
    ``attention_paste = "tent"`` pastes the attended patches with a tent window instead of the
    paper's box: no step at each block's centre (docs/model.md, "Contextual attention").
    ``upsample = "bilinear"`` [ours] doubles the decoders' resolution bilinearly instead of the
    paper's nearest neighbour (:class:`~inpaintkit.model.layers.GenDeconv`); it has no
    parameters, so the same weights load either way.
    ``noise_inputs = True`` [ours] adds per-pixel noise to the refinement decoder's feature maps
    after its first resize, with learned per-channel strengths that start at zero
    (:mod:`~inpaintkit.model.noise`): a source of detail that is not drawn on the decoder's
    4 × 4-pixel cell grid. It adds parameters; a run may still start from a checkpoint without
    them (``--init-from``), which it then computes exactly.
    ``noise_gates = True`` [ours] (with ``noise_inputs``) lets the features decide where the
    noise goes: a gate per injection point, 1 at init, that scales the noise pixel by pixel
    (:class:`~inpaintkit.model.noise.NoiseInputs`), so that texture can keep it while a clear
    sky sheds it. Added parameters again, and again addable by ``--init-from``.
    """

    channels: int = 32
    contextual_attention: bool = True
    attention_rate: int = 2
    attention_stride: int = 1
    attention_softmax_scale: float = 10.0
    attention_propagate_size: int = 3
    attention_foreground: str = "hole"
    attention_paste: str = "box"
    upsample: str = "nearest"
    noise_inputs: bool = False
    noise_gates: bool = False

    def __post_init__(self) -> None:
        if self.channels < 2 or self.channels % 2:
            raise ValueError(f"channels must be an even number >= 2, got {self.channels}")
        if self.attention_rate < 1:
            raise ValueError(f"attention_rate must be >= 1, got {self.attention_rate}")
        if self.attention_stride < 1:
            raise ValueError(f"attention_stride must be >= 1, got {self.attention_stride}")
        if self.attention_softmax_scale <= 0:
            raise ValueError(
                f"attention_softmax_scale must be > 0, got {self.attention_softmax_scale}"
            )
        if self.attention_propagate_size < 1 or self.attention_propagate_size % 2 == 0:
            raise ValueError(
                f"attention_propagate_size must be a positive odd number, got {self.attention_propagate_size}"
            )
        if self.attention_foreground not in FOREGROUND_MODES:
            raise ValueError(
                f"attention_foreground must be one of {FOREGROUND_MODES}, "
                f"got {self.attention_foreground!r}"
            )
        if self.attention_paste not in PASTE_WINDOWS:
            raise ValueError(
                f"attention_paste must be one of {PASTE_WINDOWS}, got {self.attention_paste!r}"
            )
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.noise_gates and not self.noise_inputs:
            raise ValueError("noise_gates needs noise_inputs: the gates scale the noise inputs")


def fields_blocking_init(source: GeneratorConfig, target: GeneratorConfig) -> list[str]:
    """The :data:`PARAMETER_FIELDS` in which ``source``'s weights cannot start a generator of
    config ``target`` (``train --init-from``); empty when they can. Noise inputs and their
    gates may be added (``source`` without, ``target`` with): the strengths start at zero and
    the gates at one, so the new generator computes exactly what ``source``'s did. Dropping
    either would change what it computes."""
    addable = ("noise_inputs", "noise_gates")
    return [
        name
        for name in PARAMETER_FIELDS
        if getattr(source, name) != getattr(target, name)
        and not (name in addable and getattr(target, name))
    ]


@dataclass
class GeneratorOutput:
    """Raw (not composited) generator outputs.

    ``coarse``, ``refined``: ``(N, 3, H, W)`` in ``[-1, 1]``; ``offsets``: ``(N, 2, H/4, W/4)``
    long (dy, dx) in feature pixels from contextual attention, or ``None`` when not requested
    or when the model has no attention branch. ``noise_gates``: with ``noise_gates``, each
    injection point's gate (:data:`NOISE_LAYERS` order), ``(N, 1, h, w)`` in ``(0, 2)`` at
    that layer's resolution (H/2 or H); ``None`` without.
    """

    coarse: torch.Tensor
    refined: torch.Tensor
    offsets: torch.Tensor | None = None
    noise_gates: tuple[torch.Tensor, ...] | None = None


def dilated_encoder(in_channels: int, c: int) -> nn.Sequential:
    """K5S1C32 - K3S2C64 - K3S1C64 - K3S2C128 - K3S1C128 - K3S1C128 - K3D{2,4,8,16}S1C128.

    ``(N, in_channels, H, W) -> (N, 4c, H/4, W/4)``: the coarse network's encoder, also the
    refinement network's dilated ("hallucination") branch.
    """
    return nn.Sequential(
        GenConv(in_channels, c, 5),
        GenConv(c, 2 * c, 3, stride=2),
        GenConv(2 * c, 2 * c, 3),
        GenConv(2 * c, 4 * c, 3, stride=2),
        GenConv(4 * c, 4 * c, 3),
        GenConv(4 * c, 4 * c, 3),
        GenConv(4 * c, 4 * c, 3, dilation=2),
        GenConv(4 * c, 4 * c, 3, dilation=4),
        GenConv(4 * c, 4 * c, 3, dilation=8),
        GenConv(4 * c, 4 * c, 3, dilation=16),
    )


def decoder(in_channels: int, c: int, upsample: str = "nearest") -> nn.Sequential:
    """K3S1C128 - K3S1C128 - resize(2x) - K3S1C64 - K3S1C64 - resize(2x) - K3S1C32 - K3S1C16 - K3S1C3.

    ``(N, in_channels, H/4, W/4) -> (N, 3, H, W)``, unbounded; the caller clips it. The last
    conv has no activation. ``upsample``: the resize's mode (:class:`GenDeconv`).
    """
    return nn.Sequential(
        GenConv(in_channels, 4 * c, 3),
        GenConv(4 * c, 4 * c, 3),
        GenDeconv(4 * c, 2 * c, upsample),
        GenConv(2 * c, 2 * c, 3),
        GenDeconv(2 * c, c, upsample),
        GenConv(c, c // 2, 3),
        GenConv(c // 2, 3, 3, activation="none"),
    )


def clip(x: torch.Tensor) -> torch.Tensor:
    """The paper's output "clip" to ``[-1, 1]`` (no tanh).

    As in the authors' ``tf.clip_by_value``, the gradient is zero where the raw output lies
    outside ``[-1, 1]``; the reconstruction loss then cannot pull such a pixel back, which the
    authors accepted in exchange for no saturation inside the range.
    """
    return x.clamp(-1.0, 1.0)


class CoarseNetwork(nn.Module):
    """Stage one: ``(N, 5, H, W)`` network input -> ``(N, 3, H, W)`` in ``[-1, 1]`` (appendix D)."""

    def __init__(self, c: int, upsample: str = "nearest") -> None:
        super().__init__()
        self.encoder = dilated_encoder(INPUT_CHANNELS, c)
        self.decoder = decoder(4 * c, c, upsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return clip(self.decoder(self.encoder(x)))


class AttentionBranch(nn.Module):
    """The refinement network's contextual-attention encoder (section 4.2, appendix D).

    K5S1C32 - K3S2C64 - K3S1C64 - K3S2C128 - K3S1C128 - K3S1C128 (ReLU, as the authors' code)
    - contextual attention - K3S1C128 - K3S1C128: ``(N, 5, H, W) -> (N, 4c, H/4, W/4)``.
    The features attend to themselves: foreground and background are the same map, the hole
    (resized by the layer) separating the two.
    """

    def __init__(self, c: int, config: GeneratorConfig) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            GenConv(INPUT_CHANNELS, c, 5),
            GenConv(c, 2 * c, 3, stride=2),
            GenConv(2 * c, 2 * c, 3),
            GenConv(2 * c, 4 * c, 3, stride=2),
            GenConv(4 * c, 4 * c, 3),
            GenConv(4 * c, 4 * c, 3, activation="relu"),
        )
        self.attention = ContextualAttention(
            patch_size=3,
            propagate_size=config.attention_propagate_size,
            softmax_scale=config.attention_softmax_scale,
            rate=config.attention_rate,
            stride=config.attention_stride,
            fuse=config.attention_propagate_size > 1,
            foreground=config.attention_foreground,
            paste=config.attention_paste,
        )
        self.decoder = nn.Sequential(GenConv(4 * c, 4 * c, 3), GenConv(4 * c, 4 * c, 3))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, return_offsets: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.encoder(x)
        if return_offsets:
            features, offsets = self.attention(features, features, mask, return_offsets=True)
        else:
            features, offsets = self.attention(features, features, mask), None
        return self.decoder(features), offsets


class RefineNetwork(nn.Module):
    """Stage two: ``(N, 5, H, W)`` input built from the pasted coarse result -> ``(N, 3, H, W)``.

    With attention, the dilated branch ``(N, 4c, H/4, W/4)`` and the attention branch
    ``(N, 4c, H/4, W/4)`` are concatenated (dilated first) into the decoder's ``8c`` channels;
    without it (baseline model) the decoder reads the dilated branch's ``4c`` channels.
    """

    def __init__(self, c: int, config: GeneratorConfig) -> None:
        super().__init__()
        self.dilated = dilated_encoder(INPUT_CHANNELS, c)
        self.attention = AttentionBranch(c, config) if config.contextual_attention else None
        decoder_in = 8 * c if config.contextual_attention else 4 * c
        self.decoder = decoder(decoder_in, c, config.upsample)
        self.noise = None
        if config.noise_inputs:
            self.noise = NoiseInputs(
                [self.decoder[i].out_channels for i in NOISE_LAYERS], gated=config.noise_gates
            )

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, return_offsets: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, ...] | None]:
        """-> the prediction, the attention offsets and the noise gates (see
        :class:`GeneratorOutput`)."""
        features = self.dilated(x)
        offsets = None
        if self.attention is not None:
            attended, offsets = self.attention(x, mask, return_offsets)
            features = torch.cat([features, attended], dim=1)
        decoded, gates = self.decode(features)
        return clip(decoded), offsets, gates

    def decode(
        self, features: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The decoder, with the noise inputs after :data:`NOISE_LAYERS` when there are any,
        and their gates when they are gated (else None)."""
        if self.noise is None:
            return self.decoder(features), None
        x = features
        gates = []
        for index, layer in enumerate(self.decoder):
            x = layer(x)
            if index in NOISE_LAYERS:
                x, gate = self.noise(x, NOISE_LAYERS.index(index))
                if gate is not None:
                    gates.append(gate)
        return x, tuple(gates) or None


class Generator(nn.Module):
    """DeepFill v1: coarse network, paste, refinement network (paper fig. 2 and 4).

    ``forward(image (N, 3, H, W) in [-1, 1], mask (N, 1, H, W) in {0, 1}, 1 = hole)`` with H
    and W multiples of :attr:`multiple`. Hole pixels of ``image`` are ignored (zeroed before
    the network sees them). Use :func:`inpaintkit.inpaint.inpaint` for any size and a
    composited result.
    """

    #: H and W must be multiples of this: two stride-2 convs, then attention at rate 2.
    multiple = 8

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else GeneratorConfig()
        c = self.config.channels
        self.coarse = CoarseNetwork(c, self.config.upsample)
        self.refine = RefineNetwork(c, self.config)

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, return_offsets: bool = False
    ) -> GeneratorOutput:
        """Return :class:`GeneratorOutput` (raw, not composited, predictions in ``[-1, 1]``)."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (N, 3, H, W), got {tuple(image.shape)}")
        if mask.shape != (image.shape[0], 1, *image.shape[2:]):
            raise ValueError(
                f"mask must be (N, 1, H, W) matching image {tuple(image.shape)}, got {tuple(mask.shape)}"
            )
        height, width = image.shape[-2:]
        if height % self.multiple or width % self.multiple:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of {self.multiple}; "
                "pad it first (tensors.pad_to_multiple) or use inpaintkit.inpaint.inpaint"
            )
        mask = mask.to(image.dtype)
        ones = torch.ones_like(mask)
        # Holes are zeroed as in the authors' code, so whatever the caller left there is unseen.
        masked = composite(image, torch.zeros_like(image), mask)
        coarse = self.coarse(torch.cat([masked, ones, mask], dim=1))
        # Paste the coarse prediction into the hole; no stop-gradient (the authors left it
        # commented out), so the refinement losses also train the coarse network.
        pasted = composite(masked, coarse, mask)
        refined, offsets, gates = self.refine(
            torch.cat([pasted, ones, mask], dim=1), mask, return_offsets
        )
        return GeneratorOutput(coarse=coarse, refined=refined, offsets=offsets, noise_gates=gates)
