"""The adversarial half of DeepFill v1 (paper section 4, Algorithm 1): the two WGAN-GP critics,
their update, and the adversarial term of the generator's loss.

:class:`Critics` owns the local and global critics and their one optimiser (as the released
code's single ``d_vars`` trainer). Its inputs are the real batch, its masks and the
generator's refined output; it never runs the generator itself, so the caller decides how
many generator forwards an iteration makes (``optimizer.share_generator_forward``).

Levers that make the phase cheaper on a small machine (recipe values, docs/training.md,
measured in docs/benchmarks.md): the critic-to-generator ratio (``optimizer.critic_steps``)
and the critics' own learning rate (``optimizer.critic_lr``), one generator forward shared by
a critic update and the generator update, and the gradient penalty on every k-th update only
(``loss.gradient_penalty_every``, StyleGAN2's lazy regularisation) or on a sub-batch
(``loss.gradient_penalty_batch``). The losses themselves are the paper's. Against the grid
the critics teach the generator: the global critic's inputs at a random phase
(``critics.global_shift``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.profiler import record_function

from inpaintkit import losses
from inpaintkit.config import Recipe
from inpaintkit.distributed import average_gradients, broadcast_parameters
from inpaintkit.model.critics import GlobalCritic, LocalCritic, crop_hole_boxes
from inpaintkit.tensors import composite


def penalty_weight(recipe: Recipe, update_index: int) -> float:
    """The gradient penalty's weight in critic update ``update_index`` (0-based over the run).

    λ on every update (``loss.gradient_penalty_every`` = 1, the paper's); with lazy
    regularisation every k-th update gets k·λ and the others 0, so the expected pull is the same.
    """
    every = recipe.loss.gradient_penalty_every
    return recipe.loss.wgan_gp_lambda * every if update_index % every == 0 else 0.0


def random_roll(shift_range: int, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``images (N, C, H, W)`` all rolled by one ``(dy, dx)`` offset in ``[0, shift_range)²``,
    drawn from torch's global generator (a resume restores it, so it draws the same offsets);
    as they are, without a draw or a copy, when ``shift_range`` ≤ 1 (the paper's critic)."""
    if shift_range <= 1:
        return images
    offset = tuple(torch.randint(shift_range, (2,)).tolist())
    return tuple(torch.roll(image, offset, dims=(2, 3)) for image in images)


def critic_updates_before(recipe: Recipe, step: int) -> int:
    """How many critic updates a run has made before generator step ``step`` (0-based).

    Every step past the reconstruction-only warm-up, critic warm-up steps included, makes
    ``optimizer.critic_steps`` of them; so a resumed run knows which update is penalised.
    """
    return max(step - recipe.schedule.warmup_steps, 0) * recipe.optimizer.critic_steps


class GeneratorTerms(NamedTuple):
    """The critics' terms of the generator's loss (:meth:`Critics.generator_losses`)."""

    global_wgan: torch.Tensor  # -mean D_global(fake), scalar
    local_wgan: torch.Tensor  # -mean D_local(fake hole box), scalar
    # losses.feature_matching_loss, the mean of both critics'; None unless asked for.
    feature_matching: torch.Tensor | None = None


class Critics:
    """The local and global WGAN-GP critics of one recipe, their optimiser and update rule.

    ``autocast`` is the trainer's mixed-precision context (a no-op where bf16 is not native);
    the critics' forwards run in it, the gradient penalty in fp32 outside it.
    """

    def __init__(
        self,
        recipe: Recipe,
        device: torch.device,
        world: int,
        autocast: Callable[[], contextlib.AbstractContextManager],
    ) -> None:
        self.recipe = recipe
        self.world = world
        self.autocast = autocast
        size, channels = recipe.data.image_size, recipe.critics.channels
        antialias = recipe.critics.antialias
        self.local = LocalCritic(recipe.critics.local_size, channels, antialias).to(device)
        self.global_ = GlobalCritic(size, channels, antialias).to(device)
        perf = recipe.performance
        for net in (self.local, self.global_):
            if perf.channels_last:
                net.to(memory_format=torch.channels_last)
            broadcast_parameters(net, world)
        opt = recipe.optimizer
        self.optimizer = torch.optim.Adam(
            [*self.local.parameters(), *self.global_.parameters()],
            lr=self.learning_rate(opt.lr),
            betas=opt.betas,
        )
        use_compile = perf.compile and device.type == "cuda"
        # The gradient penalty always runs the eager critics: compiled graphs do not double-backward.
        self.local_forward = torch.compile(self.local) if use_compile else self.local
        self.global_forward = torch.compile(self.global_) if use_compile else self.global_

    def learning_rate(self, generator_lr: float) -> float:
        """The critics' lr when the generator's is ``generator_lr`` (``critic_lr`` scaled alike)."""
        opt = self.recipe.optimizer
        if opt.critic_lr is None:
            return generator_lr
        return opt.critic_lr * generator_lr / opt.lr

    def losses(
        self, real: torch.Tensor, mask: torch.Tensor, refined: torch.Tensor, penalty: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Algorithm 1 lines 3-7: the critics' loss on one batch, ready for ``backward``.

        ``real (N, 3, S, S)`` in [-1, 1], ``mask (N, 1, S, S)`` in {0, 1}, ``refined`` the
        generator's refined output for them (its gradient is cut here). Loss = global + local
        WGAN loss (``mean D(fake) - mean D(real)``, fake = ``refined`` composited into the
        hole, local = each hole's box resampled to ``critics.local_size``) + both hole-masked
        gradient penalties weighted ``penalty`` (λ, or 0 to leave them out: lazy
        regularisation; interpolation weights from torch's global generator). Returns
        ``(loss, detached scalars)``; the penalties' scalars are 0 on updates without them.
        """
        fake = composite(real, refined.detach().float(), mask)
        local_size = self.recipe.critics.local_size
        real_local = crop_hole_boxes(real, mask, local_size)
        fake_local = crop_hole_boxes(fake, mask, local_size)
        # The global critic's view, rolled by one random offset (critics.global_shift).
        real_g, fake_g, mask_g = random_roll(self.recipe.critics.global_shift, real, fake, mask)
        with record_function("critic forward"), self.autocast():
            real_scores_g = self.global_forward(real_g).float()
            fake_scores_g = self.global_forward(fake_g).float()
            real_scores_l = self.local_forward(real_local).float()
            fake_scores_l = self.local_forward(fake_local).float()
        d_global = losses.critic_wgan_loss(real_scores_g, fake_scores_g)
        d_local = losses.critic_wgan_loss(real_scores_l, fake_scores_l)
        gp_global = gp_local = torch.zeros((), device=real.device)
        if penalty > 0:
            # In fp32 (outside autocast): (‖∇‖ - 1)² is a small difference of numbers near 1,
            # which bf16's 8-bit mantissa would turn into noise.
            n = self.recipe.loss.gradient_penalty_batch or real.shape[0]
            mask_local = crop_hole_boxes(mask[:n], mask[:n], local_size)
            with record_function("gradient penalty"):
                gp_global = losses.gradient_penalty(
                    self.global_, real_g[:n], fake_g[:n], mask_g[:n], penalty
                )
                gp_local = losses.gradient_penalty(
                    self.local, real_local[:n], fake_local[:n], mask_local, penalty
                )
        d_loss = d_global + d_local + gp_global + gp_local
        return d_loss, {
            "critic/loss": d_loss.detach(),
            "critic/global_wgan": d_global.detach(),
            "critic/local_wgan": d_local.detach(),
            "critic/global_gradient_penalty": gp_global.detach(),
            "critic/local_gradient_penalty": gp_local.detach(),
            # Wasserstein estimates E[D(x)] - E[D(G(z))]: the critics' view of the gap.
            "wasserstein/global": (real_scores_g.mean() - fake_scores_g.mean()).detach(),
            "wasserstein/local": (real_scores_l.mean() - fake_scores_l.mean()).detach(),
        }

    def update(
        self, real: torch.Tensor, mask: torch.Tensor, refined: torch.Tensor, penalty: float
    ) -> dict[str, torch.Tensor]:
        """Algorithm 1 lines 3-8: one update of both critics (:meth:`losses`' arguments)."""
        d_loss, scalars = self.losses(real, mask, refined, penalty)
        self.optimizer.zero_grad(set_to_none=True)
        with record_function("critic backward"):
            d_loss.backward()
        average_gradients(self.local, self.world)
        average_gradients(self.global_, self.world)
        with record_function("critic optimizer"):
            self.optimizer.step()
        return scalars

    def generator_losses(
        self,
        real: torch.Tensor,
        mask: torch.Tensor,
        refined: torch.Tensor,
        feature_matching: bool = False,
    ) -> GeneratorTerms:
        """Algorithm 1 line 11's adversarial terms ``-mean D_global(fake)``, ``-mean
        D_local(box)``, and with ``feature_matching`` [ours] both critics'
        ``losses.feature_matching_loss`` against the photos, from the same forwards.

        ``refined`` keeps its graph: ``backward`` reaches the generator through it, and not the
        critics, whose parameters are left out of the graph.
        """
        fake = composite(real, refined, mask)
        local_size = self.recipe.critics.local_size
        fake_local = crop_hole_boxes(fake, mask, local_size)
        # The photos at the fakes' phase: feature matching compares position by position.
        fake_g, real_g = random_roll(self.recipe.critics.global_shift, fake, real)
        for critic in (self.local, self.global_):
            critic.requires_grad_(False)
        try:
            with record_function("critic forward (generator loss)"), self.autocast():
                if not feature_matching:
                    return GeneratorTerms(
                        losses.generator_wgan_loss(self.global_forward(fake_g).float()),
                        losses.generator_wgan_loss(self.local_forward(fake_local).float()),
                    )
                scores_g, fake_maps_g = self.global_.forward_with_features(fake_g)
                scores_l, fake_maps_l = self.local.forward_with_features(fake_local)
                with torch.no_grad():
                    _, real_maps_g = self.global_.forward_with_features(real_g)
                    _, real_maps_l = self.local.forward_with_features(
                        crop_hole_boxes(real, mask, local_size)
                    )
        finally:
            for critic in (self.local, self.global_):
                critic.requires_grad_(True)
        matching = (
            losses.feature_matching_loss([m.float() for m in fake_maps_g], real_maps_g)
            + losses.feature_matching_loss([m.float() for m in fake_maps_l], real_maps_l)
        ) / 2
        return GeneratorTerms(
            losses.generator_wgan_loss(scores_g.float()),
            losses.generator_wgan_loss(scores_l.float()),
            matching,
        )
