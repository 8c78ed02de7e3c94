"""An exponential moving average of a network's weights: what a run validates and ships.

With a small batch (4 on a CPU) and Adam's constant learning rate, the weights wander: the
default run's validation hole PSNR moved by ±0.4 dB between checkpoints 250 steps apart on a
fixed validation set, and the plain average of two checkpoints 750 steps apart scored better
than either on free-form holes (docs/model-card.md). Averaging along the trajectory removes
that noise at no cost to the training itself, as StyleGAN2-ADA and EDM do for their generators.

The half-life is counted in generator steps. During a ramp-up it is capped at
``rampup × steps so far`` (EDM's ``ema_rampup_ratio``), so the random initial weights are
forgotten quickly instead of dragging the average for thousands of steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """``average`` is a frozen copy of a module whose parameters track the module's by EMA.

    ``half_life``: steps after which a weight's contribution has halved (> 0).
    ``rampup``: cap the half-life at ``rampup × step`` (0 = no cap).
    """

    def __init__(self, module: nn.Module, half_life: float, rampup: float = 0.0) -> None:
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        if rampup < 0:
            raise ValueError(f"rampup must be >= 0, got {rampup}")
        self.half_life = half_life
        self.rampup = rampup
        self.average = copy.deepcopy(module).eval().requires_grad_(False)

    def decay(self, step: int) -> float:
        """The weight kept from the average after generator step ``step`` (1-based): ``0.5^(1/h)``."""
        half_life = self.half_life
        if self.rampup > 0:
            half_life = min(half_life, self.rampup * step)
        return 0.5 ** (1.0 / half_life) if half_life > 0 else 0.0

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        """Fold ``module``'s weights after step ``step`` in: ``average += (1 - decay) (weights - average)``.

        Buffers (none in the generator today) are copied, not averaged.
        """
        decay = self.decay(step)
        mine = list(self.average.parameters())
        theirs = [p.detach() for p in module.parameters()]
        torch._foreach_lerp_(mine, theirs, 1.0 - decay)
        for own, other in zip(self.average.buffers(), module.buffers(), strict=True):
            own.copy_(other)

    @torch.no_grad()
    def reset(self, module: nn.Module) -> None:
        """Make the average equal ``module`` (a new run, or a run saved before averaging was on)."""
        self.average.load_state_dict(module.state_dict())
