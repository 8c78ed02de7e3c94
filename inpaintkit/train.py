"""Training workflow: Algorithm 1 of the paper, resumable, logged, single- or multi-process.

For every generator step, ``optimizer.critic_steps`` (5) updates of the local and global
WGAN-GP critics on fresh batches and masks, then one generator update with the spatially
discounted ℓ1 losses on the coarse and refined outputs plus the two adversarial losses
(paper section 4, Algorithm 1; loss bookkeeping as the authors' released ``inpaint_model.py``).

Determinism: every random choice is a function of the recipe seed and the run's position.
Sample ``p`` of rank ``r`` has its image index from a :class:`DistributedSampler` permutation
of epoch ``p // len``, its crop/flip from a generator seeded with ``(seed, p, r)`` and its mask
``(seed, p * world + r)``; the remaining global generators (gradient-penalty interpolation)
are saved with the state. So ``--resume`` continues bit for bit on CPU.

Multi-process (torchrun): each rank computes gradients on its own batch and they are averaged
over the ranks before each optimiser step (:mod:`inpaintkit.distributed`); rank 0 alone
writes files, logs and prints.

Layout: the data stream, :class:`Trainer` (networks, optimisers and the two update rules),
validation, then the setup of a run in named steps (:func:`check_run_folder`,
:func:`start_run` / :func:`resume_run`, :func:`open_images`, :func:`batch_stream`,
:class:`TrainLog`, :class:`LossGuard`, :func:`save`) and last the loop itself, :func:`_train`,
which reads top to bottom as Algorithm 1.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from inpaintkit import checkpoint, losses, metrics
from inpaintkit.config import Recipe, recipe_to_yaml, save_recipe
from inpaintkit.data import InpaintingDataset
from inpaintkit.devices import has_native_bf16, resolve_device
from inpaintkit.distributed import (
    Distributed,
    average_gradients,
    broadcast_parameters,
    gather_rng,
    init_distributed,
)
from inpaintkit.masks import MaskSampler
from inpaintkit.model.critics import GlobalCritic, LocalCritic, crop_hole_boxes
from inpaintkit.model.generator import Generator
from inpaintkit.tensors import composite, signed_to_unit, tensor_to_image, uint8_to_signed
from inpaintkit.training_state import (
    TrainingStateError,
    has_training_state,
    load_training_state,
    module_tensors,
    optimizer_tensors,
    restore_module,
    restore_optimizer,
    restore_rng,
    save_training_state,
)
from inpaintkit.typed import ConfigError, build, to_dict
from inpaintkit.weight_average import WeightAverage

GENERATOR_FILE = "generator.safetensors"
#: One JSON object per validation: step, samples, train_seconds and the metrics.
VALIDATION_LOG = "validation.jsonl"


class TrainingError(RuntimeError):
    """Training cannot start or continue (bad output folder, diverged loss, ...)."""


@dataclass
class TrainResult:
    """What a call to :func:`train` ended with."""

    step: int  # generator steps completed
    interrupted: bool  # stopped by SIGINT/SIGTERM (state saved) rather than reaching schedule.steps
    generator_path: Path
    signal_number: int | None = None
    # This process is rank 0, the one that wrote the files (always true without torchrun).
    main: bool = True


# --------------------------------------------------------------------------- data stream


class SampleStream(Sampler):
    """Endless ``(image index, position)`` pairs of one rank, starting at ``start``.

    Position ``p`` lies in epoch ``p // per_rank`` where the order is that epoch's
    :class:`DistributedSampler` permutation, so the stream can restart at any position.
    """

    def __init__(self, length: int, seed: int, rank: int, world: int, start: int = 0) -> None:
        self.epochs = DistributedSampler(
            range(length), num_replicas=world, rank=rank, shuffle=True, seed=seed
        )
        self.per_rank = len(self.epochs)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        while True:
            epoch, offset = divmod(position, self.per_rank)
            self.epochs.set_epoch(epoch)
            for index in list(self.epochs)[offset:]:
                yield index, position
                position += 1


class TrainingSamples(Dataset):
    """``(index, position)`` -> ``(image uint8 (3, S, S) in [0, 255], mask bool (1, S, S), True = hole)``.

    Samples stay uint8/bool until :meth:`Trainer.prepare` has moved them to the device:
    they cross the DataLoader's process boundary through shared memory, where float32 is 4x
    the bytes and was measured to cap loading on a small machine (docs/prepare.md, "Loading speed").
    ``images`` is an ``InpaintingDataset(..., dtype="uint8")``.

    The image's random crop and flip draw from torch's generator, reseeded from
    ``(seed, position, rank)`` inside a fork: they do not depend on which worker loads the
    sample (nor on epochs), and the caller's generator is left untouched.
    """

    def __init__(
        self, images: Dataset, masks: MaskSampler, seed: int, rank: int, world: int
    ) -> None:
        self.images = images
        self.masks = masks
        self.seed = seed
        self.rank = rank
        self.world = world

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, position = item
        sample_seed = int(
            np.random.SeedSequence([self.seed, position, self.rank]).generate_state(1)[0]
        )
        # InpaintingDataset (seed=None) draws its crop and flip from torch's generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            image = self.images[index]
        mask = torch.from_numpy(self.masks(position * self.world + self.rank))[None]
        return image, mask


# --------------------------------------------------------------------------- the models


class Trainer:
    """Networks, optimisers and the two update rules of Algorithm 1 for one recipe."""

    def __init__(self, recipe: Recipe, device: torch.device, world: int = 1) -> None:
        self.recipe = recipe
        self.device = device
        self.world = world
        size, channels = recipe.data.image_size, recipe.critics.channels
        self.generator = Generator(recipe.model).to(device)
        self.local_critic = LocalCritic(recipe.critics.local_size, channels).to(device)
        self.global_critic = GlobalCritic(size, channels).to(device)
        perf = recipe.performance
        self.channels_last = perf.channels_last
        if self.channels_last:
            for net in (self.generator, self.local_critic, self.global_critic):
                net.to(memory_format=torch.channels_last)
        for net in (self.generator, self.local_critic, self.global_critic):
            broadcast_parameters(net, world)
        opt = recipe.optimizer
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=opt.lr, betas=opt.betas)
        # One optimiser over both critics, as the released code's single d_vars trainer.
        critic_params = [*self.local_critic.parameters(), *self.global_critic.parameters()]
        self.d_optimizer = torch.optim.Adam(critic_params, lr=opt.lr, betas=opt.betas)
        # The weight average starts as a copy of these weights; init_generator and load_state
        # reset or restore it when a run starts from other weights.
        self.generator_average = (
            WeightAverage(self.generator, opt.ema_half_life, opt.ema_rampup)
            if opt.ema_half_life > 0
            else None
        )
        # bf16 autocast where the hardware computes it; emulated bf16 on an older CPU is slower than fp32.
        self.autocast_dtype = torch.bfloat16 if perf.bf16 and has_native_bf16(device) else None
        use_compile = perf.compile and device.type == "cuda"
        self.g_forward = torch.compile(self.generator) if use_compile else self.generator
        # The gradient penalty always runs the eager critics: compiled graphs do not double-backward.
        self.local_forward = torch.compile(self.local_critic) if use_compile else self.local_critic
        self.global_forward = (
            torch.compile(self.global_critic) if use_compile else self.global_critic
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def prepare(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A loader batch on the device, in the chosen layout, ready for the steps.

        ``image`` uint8 ``(N, 3, S, S)`` and ``mask`` bool or uint8 ``(N, 1, S, S)`` (1 = hole),
        as :class:`TrainingSamples` yields them -> float32 image in ``[-1, 1]`` (the values of
        :func:`inpaintkit.tensors.image_to_tensor`) and float32 mask in {0, 1}. The copies are
        non-blocking (from pinned memory on CUDA) and the float tensors are made on the device.
        """
        image = uint8_to_signed(image, self.device)
        mask = mask.to(self.device, non_blocking=True).to(torch.float32)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
            mask = mask.contiguous(memory_format=torch.channels_last)
        return image, mask

    def critic_losses(
        self, real: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Algorithm 1 lines 3-7: the critics' loss on one batch, ready for ``backward``.

        ``real (N, 3, S, S)`` in [-1, 1], ``mask (N, 1, S, S)`` in {0, 1} (from :meth:`prepare`).
        Loss = global + local WGAN loss (``mean D(fake) - mean D(real)``, fake = the generator's
        refined output composited into the hole, local = each hole's box resampled to
        ``critics.local_size``) + both hole-masked gradient penalties (their interpolation
        weights drawn from torch's global generator). Returns ``(loss, detached scalars)``.
        """
        loss_cfg = self.recipe.loss
        with torch.no_grad(), self.autocast():
            refined = self.g_forward(real, mask).refined
        fake = composite(real, refined.float(), mask)
        local_size = self.recipe.critics.local_size
        real_local = crop_hole_boxes(real, mask, local_size)
        fake_local = crop_hole_boxes(fake, mask, local_size)
        mask_local = crop_hole_boxes(mask, mask, local_size)
        with self.autocast():
            real_scores_g = self.global_forward(real).float()
            fake_scores_g = self.global_forward(fake).float()
            real_scores_l = self.local_forward(real_local).float()
            fake_scores_l = self.local_forward(fake_local).float()
        d_global = losses.critic_wgan_loss(real_scores_g, fake_scores_g)
        d_local = losses.critic_wgan_loss(real_scores_l, fake_scores_l)
        # Gradient penalty in fp32 (outside autocast): (‖∇‖ - 1)² is a small difference of
        # numbers near 1, which bf16's 8-bit mantissa would turn into noise.
        gp_global = losses.gradient_penalty(
            self.global_critic, real, fake, mask, loss_cfg.wgan_gp_lambda
        )
        gp_local = losses.gradient_penalty(
            self.local_critic, real_local, fake_local, mask_local, loss_cfg.wgan_gp_lambda
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

    def critic_step(self, real: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Algorithm 1 lines 3-8: one update of both critics. Returns detached device scalars."""
        d_loss, scalars = self.critic_losses(real, mask)
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        average_gradients(self.local_critic, self.world)
        average_gradients(self.global_critic, self.world)
        self.d_optimizer.step()
        return scalars

    def generator_losses(
        self, real: torch.Tensor, mask: torch.Tensor, adversarial: bool = True
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Algorithm 1 lines 10-12: the generator's loss on one batch, ready for ``backward``.

        ``real``, ``mask`` as in :meth:`critic_losses`. Loss = ``reconstruction_loss`` of the
        coarse and refined outputs (``l1_loss_alpha`` · discounted hole ℓ1 + ``ae_loss_alpha``
        · known ℓ1, coarse weighted ``coarse_l1_alpha``) + ``gan_loss_alpha`` ·
        (``global_wgan_loss_alpha`` · ``-mean D_global(fake)`` + ``-mean D_local(fake box)``).
        The critics' parameters are left out of the graph: ``backward`` reaches only the
        generator. ``adversarial=False`` (the warm-up phase) leaves out the second term and
        never runs the critics. Returns ``(loss, detached scalars)``.
        """
        cfg = self.recipe.loss
        with self.autocast():
            out = self.g_forward(real, mask)
        coarse, refined = out.coarse.float(), out.refined.float()
        rec = losses.reconstruction_loss(
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
        scalars = {
            "generator/l1_loss": rec.hole.detach(),  # discounted ℓ1 on the hole, both stages
            "generator/ae_loss": rec.known.detach(),  # ℓ1 on the known pixels, both stages
        }
        if not adversarial:
            return rec.total, {"generator/loss": rec.total.detach(), **scalars}
        fake = composite(real, refined, mask)
        local_size = self.recipe.critics.local_size
        for critic in (self.local_critic, self.global_critic):
            critic.requires_grad_(False)
        try:
            with self.autocast():
                g_global = losses.generator_wgan_loss(self.global_forward(fake).float())
                g_local = losses.generator_wgan_loss(
                    self.local_forward(crop_hole_boxes(fake, mask, local_size)).float()
                )
        finally:
            for critic in (self.local_critic, self.global_critic):
                critic.requires_grad_(True)
        g_loss = cfg.gan_loss_alpha * (cfg.global_wgan_loss_alpha * g_global + g_local) + rec.total
        return g_loss, {
            "generator/loss": g_loss.detach(),
            **scalars,
            "generator/global_wgan": g_global.detach(),
            "generator/local_wgan": g_local.detach(),
        }

    def generator_step(
        self, real: torch.Tensor, mask: torch.Tensor, adversarial: bool = True
    ) -> dict[str, torch.Tensor]:
        """Algorithm 1 lines 10-13: one generator update (``adversarial`` as in :meth:`generator_losses`).

        Returns detached device scalars.
        """
        g_loss, scalars = self.generator_losses(real, mask, adversarial)
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        average_gradients(self.generator, self.world)
        self.g_optimizer.step()
        return scalars

    def set_learning_rate(self, lr: float) -> None:
        """Set the generator's and the critics' learning rate (both follow one schedule)."""
        for optimizer in (self.g_optimizer, self.d_optimizer):
            for group in optimizer.param_groups:
                group["lr"] = lr

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
            **module_tensors("local_critic", self.local_critic),
            **module_tensors("global_critic", self.global_critic),
        }
        g_tensors, g_meta = optimizer_tensors("g_optimizer", self.g_optimizer)
        d_tensors, d_meta = optimizer_tensors("d_optimizer", self.d_optimizer)
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
            restore_module("local_critic", self.local_critic, tensors)
            restore_module("global_critic", self.global_critic, tensors)
            restore_optimizer("d_optimizer", self.d_optimizer, tensors, meta["d_optimizer"])
        # The saved param_groups carry the run's old lr and betas; the recipe's win, so that
        # resuming with a lower optimizer.lr (what a NaN stop advises) takes effect. The Adam
        # moments carry over.
        opt = self.recipe.optimizer
        for optimizer in (self.g_optimizer, self.d_optimizer):
            for group in optimizer.param_groups:
                group["lr"], group["betas"] = opt.lr, tuple(opt.betas)

    def init_generator(self, path: Path) -> None:
        """Start from the weights of the generator checkpoint ``path`` (same ``model`` section)."""
        try:
            source = checkpoint.load_generator(path)
        except checkpoint.CheckpointError as err:
            raise TrainingError(f"--init-from: {err}") from None
        if source.config != self.recipe.model:
            raise TrainingError(
                f"--init-from {path}: its model config differs from the recipe's model section"
            )
        with torch.no_grad():
            for mine, theirs in zip(self.generator.parameters(), source.parameters(), strict=True):
                mine.copy_(theirs)
        if self.generator_average is not None:
            self.generator_average.reset(self.generator)


# --------------------------------------------------------------------------- validation and images


@torch.no_grad()
def validate(
    generator: Generator,
    images: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int,
    grid_rows: int = 4,
) -> tuple[dict[str, float], np.ndarray]:
    """Fill the fixed validation set; return mean metrics and an image grid.

    ``images (N, 3, S, S)`` in [-1, 1] and ``masks (N, 1, S, S)`` on the generator's device.
    Metrics are :func:`metrics.image_metrics` on the composited fill, averaged with
    :class:`metrics.RunningStats`. The grid is uint8 ``(rows·S, 5·S, 3)``: input (holes
    white) | coarse | refined (composited) | attention map (flow colours, grey without
    attention) | ground truth.
    """
    stats: dict[str, metrics.RunningStats] = {}
    columns = []
    for start in range(0, images.shape[0], batch_size):
        x, m = images[start : start + batch_size], masks[start : start + batch_size]
        out = generator(x, m, return_offsets=generator.config.contextual_attention)
        completed = composite(x, out.refined.float(), m)
        for key, values in metrics.image_metrics(
            signed_to_unit(completed), signed_to_unit(x), m.double()
        ).items():
            for value in values.tolist():
                stats.setdefault(key, metrics.RunningStats()).add(value)
        if len(columns) < grid_rows:
            size = x.shape[-1]
            if out.offsets is not None:
                from inpaintkit.model.visualize import flow_to_color  # only needed for image grids

                flow = torch.from_numpy(flow_to_color(out.offsets.cpu()))
                scale = size // flow.shape[1]
                attention = flow.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
            else:
                attention = torch.full((x.shape[0], size, size, 3), 128, dtype=torch.uint8)
            parts = [
                tensor_to_image(composite(x, torch.ones_like(x), m)),
                tensor_to_image(out.coarse.float()),
                tensor_to_image(completed),
                attention.numpy(),
                tensor_to_image(x),
            ]
            rows = np.concatenate(parts, axis=2)  # (n, S, 5S, 3)
            columns.extend(rows[: grid_rows - len(columns)])
    means = {key: s.mean for key, s in stats.items()}
    return means, np.concatenate(columns, axis=0)


def _fixed_validation_set(
    recipe: Recipe, data: Path, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first ``schedule.val_images`` of the val split, centre-cropped, with fixed masks."""
    size = recipe.data.image_size
    try:
        split = InpaintingDataset(
            data, split=recipe.data.val_split, crop_size=size, random_crop=False, random_flip=False
        )
    except (KeyError, ValueError) as err:
        print(f"note: no validation ({err})")
        return None
    count = min(recipe.schedule.val_images, len(split))
    if count == 0:
        return None
    images = torch.stack([split[i] for i in range(count)]).to(device)
    # A mask set of its own (seed + 1) so the validation holes never coincide with training ones.
    masks = (
        MaskSampler(recipe.masks, size, size, seed=recipe.schedule.seed + 1)
        .batch(range(count))
        .to(device)
    )
    return images, masks


# --------------------------------------------------------------------------- setting a run up


@dataclass
class RunState:
    """Where a run stands: what :func:`save` records and :func:`resume_run` restores."""

    step: int = 0  # generator steps completed
    samples_per_rank: int = 0  # samples this rank has drawn: its position in its SampleStream
    # Generator checkpoints this run (and the runs it resumed) started from.
    init_from: list[str] = field(default_factory=list)
    seconds_before: float = 0.0  # training wall time of the earlier stints of this run
    started: float = 0.0  # time.perf_counter() when this stint's training began

    def train_seconds(self) -> float:
        """Training wall time of the run so far, earlier stints included."""
        return self.seconds_before + time.perf_counter() - self.started


def check_run_folder(data: Path, out: Path, resume: bool, init_from: Path | None) -> None:
    """Refuse a missing dataset, a run folder that does not fit ``resume``, and ``--init-from`` with ``--resume``."""
    if not data.is_file():
        raise TrainingError(f"{data}: no such dataset file (make one with `inpaintkit prepare`)")
    if resume and not has_training_state(out):
        raise TrainingError(
            f"{out}: no training state to resume from (drop --resume to start a new run)"
        )
    if not resume and has_training_state(out):
        raise TrainingError(
            f"{out}: already holds a run; pass --resume to continue it or choose another --out"
        )
    if resume and init_from is not None:
        raise TrainingError("--init-from starts a new run; it cannot be combined with --resume")


def seed_all(seed: int) -> None:
    """Seed torch's, numpy's and Python's global generators (the networks' initial weights)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def learning_rate(recipe: Recipe, step: int) -> float:
    """The learning rate of generator step ``step`` (0-based, with its critic steps).

    ``optimizer.lr`` until the last ``schedule.lr_cooldown_steps`` steps, then
    lr x (1 - sqrt(progress)), progress = (step - start) / lr_cooldown_steps in [0, 1): the first
    cooled step still trains at the full lr, the last at a small positive one.
    """
    lr, cooldown = recipe.optimizer.lr, recipe.schedule.lr_cooldown_steps
    start = recipe.schedule.steps - cooldown
    if cooldown == 0 or step < start:
        return lr
    return lr * (1.0 - math.sqrt((step - start) / cooldown))


def critics_trained(meta: dict) -> bool:
    """Whether the saved run has taken a step past its warm-up, so its critics have trained."""
    return meta["step"] > meta.get("recipe", {}).get("schedule", {}).get("warmup_steps", 0)


def check_resumable(recipe: Recipe, meta: dict, out: Path) -> None:
    """Refuse to resume the run saved with ``meta`` with a recipe its weights would not fit.

    ``model`` and ``critics`` must be the run's (rebuilt through their dataclasses, so a field
    added since the run was saved takes its default instead of making every older run
    unresumable); ``data.image_size`` may change only while the critics have not trained: the
    global critic's last layer is sized by it.
    """
    saved = meta.get("recipe", {})
    for section in ("model", "critics"):
        current = getattr(recipe, section)
        try:
            same = build(type(current), saved.get(section, {}), section) == current
        except ConfigError:  # a field the run has is gone from this version
            same = False
        if not same:
            raise TrainingError(
                f"{out}: recipe section '{section}' differs from the run's; weights would not fit"
            )
    saved_size = saved.get("data", {}).get("image_size", recipe.data.image_size)
    if saved_size != recipe.data.image_size and critics_trained(meta):
        raise TrainingError(
            f"{out}: data.image_size changed from {saved_size} to {recipe.data.image_size} after the "
            "critics started training; the global critic's weights would not fit"
        )


def start_run(trainer: Trainer, init_from: Path | None, dist_info: Distributed) -> RunState:
    """A new run: the generator from ``init_from`` if given, then this rank's own noise."""
    run = RunState()
    if init_from is not None:
        trainer.init_generator(init_from)
        run.init_from.append(
            f"{init_from} (step {checkpoint.read_metadata(init_from).get('step', '?')})"
        )
    # Ranks share the initial weights (same seed, then broadcast) but not their noise.
    torch.manual_seed(trainer.recipe.schedule.seed + dist_info.rank)
    return run


def resume_run(trainer: Trainer, out: Path, dist_info: Distributed) -> RunState:
    """Load the state saved in ``out`` into ``trainer`` and this rank's random generators.

    A run saved with another number of processes continues with reseeded generators (its data
    order and noise then differ from an uninterrupted run's).
    """
    recipe = trainer.recipe
    tensors, meta = load_training_state(out)
    check_resumable(recipe, meta, out)
    # Critics still at their initial weights (warm-up only so far) are rebuilt for the current size.
    trainer.load_state(tensors, meta, critics=critics_trained(meta))
    run = RunState(
        step=meta["step"],
        samples_per_rank=meta["samples_per_rank"],
        init_from=list(meta.get("init_from", [])),
        seconds_before=float(meta.get("train_seconds", 0.0)),
    )
    own = {
        k.split(".", 2)[2]: v
        for k, v in tensors.items()
        if k.startswith(f"rng.rank{dist_info.rank}.")
    }
    if own and meta.get("world") == dist_info.world:
        restore_rng(own, trainer.device)
    else:
        dist_info.print0(
            f"note: run saved with {meta.get('world')} processes, now {dist_info.world}; data order and noise differ"
        )
        torch.manual_seed(recipe.schedule.seed + 1000 * run.step + dist_info.rank)
    return run


def open_images(recipe: Recipe, data: Path) -> InpaintingDataset:
    """The train split of ``data`` as uint8 crops of ``data.image_size`` (a :class:`TrainingError` if unusable)."""
    try:
        images = InpaintingDataset(
            data,
            split="train",
            crop_size=recipe.data.image_size,
            random_crop=recipe.data.random_crop,
            random_flip=recipe.data.random_flip,
            dtype="uint8",
        )
    except (ValueError, OSError) as err:
        message = str(err)
        raise TrainingError(message if str(data) in message else f"{data}: {message}") from None
    if len(images) == 0:
        raise TrainingError(f"{data}: the train split is empty")
    return images


def batch_stream(
    trainer: Trainer, images: InpaintingDataset, dist_info: Distributed, start: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's endless training batches from its sample ``start`` on, on the device.

    Each item is :meth:`Trainer.prepare`'s ``(image, mask)``. The DataLoader's workers start
    here, before the caller starts any thread of its own (e.g. TensorBoard's writer).
    """
    recipe = trainer.recipe
    seed, size, workers = recipe.schedule.seed, recipe.data.image_size, recipe.data.num_workers
    samples = TrainingSamples(
        images, MaskSampler(recipe.masks, size, size, seed), seed, dist_info.rank, dist_info.world
    )
    loader = DataLoader(
        samples,
        batch_size=recipe.data.batch_size,
        sampler=SampleStream(len(images), seed, dist_info.rank, dist_info.world, start=start),
        num_workers=workers,
        pin_memory=trainer.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # Its own generator, so creating the iterator does not draw from the global one.
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_ignore_stop_signals,
    )
    batches = iter(loader)
    return (trainer.prepare(image, mask) for image, mask in batches)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGINT/SIGTERM: the main process stops the run.

    Ctrl-C in a terminal (and schedulers such as SLURM) signal the whole process group. A
    worker killed that way takes the batches the current step still needs with it, and the
    run would crash instead of finishing the step and saving. The main process shuts the
    workers down itself when it returns.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


# --------------------------------------------------------------------------- logging, checks, saving


class TrainLog:
    """What a run reports: TensorBoard scalars and images, the progress bar, ``validation.jsonl``.

    Every rank sums its step scalars on the device (:meth:`add`, no host sync) and averages
    them at each log interval (:meth:`write_scalars`); only rank 0 has a writer, a progress bar
    and a validation set, so elsewhere the rest does nothing. A context manager: the bar
    shows and the writer stays open inside the ``with``.
    """

    def __init__(
        self,
        recipe: Recipe,
        data: Path,
        out: Path,
        run: RunState,
        dist_info: Distributed,
        device: torch.device,
        resume: bool,
        progress: bool,
    ) -> None:
        self.recipe = recipe
        self.out = out
        self.dist_info = dist_info
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.validation: tuple[torch.Tensor, torch.Tensor] | None = None
        self.writer = None
        self.bar = None
        if dist_info.main:
            with torch.random.fork_rng(devices=[]):  # reading images draws from torch's generator
                self.validation = _fixed_validation_set(recipe, data, device)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                log_dir=str(out / "logs"), purge_step=run.step + 1 if resume else None
            )
        self.clock, self.clock_step = time.perf_counter(), run.step  # for the steps per second
        if progress and dist_info.main:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn(f"[bold]{recipe.name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self.task = self.bar.add_task(
                "train", total=recipe.schedule.steps, completed=run.step, info=""
            )

    def __enter__(self) -> TrainLog:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.writer is not None:
            self.writer.close()

    def add(self, scalars: dict[str, torch.Tensor]) -> None:
        """Add one step's detached device scalars to the interval's sums."""
        for key, value in scalars.items():
            self.sums[key] = self.sums.get(key, 0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def write_scalars(self, step: int, adversarial: bool, lr: float) -> None:
        """The interval's means (a host sync), steps per second and the last step's learning rate
        to TensorBoard and the bar; start a new interval."""
        now = time.perf_counter()
        rate = (step - self.clock_step) / max(now - self.clock, 1e-9)
        self.clock, self.clock_step = now, step
        # Means over the interval; a phase change inside it gives keys fewer counts.
        values = torch.stack([v.float() for v in self.sums.values()]).cpu().tolist()
        means = {
            key: value / self.counts[key] for key, value in zip(self.sums, values, strict=True)
        }
        if self.writer is not None:
            for key, value in means.items():
                self.writer.add_scalar(key, value, step)
            self.writer.add_scalar("speed/iterations_per_second", rate, step)
            self.writer.add_scalar("optimizer/lr", lr, step)
        if self.bar is not None:
            phase = "" if adversarial else "warm-up  "
            self.bar.update(
                self.task, info=f"{phase}G {means['generator/loss']:.4f}  {rate:.2f} it/s"
            )
        self.sums, self.counts = {}, {}

    def validate(self, run: RunState, generator: Generator) -> None:
        """On validation and image steps: metrics to TensorBoard and ``validation.jsonl``, the image grid."""
        schedule, step = self.recipe.schedule, run.step
        if self.validation is None or (
            step % schedule.val_every != 0 and step % schedule.image_every != 0
        ):
            return
        val_means, grid = validate(generator, *self.validation, self.recipe.data.batch_size)
        if step % schedule.val_every == 0:
            for key, value in val_means.items():
                self.writer.add_scalar(f"validation/{key}", value, step)
            record = {
                "step": step,
                "samples": run.samples_per_rank * self.dist_info.world,
                "train_seconds": round(run.train_seconds(), 1),
                **val_means,
            }
            _append_line(self.out / VALIDATION_LOG, json.dumps(record))
        if step % schedule.image_every == 0:
            self.writer.add_image(
                "input|coarse|refined|attention|truth", grid, step, dataformats="HWC"
            )

    def advance(self, step: int) -> None:
        """Move the progress bar to ``step``."""
        if self.bar is not None:
            self.bar.update(self.task, completed=step)


def _append_line(path: Path, line: str) -> None:
    """Append one line to a log and flush it to disk (a kill can cut at most the line being written)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


class LossGuard:
    """Stops the run when a loss becomes NaN or inf, without a host sync every step.

    :meth:`watch` folds each step's scalars into one device flag; :meth:`check` reads it on
    every rank (at log intervals and before each save) and raises :class:`TrainingError`.
    ``last_good`` is the step of the last state saved with finite losses.
    """

    def __init__(self, out: Path, step: int, dist_info: Distributed, device: torch.device) -> None:
        self.out = out
        self.dist_info = dist_info
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.checked = self.last_good = step

    def watch(self, scalars: dict[str, torch.Tensor]) -> None:
        for value in scalars.values():
            self.finite &= torch.isfinite(value)

    def check(self, step: int) -> None:
        """Raise :class:`TrainingError` if a loss of any rank became NaN or inf since the last check."""
        if not self.dist_info.all_true(self.finite):
            raise TrainingError(
                f"a loss became NaN or inf between steps {self.checked} and {step}; stopped. "
                f"The last good checkpoint (step {self.last_good}) is kept in {self.out}; resume it with "
                "--resume, perhaps with a lower optimizer.lr"
            )
        self.checked = step


def save(
    out: Path, trainer: Trainer, run: RunState, guard: LossGuard, dist_info: Distributed
) -> None:
    """Save the run at ``run.step``: the full training state and the generator (collective when world > 1).

    Checks the losses first, so a NaN never overwrites the last good state. Every rank's random
    generators are gathered; rank 0 writes ``generator.safetensors`` (also
    ``generator-STEP.safetensors`` every ``schedule.keep_every`` steps), then
    ``state-STEP.safetensors`` + ``training_state.json``; then the ranks wait for each other.
    The state goes last because ``training_state.json`` is the commit point: a kill between
    the two leaves generator files a resume rewrites identically, never a committed step whose
    generator files were not written (a finished run's resume then trains nothing and would
    leave them stale).
    """
    guard.check(run.step)
    recipe = trainer.recipe
    tensors, meta = trainer.state_tensors()
    tensors.update(gather_rng(dist_info, trainer.device))
    if dist_info.main:
        meta.update(
            samples_per_rank=run.samples_per_rank,
            world=dist_info.world,
            recipe=to_dict(recipe),
            init_from=run.init_from,
            train_seconds=run.train_seconds(),
        )
        metadata = {
            "recipe": recipe_to_yaml(recipe),
            "step": str(run.step),
            "samples": str(run.samples_per_rank * dist_info.world),
            "train_seconds": f"{meta['train_seconds']:.0f}",
        }
        if trainer.generator_average is not None:
            metadata["weights"] = (
                f"exponential moving average, half-life {recipe.optimizer.ema_half_life} steps"
            )
        checkpoint.save_generator(out / GENERATOR_FILE, trainer.model, metadata=metadata)
        keep_every = recipe.schedule.keep_every
        if keep_every and run.step % keep_every == 0:
            checkpoint.save_generator(
                out / f"generator-{run.step:08d}.safetensors", trainer.model, metadata=metadata
            )
        save_training_state(out, run.step, tensors, meta)
    dist_info.barrier()
    guard.last_good = run.step


def export_raw_generator(run: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the raw generator weights of a saved run to ``out``; returns the run's step.

    ``generator.safetensors`` holds the weight average when the recipe keeps one; the weights
    the optimiser moves are only in the training state (``generator.*``). After a learning-rate
    cool-down they can be the better model (docs/model-card.md, "Stint 5"). ``out`` gets
    ``generator.safetensors``'s metadata (recipe, step, samples, time) with ``weights`` saying
    which these are.
    """
    run = Path(run)
    tensors, meta = load_training_state(run)
    source = run / GENERATOR_FILE
    generator = checkpoint.load_generator(source)
    restore_module("generator", generator, tensors)
    metadata = {
        key: value
        for key, value in checkpoint.read_metadata(source).items()
        if key in ("recipe", "step", "samples", "train_seconds")
    }
    if metadata.get("step") != str(meta["step"]):
        raise TrainingStateError(
            f"{source} is from step {metadata.get('step')}, the training state from {meta['step']}"
        )
    metadata["weights"] = "raw (the optimiser's weights, no average)"
    checkpoint.save_generator(out, generator, metadata=metadata)
    return meta["step"]


class _StopOnSignal:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps (main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum

    def __enter__(self) -> _StopOnSignal:
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- the loop


def train(
    recipe: Recipe,
    data: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train DeepFill v1 on the HDF5 dataset ``data`` into the run folder ``out``.

    Writes ``out/config.yaml`` (the resolved recipe), ``out/generator.safetensors`` (what
    ``fill`` and ``evaluate`` load; recipe and step in its metadata), the full training state
    (``training_state.json`` + ``state-STEP.safetensors``) and TensorBoard logs in
    ``out/logs``. Stops after ``schedule.steps`` generator steps, or after the current step on
    SIGINT/SIGTERM (state saved; ``interrupted=True``). Raises :class:`TrainingError` when a
    loss becomes NaN/inf (the last good checkpoint is kept) or when ``out`` holds a run and
    ``resume`` is false.

    ``init_from``: a new run (not ``resume``) starts its generator from this checkpoint, with
    fresh critics and optimisers, e.g. the shipped model on a machine that lost the full state.
    On ``resume`` the recipe's ``data``, ``masks``, ``loss``, ``optimizer`` and ``schedule``
    may change (progressive sizes, a longer schedule); ``model`` and ``critics`` may not, and
    ``data.image_size`` only while the critics have not trained yet (all steps so far warm-up):
    the global critic's last layer is sized by it.
    """
    dist_info, torch_device = init_distributed(_uses_cuda(device))
    try:
        init_path = None if init_from is None else Path(init_from)
        return _train(
            recipe, Path(data), Path(out), resume, init_path, dist_info, torch_device, progress
        )
    finally:
        dist_info.close()


def _uses_cuda(device: str) -> bool:
    """``--device`` ``auto`` (CUDA when available), ``cpu`` or ``cuda`` -> whether to train on CUDA."""
    if device not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"--device must be auto, cpu or cuda, got {device!r}")
    try:
        return resolve_device(device).type == "cuda"
    except ValueError as err:
        raise TrainingError(f"--device cuda: {err}") from None


def _train(
    recipe: Recipe,
    data: Path,
    out: Path,
    resume: bool,
    init_from: Path | None,
    dist_info: Distributed,
    device: torch.device,
    progress: bool,
) -> TrainResult:
    """:func:`train` inside the process group (if any): ``dist_info`` and ``device`` from :func:`init_distributed`."""
    # Refuse a bad dataset or run folder before anything is built.
    check_run_folder(data, out, resume, init_from)

    # Networks and optimisers from the recipe's seed, then the saved state or a new run's start.
    seed_all(recipe.schedule.seed)
    trainer = Trainer(recipe, device, dist_info.world)
    if resume:
        run = resume_run(trainer, out, dist_info)
    else:
        run = start_run(trainer, init_from, dist_info)

    # Data (opened before anything is written into the run folder, so a bad --data leaves no
    # trace), then the logs; this stint's training time starts now.
    images = open_images(recipe, data)
    if dist_info.main:
        save_recipe(recipe, out / "config.yaml")
    batches = batch_stream(trainer, images, dist_info, start=run.samples_per_rank)
    log = TrainLog(recipe, data, out, run, dist_info, device, resume, progress)
    guard = LossGuard(out, run.step, dist_info, device)
    run.started = time.perf_counter()

    schedule, batch = recipe.schedule, recipe.data.batch_size
    critic_steps = recipe.optimizer.critic_steps
    with log:
        with _StopOnSignal() as stop:
            while run.step < schedule.steps:
                # Algorithm 1 lines 2-8: critic_steps updates of both critics, a fresh batch
                # each. Warm-up (schedule.warmup_steps): the critics neither run nor change.
                adversarial = run.step >= schedule.warmup_steps
                lr = learning_rate(recipe, run.step)
                trainer.set_learning_rate(lr)
                scalars: dict[str, torch.Tensor] = {}
                if adversarial:
                    for _ in range(critic_steps):
                        for key, value in trainer.critic_step(*next(batches)).items():
                            scalars[key] = scalars.get(key, 0) + value / critic_steps

                # Algorithm 1 lines 9-13: one generator update on another batch.
                scalars.update(trainer.generator_step(*next(batches), adversarial=adversarial))
                run.step += 1
                trainer.update_average(run.step)
                run.samples_per_rank += (critic_steps + 1 if adversarial else 1) * batch
                guard.watch(scalars)
                log.add(scalars)

                # Report: interval means (after the interval's one host sync), validation, progress.
                if run.step % schedule.log_every == 0 or run.step == schedule.steps:
                    guard.check(run.step)
                    log.write_scalars(run.step, adversarial, lr)
                log.validate(run, trainer.model)
                log.advance(run.step)

                # SIGINT/SIGTERM: save and stop after this step (every rank at the same step).
                signum = dist_info.largest(stop.signum or 0, device) or None
                if signum is not None:
                    save(out, trainer, run, guard, dist_info)
                    return TrainResult(run.step, True, out / GENERATOR_FILE, signum, dist_info.main)
                if run.step % schedule.checkpoint_every == 0 or run.step == schedule.steps:
                    save(out, trainer, run, guard, dist_info)

        # Resumed at or past schedule.steps: make sure the files exist.
        if run.step != guard.last_good:
            save(out, trainer, run, guard, dist_info)
    return TrainResult(run.step, False, out / GENERATOR_FILE, main=dist_info.main)
