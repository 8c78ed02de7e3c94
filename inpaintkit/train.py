"""Training workflow: Algorithm 1 of the paper, resumable, logged, single- or multi-process.

For every generator step, ``optimizer.critic_steps`` (5) updates of the local and global
WGAN-GP critics on fresh batches and masks, then one generator update with the spatially
discounted ℓ1 losses on the coarse and refined outputs plus the two adversarial losses
(paper section 4, Algorithm 1; loss bookkeeping as the authors' released ``inpaint_model.py``),
after an optional reconstruction-only warm-up and critic warm-up (:func:`inpaintkit.trainer.phase_of`).

Determinism: every random choice is a function of the recipe seed and the run's position.
Sample ``p`` of rank ``r`` has its image index from a :class:`DistributedSampler` permutation
of epoch ``p // len``, its crop/flip from a generator seeded with ``(seed, p, r)`` and its mask
``(seed, p * world + r)``; the remaining global generators (gradient-penalty interpolation)
are saved with the state. So ``--resume`` continues bit for bit on CPU.

Multi-process (torchrun): each rank computes gradients on its own batch and they are averaged
over the ranks before each optimiser step (:mod:`inpaintkit.distributed`); rank 0 alone
writes files, logs and prints.

Layout: the networks and update rules are :mod:`inpaintkit.trainer` (the critics
:mod:`inpaintkit.adversarial`), what a run reports and watches :mod:`inpaintkit.train_log`,
the data stream :mod:`inpaintkit.train_data` (:func:`~inpaintkit.train_data.open_images`,
:func:`~inpaintkit.train_data.batch_stream`). Here: the setup of a run in named steps
(:func:`check_run_folder`, :func:`start_run` / :func:`resume_run`, :func:`save`) and last the
loop itself, :func:`_train`, which reads top to bottom as Algorithm 1.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from inpaintkit import checkpoint
from inpaintkit.config import Recipe, recipe_to_yaml, save_recipe
from inpaintkit.devices import resolve_device
from inpaintkit.distributed import Distributed, gather_rng, init_distributed
from inpaintkit.train_data import batch_stream, open_images
from inpaintkit.train_log import (
    BEST_GENERATOR_FILE,
    VALIDATION_LOG,
    LossGuard,
    TrainLog,
    ValidationGuard,
    validate,
)
from inpaintkit.trainer import Trainer, TrainingError, batches_per_step, phase_of
from inpaintkit.training_state import (
    TrainingStateError,
    has_training_state,
    load_training_state,
    restore_module,
    restore_rng,
    save_training_state,
)
from inpaintkit.typed import ConfigError, build, to_dict

__all__ = [
    "VALIDATION_LOG",
    "Trainer",
    "TrainingError",
    "export_raw_generator",
    "learning_rate",
    "train",
    "validate",
]

GENERATOR_FILE = "generator.safetensors"


@dataclass
class TrainResult:
    """What a call to :func:`train` ended with."""

    step: int  # generator steps completed
    interrupted: bool  # stopped by SIGINT/SIGTERM (state saved) rather than reaching schedule.steps
    generator_path: Path
    signal_number: int | None = None
    # This process is rank 0, the one that wrote the files (always true without torchrun).
    main: bool = True


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


# --------------------------------------------------------------------------- saving


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
    validation_guard = ValidationGuard(recipe, out)
    with log:
        # A run started from trained weights validates them first: the curve's starting point,
        # and the best the validation guard measures falls against.
        if init_from is not None and run.step == 0:
            _validated(log, validation_guard, run, trainer, out, dist_info)
        with _StopOnSignal() as stop:
            while run.step < schedule.steps:
                # One generator step in its phase (trainer.phase_of): warm-up, critics alone,
                # or Algorithm 1 (lines 2-8: the critics' updates, 9-13: the generator's).
                phase = phase_of(recipe, run.step)
                lr = learning_rate(recipe, run.step)
                trainer.set_learning_rate(lr)
                scalars = trainer.train_step(batches, run.step)
                run.step += 1
                if phase != "critics":
                    trainer.update_average(run.step)
                run.samples_per_rank += batches_per_step(recipe, phase) * batch
                guard.watch(scalars)
                log.add(scalars)

                # Report: interval means (after the interval's one host sync), validation, progress.
                if run.step % schedule.log_every == 0 or run.step == schedule.steps:
                    guard.check(run.step)
                    log.write_scalars(run.step, phase, lr)
                _validated(log, validation_guard, run, trainer, out, dist_info)
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


def _validated(
    log: TrainLog,
    validation_guard: ValidationGuard,
    run: RunState,
    trainer: Trainer,
    out: Path,
    dist_info: Distributed,
) -> None:
    """Validate on validation steps (rank 0 alone), keep the generator of each new best as
    ``generator-best.safetensors``, and stop every rank on a fall past the guard's limit."""
    means = log.validate(run, trainer.model)
    error: TrainingError | None = None
    if means is not None:
        try:
            if validation_guard.check(run.step, means):
                checkpoint.save_generator(
                    out / BEST_GENERATOR_FILE,
                    trainer.model,
                    metadata={"recipe": recipe_to_yaml(trainer.recipe), "step": str(run.step)},
                )
        except TrainingError as err:
            error = err
    if run.step % trainer.recipe.schedule.val_every == 0:
        ok = torch.tensor(error is None, device=trainer.device)
        if not dist_info.all_true(ok):
            raise error or TrainingError(
                f"step {run.step}: rank 0's validation guard stopped the run"
            )
