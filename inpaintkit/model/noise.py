"""Per-pixel noise inputs for the refinement decoder [ours] (StyleGAN, Karras et al. 2019, §2).

Why: the decoder works on a grid of 4 × 4-pixel cells and resizes it twice by nearest
neighbour, so whatever detail the critics ask for, it draws from the cells' features, with the
same layout in every cell: the adversarial runs' fills grow a lattice (and, once the losses
against it took out its fixed phase, a checkerboard whose phase drifts) as fast as they grow
detail (docs/model.md, "The faint ~8 px grid" and stint 19). Noise added to the feature maps
after the resizes is a source of detail that is not a function of the cell grid: each output
pixel gets its own random input, which the following convs can shape into texture.

The strengths start at zero, so a generator loaded from a checkpoint trained without noise
computes exactly what it did; training then decides how much noise each channel takes.

Gates (``gated=True``) [ours] let the features decide *where* the noise goes. A per-channel
strength is the same at every pixel, so noise that draws fur also draws grain on a clear sky,
and the only way the detail budget (``losses.detail_excess_loss``) can take the grain off the
sky is to take the noise off everything (stint 24: zeroing the strengths of a run's fills
cleared their skies and took rect256's hole TV ratio from 0.52 to 0.40). A gate is a 1 × 1
conv of the layer's features to one map, times :data:`GATE_GAIN`, through ``2 · sigmoid``,
in ``(0, 2)``, that multiplies the noise pixel by pixel. Zero weights and bias start it at
exactly 1: a generator with gates added computes what it did without them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Side of the fixed noise fields used in eval mode, in feature pixels. Tiled, they repeat
#: every 512 px at full resolution: far beyond any texture's scale.
FIELD_SIDE = 512

#: Seed of the fixed fields: every Generator, on every machine, fills with the same noise.
FIELD_SEED = 0

#: Gain on the gates' logits (StyleGAN's learning-rate multiplier): Adam moves each weight by
#: about the learning rate per step whatever its gradient's scale, so the gain is how much
#: faster the gates learn than the convs around them. Without it they barely moved: a gate's
#: gradient is the noise times the gradient reaching its layer, a fresh random draw at every
#: step, and after 200 generator steps at lr 1e-4 the gates on the smoothest fifth of the
#: photos' detail were only 0.005 below those on the busiest (stint 24).
GATE_GAIN = 30.0


class NoiseInputs(nn.Module):
    """``x + strength · gate(x) · noise`` for the feature maps of several layers.

    ``channels``: the feature channels of each injection point, in order. Each point has a
    learned per-channel strength ``(1, C, 1, 1)``, zeros at init, and one single-channel noise
    image broadcast over its channels (StyleGAN's "B" inputs). ``gated``: each point also has a
    gate, ``2 · sigmoid`` of :data:`GATE_GAIN` × a 1 × 1 conv of ``x`` to ``(N, 1, H, W)``, in
    ``(0, 2)``, exactly 1 at init (zero weights and bias); without, the gate is 1 everywhere.

    Training mode: fresh standard normal noise ``(N, 1, H, W)`` at every call, a different
    draw for every sample. Eval mode: one fixed standard normal field per point
    (:data:`FIELD_SIDE` square, seeded by :data:`FIELD_SEED`, not stored in checkpoints),
    tiled over the map, the same for every sample: fills are reproducible, and the graph
    exports to ONNX with dynamic sizes (it only indexes a constant).
    """

    def __init__(
        self, channels: Sequence[int], field_side: int = FIELD_SIDE, gated: bool = False
    ) -> None:
        super().__init__()
        self.strengths = nn.ParameterList(nn.Parameter(torch.zeros(1, c, 1, 1)) for c in channels)
        self.gates = None
        if gated:
            self.gates = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in channels)
            for gate in self.gates:
                nn.init.zeros_(gate.weight)
                nn.init.zeros_(gate.bias)
        seeded = torch.Generator().manual_seed(FIELD_SEED)
        fields = torch.randn(len(channels), field_side, field_side, generator=seeded)
        self.register_buffer("fields", fields, persistent=False)

    def forward(self, x: torch.Tensor, point: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x (N, C, H, W)`` with the noise of injection point ``point`` added, and the gate
        that scaled it, ``(N, 1, H, W)`` in ``(0, 2)`` (None without gates): the trainer
        supervises it where the photo is flat (``losses.flat_gate_loss``)."""
        strength = self.strengths[point].to(x.dtype)
        if self.training:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        else:
            noise = tiled_field(self.fields[point], x.shape[-2], x.shape[-1]).to(x.dtype)
        gate = None
        if self.gates is not None:
            gate = 2.0 * torch.sigmoid(GATE_GAIN * self.gates[point](x))
            noise = noise * gate
        return x + strength * noise, gate


def tiled_field(field: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``field (S, S)`` repeated periodically to ``(1, 1, height, width)``.

    Indexing with ``arange % S`` rather than ``repeat`` keeps the sizes symbolic when the
    graph is traced for ONNX.
    """
    side = field.shape[-1]
    rows = torch.arange(height, device=field.device) % side
    cols = torch.arange(width, device=field.device) % side
    return field.index_select(0, rows).index_select(1, cols)[None, None]
