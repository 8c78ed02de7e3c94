"""What a training run reports and watches: validation, TensorBoard, the progress bar and the guards.

:func:`validate` fills the run's fixed validation set; :class:`TrainLog` writes scalars, image
grids and ``validation.jsonl``; :class:`LossGuard` stops a run whose loss became NaN or inf,
:class:`ValidationGuard` one whose validation hole PSNR fell too far below its best.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from inpaintkit import losses, metrics
from inpaintkit.config import Recipe
from inpaintkit.data import InpaintingDataset
from inpaintkit.distributed import Distributed
from inpaintkit.masks import MaskSampler
from inpaintkit.model.generator import Generator
from inpaintkit.periodicity import power_ratio, repetition
from inpaintkit.tensors import composite, signed_to_unit, tensor_to_image
from inpaintkit.trainer import TrainingError

if TYPE_CHECKING:
    from inpaintkit.train import RunState

#: One JSON object per validation: step, samples, train_seconds and the metrics.
VALIDATION_LOG = "validation.jsonl"
#: The generator at the run's best validation hole PSNR so far (schedule.max_validation_drop_db).
BEST_GENERATOR_FILE = "generator-best.safetensors"
#: The lattice periods validation measures the fills' grid at, whatever the recipe trains
#: against, so that runs compare: 4-16 px, which holds every period from 2 px up as a divisor
#: (a lattice of period P sees the grids whose period divides P).
VALIDATION_LATTICE_PERIODS = tuple(range(4, 17))
#: What validation measures of the fills' grid image by image (see :func:`validate`).
PER_IMAGE_GRID_MEASURES = (
    "hole_lattice_loss",
    "truth_lattice_loss",
    "hole_lattice_gridded",
    "hole_lattice_excess",
    "hole_periodicity",
    "truth_periodicity",
    "hole_alternation",
    "truth_alternation",
    "hole_periodicity_photo_units",
    "hole_alternation_photo_units",
    "hole_detail_excess",
    "hole_chroma_excess",
    "hole_detail_deficit",
)


@torch.no_grad()
def validate(
    generator: Generator,
    images: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int,
    grid_rows: int = 4,
    lattice_periods: Sequence[int] = VALIDATION_LATTICE_PERIODS,
) -> tuple[dict[str, float], np.ndarray]:
    """Fill the fixed validation set; return mean metrics and an image grid.

    ``images (N, 3, S, S)`` in [-1, 1] and ``masks (N, 1, S, S)`` on the generator's device.
    Metrics are :func:`metrics.image_metrics` on the composited fill, averaged with
    :class:`metrics.RunningStats`, and ``hole_lattice_spread``: the 8 px
    :class:`metrics.LatticeProfile` of all the fills (the grid issue #25 watches), which
    misses grids whose phase differs from image to image; so also ``hole_lattice_loss`` and
    ``truth_lattice_loss``: :func:`losses.lattice_loss_per_image` of the fills and of the
    photos, averaged over ``lattice_periods`` and the images it measures, and
    ``hole_lattice_gridded``, the share of those images whose fill's loss is over twice its
    photo's at one period or more (a mean hides a few strongly gridded fills among many clean
    ones, and a grid at one period among many clean periods), and ``hole_lattice_excess``, the
    fills' loss above their photos' (0 where none), averaged over periods and images (what
    ``loss.lattice_above_photo`` trains against); and, whatever the grid's phase,
    ``hole_periodicity`` and ``truth_periodicity``: :func:`periodicity.periodicity` of the
    fills and of the photos, and ``hole_alternation`` and ``truth_alternation`` (a
    checkerboard's cells, :func:`periodicity.alternation`), and ``hole_periodicity_photo_units``
    and ``hole_alternation_photo_units``, the fills' in units of their photos' detail, which
    grain cannot dilute (``periodicity.residual_autocorrelation``'s ``reference``) (NaN-free
    means over the images with a hole interior); and ``hole_detail_excess``, each fill's
    local detail above its photo's, over its hole (``losses.detail_excess_loss``, per image),
    and ``hole_chroma_excess``, the same of its colour (``losses.chroma_excess_loss``), and
    ``hole_detail_deficit``, its local detail below its photo's (``losses.detail_deficit_loss``).
    The grid is uint8 ``(rows·S, 5·S, 3)``: input (holes white) | coarse | refined (composited) | attention map
    (flow colours, grey without attention) | ground truth.
    """
    stats: dict[str, metrics.RunningStats] = {}
    lattice = metrics.LatticeProfile()  # over the whole set: one spread, not a per-image mean
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
        lattice.add(signed_to_unit(completed), m)
        fills = losses.lattice_loss_per_image(completed, m, lattice_periods)  # (M, P)
        photos = losses.lattice_loss_per_image(x, m, lattice_periods)  # the same images
        fill_periodicity, fill_alternation = repetition(completed, m)
        photo_periodicity, photo_alternation = repetition(x, m)
        # In the photos' units: the same autocorrelation rescaled, not computed again.
        to_photo_units = power_ratio(completed, x, m)
        fill_periodicity_photo_units = fill_periodicity * to_photo_units
        fill_alternation_photo_units = fill_alternation * to_photo_units
        excess, deficit, pixels = losses.detail_gap_sums(completed.double(), x.double(), m)
        colour_excess, _, _ = losses.detail_gap_sums(
            losses.chroma(completed.double()), losses.chroma(x.double()), m
        )
        for key, values in (
            ("hole_lattice_loss", fills.mean(dim=1)),
            ("truth_lattice_loss", photos.mean(dim=1)),
            ("hole_lattice_gridded", (fills > 2.0 * photos).any(dim=1).double()),
            ("hole_lattice_excess", (fills - photos).clamp(min=0.0).mean(dim=1)),
            ("hole_periodicity", fill_periodicity),
            ("truth_periodicity", photo_periodicity),
            ("hole_alternation", fill_alternation),
            ("truth_alternation", photo_alternation),
            ("hole_periodicity_photo_units", fill_periodicity_photo_units),
            ("hole_alternation_photo_units", fill_alternation_photo_units),
            ("hole_detail_excess", excess / pixels),
            ("hole_chroma_excess", colour_excess / pixels),
            ("hole_detail_deficit", deficit / pixels),
        ):
            for value in values.tolist():
                if not math.isnan(value):  # a hole with no interior has no periodicity
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
    means["hole_lattice_spread"] = lattice.spread
    for key in PER_IMAGE_GRID_MEASURES:
        # NaN: no hole reached every cell (or had an interior)
        means.setdefault(key, math.nan)
    return means, np.concatenate(columns, axis=0)


def fixed_validation_set(
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
                self.validation = fixed_validation_set(recipe, data, device)
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

    def write_scalars(self, step: int, phase: str, lr: float) -> None:
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
            # Critic warm-up steps have no generator loss; the critics' is shown instead.
            loss = means.get("generator/loss", means.get("critic/loss", math.nan))
            label = "" if phase == "adversarial" else f"{phase}  "
            self.bar.update(self.task, info=f"{label}loss {loss:.4f}  {rate:.2f} it/s")
        self.sums, self.counts = {}, {}

    def validate(self, run: RunState, generator: Generator) -> dict[str, float] | None:
        """On validation and image steps: metrics to TensorBoard and ``validation.jsonl``, the
        image grid. Returns the validation means on validation steps (rank 0), else None."""
        schedule, step = self.recipe.schedule, run.step
        if self.validation is None or (
            step % schedule.val_every != 0 and step % schedule.image_every != 0
        ):
            return None
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
        return val_means if step % schedule.val_every == 0 else None

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


class ValidationGuard:
    """Stops a run whose validation hole PSNR fell more than ``schedule.max_validation_drop_db``
    below the best it has validated.

    The adversarial phase trades accuracy for texture; this bounds the trade. The best so far
    is read back from ``validation.jsonl`` on resume, so a stop survives stints. Validation
    runs before the save of its step, so the weights that failed are never saved.
    """

    def __init__(self, recipe: Recipe, out: Path) -> None:
        self.limit = recipe.schedule.max_validation_drop_db
        self.out = out
        self.best_step, self.best = -1, -math.inf
        path = out / VALIDATION_LOG
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line) if line.strip() else {}
                if record.get("hole_psnr", -math.inf) > self.best:
                    self.best_step, self.best = record["step"], record["hole_psnr"]

    def check(self, step: int, means: dict[str, float]) -> bool:
        """Record validation ``means`` of ``step``; True when it is the best so far and the guard
        is on (the caller keeps that generator). Raises :class:`TrainingError` on a fall past
        the limit."""
        value = means.get("hole_psnr", math.nan)
        if self.limit > 0 and not value >= self.best - self.limit:
            raise TrainingError(
                f"validation hole PSNR fell to {value:.2f} dB at step {step}, more than "
                f"schedule.max_validation_drop_db = {self.limit} below the best, {self.best:.2f} dB "
                f"at step {self.best_step}; stopped without saving step {step}. The best generator "
                f"is {self.out / BEST_GENERATOR_FILE}; the last checkpoint is kept for --resume"
            )
        if value > self.best:
            self.best_step, self.best = step, value
            return self.limit > 0  # the best generator is kept only where the guard is on
        return False
