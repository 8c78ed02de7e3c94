"""The networks, optimisers and update rules of one training run (paper Algorithm 1).

:class:`Trainer` holds the generator, its optimiser and weight average, and the critics
(:class:`inpaintkit.adversarial.Critics`). One generator step is one of three phases, by the
step's number (recipe ``schedule``): a reconstruction-only warm-up step, a critic warm-up step
(critics only) or an Algorithm 1 iteration (:meth:`Trainer.train_step`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch.profiler import record_function

from inpaintkit import checkpoint, losses
from inpaintkit.adversarial import Critics, critic_updates_before, penalty_weight
from inpaintkit.config import Recipe
from inpaintkit.devices import has_native_bf16
from inpaintkit.distributed import average_gradients, broadcast_parameters
from inpaintkit.model.generator import Generator, GeneratorOutput, fields_blocking_init
from inpaintkit.tensors import composite, uint8_to_signed
from inpaintkit.training_state import (
    module_tensors,
    optimizer_tensors,
    restore_module,
    restore_optimizer,
)
from inpaintkit.weight_average import WeightAverage

Phase = Literal["warm-up", "critics", "adversarial"]
#: Batches a run draws: (image (N, 3, S, S) in [-1, 1], mask (N, 1, S, S) in {0, 1}) on the device.
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


class TrainingError(RuntimeError):
    """Training cannot start or continue (bad output folder, diverged loss, ...)."""


def phase_of(recipe: Recipe, step: int) -> Phase:
    """What generator step ``step`` (0-based) trains: the warm-up, the critics alone, or both."""
    schedule = recipe.schedule
    if step < schedule.warmup_steps:
        return "warm-up"
    if step < schedule.warmup_steps + schedule.critic_warmup_steps:
        return "critics"
    return "adversarial"


def batches_per_step(recipe: Recipe, phase: Phase) -> int:
    """How many batches a step of ``phase`` draws from the stream."""
    critic_steps = recipe.optimizer.critic_steps
    if phase == "warm-up":
        return 1
    if phase == "critics":
        return critic_steps
    return critic_steps if recipe.optimizer.share_generator_forward else critic_steps + 1


class Trainer:
    """Networks, optimisers and the update rules of Algorithm 1 for one recipe."""

    def __init__(self, recipe: Recipe, device: torch.device, world: int = 1) -> None:
        self.recipe = recipe
        self.device = device
        self.world = world
        perf = recipe.performance
        # bf16 autocast where the hardware computes it; emulated bf16 on an older CPU is slower than fp32.
        self.autocast_dtype = torch.bfloat16 if perf.bf16 and has_native_bf16(device) else None
        self.channels_last = perf.channels_last
        self.generator = Generator(recipe.model).to(device)
        if self.channels_last:
            self.generator.to(memory_format=torch.channels_last)
        broadcast_parameters(self.generator, world)
        self.critics = Critics(recipe, device, world, self.autocast)
        opt = recipe.optimizer
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=opt.lr, betas=opt.betas)
        # The weight average starts as a copy of these weights; init_generator and load_state
        # reset or restore it when a run starts from other weights.
        self.generator_average = (
            WeightAverage(self.generator, opt.ema_half_life, opt.ema_rampup)
            if opt.ema_half_life > 0
            else None
        )
        use_compile = perf.compile and device.type == "cuda"
        self.g_forward = torch.compile(self.generator) if use_compile else self.generator

    # The critics by their old names (tests, benchmarks and saved states use them).
    @property
    def local_critic(self) -> torch.nn.Module:
        return self.critics.local

    @property
    def global_critic(self) -> torch.nn.Module:
        return self.critics.global_

    @property
    def d_optimizer(self) -> torch.optim.Optimizer:
        return self.critics.optimizer

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def prepare(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A loader batch on the device, in the chosen layout, ready for the steps.

        ``image`` uint8 ``(N, 3, S, S)`` and ``mask`` bool or uint8 ``(N, 1, S, S)`` (1 = hole),
        as :class:`inpaintkit.train_data.TrainingSamples` yields them -> float32 image in ``[-1, 1]``
        (the values of :func:`inpaintkit.tensors.image_to_tensor`) and float32 mask in {0, 1}.
        The copies are non-blocking (from pinned memory on CUDA) and the float tensors are made
        on the device.
        """
        image = uint8_to_signed(image, self.device)
        mask = mask.to(self.device, non_blocking=True).to(torch.float32)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
            mask = mask.contiguous(memory_format=torch.channels_last)
        return image, mask

    # ---- the generator's forward and losses

    def forward(self, real: torch.Tensor, mask: torch.Tensor, grad: bool = True) -> GeneratorOutput:
        """The generator on a prepared batch, under autocast; ``grad=False`` builds no graph."""
        with torch.set_grad_enabled(grad), record_function("generator forward"), self.autocast():
            return self.g_forward(real, mask)

    def critic_losses(
        self, real: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Algorithm 1 lines 3-7 on one batch, with a generator forward of its own and the
        gradient penalty at λ: :meth:`Critics.losses`."""
        refined = self.forward(real, mask, grad=False).refined
        return self.critics.losses(real, mask, refined, self.recipe.loss.wgan_gp_lambda)

    def reconstruction_loss(
        self, real: torch.Tensor, coarse: torch.Tensor, refined: torch.Tensor, mask: torch.Tensor
    ) -> losses.ReconstructionLoss:
        """``losses.reconstruction_loss`` of both stages' outputs, weighted as the recipe says."""
        cfg = self.recipe.loss
        return losses.reconstruction_loss(
            real,
            (coarse, refined),
            mask,
            gamma=cfg.spatial_discount_gamma,
            mode=cfg.spatial_discount_mode,
            coarse_weight=cfg.coarse_l1_alpha,
            hole_weight=cfg.l1_loss_alpha,
            known_weight=cfg.ae_loss_alpha,
            normalization=cfg.l1_normalization,
        )

    def generator_losses(
        self,
        real: torch.Tensor,
        mask: torch.Tensor,
        adversarial: bool = True,
        out: GeneratorOutput | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Algorithm 1 lines 10-12: the generator's loss on one batch, ready for ``backward``.

        ``real``, ``mask`` as in :meth:`prepare`; ``out`` a forward of them with its graph
        (None: run one). Loss = ``reconstruction_loss`` of the coarse and refined outputs
        (``l1_loss_alpha`` · discounted hole ℓ1 + ``ae_loss_alpha`` · known ℓ1, coarse weighted
        ``coarse_l1_alpha``) + ``gan_loss_alpha`` · (``global_wgan_loss_alpha`` · ``-mean
        D_global(fake)`` + ``-mean D_local(fake box)``) + ``lattice_alpha`` · the lattice loss of
        the composited fills (``losses.lattice_loss``, above the photos' own with
        ``lattice_above_photo``; left out at 0, the paper's) + ``feature_matching_alpha`` ·
        the critics' feature-matching loss against the photos + ``periodicity_alpha`` · the
        fills' autocorrelation above the photos' (``losses.periodicity_loss``, and below with
        ``periodicity_two_sided``) + ``detail_excess_alpha`` · the fills' local detail above
        the photos' (``losses.detail_excess_loss``) + ``chroma_excess_alpha`` · the same of their
        colour (``losses.chroma_excess_loss``) + ``detail_deficit_alpha`` · the fills' local
        detail below ``detail_deficit_fraction`` × the photos' (``losses.detail_deficit_loss``)
        + ``flat_gate_alpha`` · the noise gates where the photos are flat
        (``losses.flat_gate_loss``); each left out at 0, the paper's.
        ``backward`` reaches only the generator. ``adversarial=False`` (the warm-up phase)
        leaves out the adversarial term and never runs the critics. Returns ``(loss, detached scalars)``.
        """
        cfg = self.recipe.loss
        if out is None:
            out = self.forward(real, mask)
        refined = out.refined.float()
        rec = self.reconstruction_loss(real, out.coarse.float(), refined, mask)
        scalars = {
            "generator/l1_loss": rec.hole.detach(),  # discounted ℓ1 on the hole, both stages
            "generator/ae_loss": rec.known.detach(),  # ℓ1 on the known pixels, both stages
        }
        g_loss = rec.total
        # The completed images (N, 3, H, W) in [-1, 1], which the grid terms score.
        fills = composite(real, refined, mask)
        if cfg.lattice_alpha > 0:
            lattice = losses.lattice_loss(
                fills,
                mask,
                cfg.lattice_periods,
                photos=real if cfg.lattice_above_photo else None,
            )
            g_loss = g_loss + cfg.lattice_alpha * lattice
            scalars["generator/lattice"] = lattice.detach()
        if cfg.periodicity_alpha > 0:
            repeats = losses.periodicity_loss(
                fills,
                real,
                mask,
                two_sided=cfg.periodicity_two_sided,
                photo_units=cfg.periodicity_photo_units,
            )
            g_loss = g_loss + cfg.periodicity_alpha * repeats
            scalars["generator/periodicity"] = repeats.detach()
        if cfg.detail_excess_alpha > 0 or cfg.detail_deficit_alpha > 0:
            # Both sides of the budget from one pair of local details.
            excess, deficit = losses.detail_gap_losses(
                fills, real, mask, cfg.detail_deficit_fraction
            )
        if cfg.detail_excess_alpha > 0:
            g_loss = g_loss + cfg.detail_excess_alpha * excess
            scalars["generator/detail_excess"] = excess.detach()
        if cfg.chroma_excess_alpha > 0:
            colour = losses.chroma_excess_loss(fills, real, mask)
            g_loss = g_loss + cfg.chroma_excess_alpha * colour
            scalars["generator/chroma_excess"] = colour.detach()
        if cfg.detail_deficit_alpha > 0:
            g_loss = g_loss + cfg.detail_deficit_alpha * deficit
            scalars["generator/detail_deficit"] = deficit.detach()
        if cfg.flat_gate_alpha > 0:
            flat_gates = losses.flat_gate_loss(out.noise_gates, real, mask, cfg.flat_gate_detail)
            g_loss = g_loss + cfg.flat_gate_alpha * flat_gates
            scalars["generator/flat_gate"] = flat_gates.detach()
        if adversarial:
            terms = self.critics.generator_losses(
                real, mask, refined, feature_matching=cfg.feature_matching_alpha > 0
            )
            g_loss = g_loss + cfg.gan_loss_alpha * (
                cfg.global_wgan_loss_alpha * terms.global_wgan + terms.local_wgan
            )
            scalars["generator/global_wgan"] = terms.global_wgan.detach()
            scalars["generator/local_wgan"] = terms.local_wgan.detach()
            if terms.feature_matching is not None:
                g_loss = g_loss + cfg.feature_matching_alpha * terms.feature_matching
                scalars["generator/feature_matching"] = terms.feature_matching.detach()
        return g_loss, {"generator/loss": g_loss.detach(), **scalars}

    # ---- the updates

    def critic_step(self, real: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Algorithm 1 lines 3-8: one update of both critics with the penalty at λ (its own forward)."""
        refined = self.forward(real, mask, grad=False).refined
        return self.critics.update(real, mask, refined, self.recipe.loss.wgan_gp_lambda)

    def generator_step(
        self,
        real: torch.Tensor,
        mask: torch.Tensor,
        adversarial: bool = True,
        out: GeneratorOutput | None = None,
    ) -> dict[str, torch.Tensor]:
        """Algorithm 1 lines 10-13: one generator update (arguments as :meth:`generator_losses`).

        Returns detached device scalars.
        """
        g_loss, scalars = self.generator_losses(real, mask, adversarial, out)
        self.g_optimizer.zero_grad(set_to_none=True)
        with record_function("generator backward"):
            g_loss.backward()
        average_gradients(self.generator, self.world)
        with record_function("generator optimizer"):
            self.g_optimizer.step()
        return scalars

    def train_step(self, batches: Batches, step: int) -> dict[str, torch.Tensor]:
        """Generator step ``step`` (0-based) of the run, in its phase, on batches drawn from ``batches``.

        - warm-up: one reconstruction-only generator update;
        - critics: ``critic_steps`` critic updates, each on a fresh batch and forward;
        - adversarial: ``critic_steps`` critic updates, then one generator update. With
          ``share_generator_forward`` the generator's batch and forward also serve the last
          critic update (its gradient cut), otherwise every critic update draws its own.

        Draws :func:`batches_per_step` batches. Returns the step's detached device scalars,
        the critics' averaged over their updates.
        """
        phase = phase_of(self.recipe, step)
        if phase == "warm-up":
            return self.generator_step(*next(batches), adversarial=False)
        critic_steps = self.recipe.optimizer.critic_steps
        first_update = critic_updates_before(self.recipe, step)
        shared = phase == "adversarial" and self.recipe.optimizer.share_generator_forward
        scalars: dict[str, torch.Tensor] = {}

        def critic_update(index: int, real, mask, refined) -> None:
            penalty = penalty_weight(self.recipe, first_update + index)
            for key, value in self.critics.update(real, mask, refined, penalty).items():
                scalars[key] = scalars.get(key, 0) + value / critic_steps

        for index in range(critic_steps - 1 if shared else critic_steps):
            with record_function("data"):
                real, mask = next(batches)
            critic_update(index, real, mask, self.forward(real, mask, grad=False).refined)
        if phase == "critics":
            return scalars
        with record_function("data"):
            real, mask = next(batches)
        out = None
        if shared:
            out = self.forward(real, mask)
            critic_update(critic_steps - 1, real, mask, out.refined)
        scalars.update(self.generator_step(real, mask, adversarial=True, out=out))
        return scalars

    def set_learning_rate(self, lr: float) -> None:
        """Set the generator's learning rate, and the critics' (``critic_lr`` scaled alike)."""
        for group in self.g_optimizer.param_groups:
            group["lr"] = lr
        for group in self.critics.optimizer.param_groups:
            group["lr"] = self.critics.learning_rate(lr)

    def update_average(self, step: int) -> None:
        """After generator step ``step`` (1-based): fold the new weights into the weight average."""
        if self.generator_average is not None:
            self.generator_average.update(self.generator, step)

    @property
    def model(self) -> Generator:
        """The generator a run validates and saves: the weight average if on, else the weights."""
        if self.generator_average is not None:
            return self.generator_average.average
        return self.generator

    # ---- state

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {
            **module_tensors("generator", self.generator),
            **(
                module_tensors("generator_average", self.generator_average.average)
                if self.generator_average is not None
                else {}
            ),
            **module_tensors("local_critic", self.critics.local),
            **module_tensors("global_critic", self.critics.global_),
        }
        g_tensors, g_meta = optimizer_tensors("g_optimizer", self.g_optimizer)
        d_tensors, d_meta = optimizer_tensors("d_optimizer", self.critics.optimizer)
        return {**tensors, **g_tensors, **d_tensors}, {"g_optimizer": g_meta, "d_optimizer": d_meta}

    def load_state(
        self, tensors: dict[str, torch.Tensor], meta: dict, critics: bool = True
    ) -> None:
        """Restore a saved state; ``critics=False`` keeps this trainer's fresh critics and their optimiser.

        A state saved without a weight average (or before it was switched on) starts the
        average from the saved generator.
        """
        restore_module("generator", self.generator, tensors)
        if self.generator_average is not None:
            if any(name.startswith("generator_average.") for name in tensors):
                restore_module("generator_average", self.generator_average.average, tensors)
            else:
                self.generator_average.reset(self.generator)
        restore_optimizer("g_optimizer", self.g_optimizer, tensors, meta["g_optimizer"])
        if critics:
            restore_module("local_critic", self.critics.local, tensors)
            restore_module("global_critic", self.critics.global_, tensors)
            restore_optimizer("d_optimizer", self.critics.optimizer, tensors, meta["d_optimizer"])
        # The saved param_groups carry the run's old lr and betas; the recipe's win, so that
        # resuming with a lower optimizer.lr (what a NaN stop advises) takes effect. The Adam
        # moments carry over.
        opt = self.recipe.optimizer
        for optimizer in (self.g_optimizer, self.critics.optimizer):
            for group in optimizer.param_groups:
                group["betas"] = tuple(opt.betas)
        self.set_learning_rate(opt.lr)

    def init_generator(self, path) -> None:
        """Start from the weights of the generator checkpoint ``path``.

        Its config must match the recipe's ``model`` section in the fields that decide the
        parameters (``generator.fields_blocking_init``); the others may differ, so that a run
        can train the same weights with another attention (e.g. the tent paste or rate 1 from
        the shipped weights) or another resize, and a recipe with ``noise_inputs`` (or
        ``noise_gates``) may start from a checkpoint without them.
        """
        try:
            source = checkpoint.load_generator(path)
        except checkpoint.CheckpointError as err:
            raise TrainingError(f"--init-from: {err}") from None
        differ = fields_blocking_init(source.config, self.recipe.model)
        if differ:
            raise TrainingError(
                f"--init-from {path}: its {', '.join(differ)} differ from the recipe's model section"
            )
        theirs = dict(source.named_parameters())
        with torch.no_grad():
            for name, mine in self.generator.named_parameters():
                if name in theirs:
                    mine.copy_(theirs[name])
                else:  # a noise strength or gate (the only parameters a checkpoint may lack):
                    mine.zero_()  # zero is where both start, computing what the source did
        if self.generator_average is not None:
            self.generator_average.reset(self.generator)
