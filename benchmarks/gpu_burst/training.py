"""Step 4: ``inpaintkit train`` from the shipped weights for the rest of the time.

The run is the real command (``python -m inpaintkit.cli train``), started from
``inpaintkit/weights/deepfill_v1.safetensors`` with ``--init-from`` on the packed training set.
While it trains, its ``generator.safetensors`` (rewritten at every checkpoint) is exported to
``$OUT`` as fp16 about every minute, so a call killed at any moment still returns a generator.
Before the wall limit the run gets SIGINT: it finishes its step, saves its state and exits 130.
Then its TensorBoard scalars become a CSV and its last image grid a PNG.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inpaintkit.checkpoint import DEFAULT_CHECKPOINT, load_generator, read_metadata, save_generator
from inpaintkit.config import Recipe, load_recipe


@dataclass(frozen=True)
class TrainingPlan:
    """A recipe (a packaged name or a YAML path) and the overrides it trains with."""

    recipe: str
    overrides: tuple[str, ...]


#: What the burst trains (and what the throughput step times as "Algorithm 1"): the
#: adversarial phase from the shipped weights, as the existing CLI does it. Switch this to the
#: cheaper adversarial recipe (critic-only warm-up, ...) once it lands; the sizes of the dry
#: run and the loader workers come after these overrides (plan.py), the checkpoint cadence last.
TRAINING = TrainingPlan(
    # The adversarial phase (recipes/default-adversarial.yaml: fresh critics warmed up alone,
    # then one shared-forward critic update per generator update) at the paper's batch, as the
    # CPU run of stints 12-15 trains it (default-adversarial-periodicity-strong.yaml:
    # lattice-free critics, bilinear resizes, the per-image loss against the lattice above each
    # photo's own at 4-16 px, and the loss against fills that repeat themselves, which took
    # validation periodicity from 0.50 to 0.28 on the CPU; docs/model.md, "The faint ~8 px
    # grid" and "A loss against the lattice").
    recipe="default-adversarial-periodicity-strong",
    overrides=("data.batch_size=16", "schedule.critic_warmup_steps=200"),
)

#: Files this step writes into $OUT.
GENERATOR_NAME = "generator-fp16.safetensors"
SCALARS_NAME = "scalars.csv"
GRID_NAME = "grid.png"
#: The image tag TrainLog writes its validation grids under (input|coarse|refined|attention|truth).
GRID_TAG = "input|coarse|refined|attention|truth"
#: Seconds a stopped run has to finish its step and save (an Algorithm 1 step is well under one on an H100).
STOP_GRACE = 25.0
_RESERVED = ("format", "format_version", "config")


def training_recipe(extra: tuple[str, ...] = ()) -> Recipe:
    """:data:`TRAINING`'s recipe with ``extra`` overrides after its own."""
    return load_recipe(TRAINING.recipe, [*TRAINING.overrides, *extra])


def cadence(rate: float | None, dry_run: bool) -> tuple[str, ...]:
    """Checkpoint, log and validation intervals for ``rate`` Algorithm 1 iterations per second.

    A checkpoint (which rewrites ``generator.safetensors``) about every 30 s and a validation
    with its image grid about every 60 s, so that the minute-by-minute export and a run stopped
    early both have something recent; the dry run checkpoints every step.
    """
    if dry_run:
        checkpoint, validation, log = 1, 1, 1
    else:
        rate = rate if rate and rate > 0 else 2.0  # no measurement: a guess from docs/benchmarks.md
        checkpoint = max(1, round(rate * 30))
        validation = max(checkpoint, round(rate * 60) // checkpoint * checkpoint)
        log = max(1, min(25, checkpoint))
    return (
        f"schedule.checkpoint_every={checkpoint}",
        f"schedule.val_every={validation}",
        f"schedule.image_every={validation}",
        f"schedule.log_every={log}",
        "schedule.keep_every=0",
    )


def train_command(data: Path, run: Path, device: str, overrides: tuple[str, ...]) -> list[str]:
    """The ``inpaintkit train`` command line of the burst."""
    return [
        sys.executable,
        "-m",
        "inpaintkit.cli",
        "train",
        TRAINING.recipe,
        "--data",
        str(data),
        "--out",
        str(run),
        "--init-from",
        str(DEFAULT_CHECKPOINT),
        "--device",
        device,
        "--quiet",
        *TRAINING.overrides,
        *overrides,
    ]


def export_generator(run: Path, out: Path, note: dict[str, str]) -> dict[str, str] | None:
    """Write the run's ``generator.safetensors`` to ``out`` as fp16 with its metadata and ``note``.

    Returns the written metadata, or None while the run has not saved a generator yet.
    """
    source = run / "generator.safetensors"
    if not source.is_file():
        return None
    meta = {k: v for k, v in read_metadata(source).items() if k not in _RESERVED}
    meta.update(note)
    save_generator(out, load_generator(source), metadata=meta, dtype=torch.float16)
    return meta


def supervise(
    command: list[str],
    run: Path,
    out: Path,
    log: Path,
    seconds: float,
    export_every: float,
    note: dict[str, str],
    longest: float | None = None,
) -> dict:
    """Run ``command`` for ``seconds``, exporting its generator every ``export_every``.

    Then stops it with SIGINT (SIGKILL after :data:`STOP_GRACE`), exports once more and returns
    what happened: exit code, wall seconds, whether it was stopped, the exported step. A run
    that has not saved a generator yet gets until ``longest`` seconds: a SIGINT before its
    training loop starts (imports, data, validation set) would end it with nothing saved.
    """
    longest = max(seconds, longest or seconds)
    start = time.monotonic()
    exported: dict[str, str] | None = None
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        stopped = False
        last_export, seen = start, 0.0
        while process.poll() is None:
            time.sleep(min(1.0, max(0.1, seconds / 50)))
            now = time.monotonic()
            saved = (run / "generator.safetensors").is_file()
            due = now - start >= (seconds if saved else longest)
            if due and not stopped:
                process.send_signal(signal.SIGINT)  # the run saves its state and exits 130
                stopped, stop_time = True, now
            if stopped and now - stop_time > STOP_GRACE:
                os.killpg(process.pid, signal.SIGKILL)
            if now - last_export >= export_every:
                seen, exported = _export_if_new(run, out, note, seen, exported)
                last_export = now
        code = process.wait()
    _, exported = _export_if_new(run, out, note, seen, exported)
    return {
        "exit_code": code,
        "seconds": round(time.monotonic() - start, 1),
        "stopped": stopped,
        "exported": exported,
    }


def _export_if_new(
    run: Path, out: Path, note: dict[str, str], seen: float, exported: dict | None
) -> tuple[float, dict | None]:
    """Export when the run's generator file is newer than the last one exported."""
    source = run / "generator.safetensors"
    try:
        stamp = source.stat().st_mtime
    except FileNotFoundError:
        return seen, exported
    if stamp == seen:
        return seen, exported
    try:
        return stamp, export_generator(run, out, note) or exported
    except Exception as err:  # a failed export must not stop the supervision
        print(f"export of {source} failed: {err}", file=sys.stderr)
        return seen, exported


def write_logs(run: Path, scalars_csv: Path, grid_png: Path) -> dict:
    """The run's TensorBoard scalars as CSV (step, tag, value) and its last image grid as PNG."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = run / "logs"
    if not logs.is_dir():
        return {"scalars": 0, "grid_step": None}
    events = EventAccumulator(str(logs), size_guidance={"scalars": 0, "images": 1})
    events.Reload()
    tags = events.Tags()
    rows = [
        (event.step, tag, event.value) for tag in tags["scalars"] for event in events.Scalars(tag)
    ]
    rows.sort()
    with open(scalars_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("step", "tag", "value"))
        writer.writerows(rows)
    grid_step = None
    if GRID_TAG in tags["images"]:
        last = events.Images(GRID_TAG)[-1]
        grid_png.write_bytes(last.encoded_image_string)
        grid_step = last.step
    latest = {}
    for step, tag, value in rows:
        latest[tag] = (step, value)
    return {"scalars": len(rows), "grid_step": grid_step, "latest": latest}


def section(result: dict) -> str:
    """The report's training section."""
    lines = ["## 4. Training", ""]
    lines.append(f"- recipe `{TRAINING.recipe}`, overrides `{' '.join(result['overrides'])}`")
    lines.append(f"- command: `{' '.join(result['command'][1:])}`")
    if "error" in result:
        lines.append(f"- **not run: {result['error']}**")
        return "\n".join(lines)
    run = result["run"]
    stop = "stopped with SIGINT" if run["stopped"] else "ended by itself"
    lines.append(
        f"- {stop} after {run['seconds']} s, exit code {run['exit_code']} (130 = saved and stopped)"
    )
    exported = run["exported"]
    if exported:
        lines.append(
            f"- `{GENERATOR_NAME}`: step {exported.get('step')}, {exported.get('samples')} samples, "
            f"{exported.get('weights', 'raw weights')}"
        )
    else:
        lines.append("- **no generator was saved** (the run stopped before its first checkpoint)")
    logs = result.get("logs", {})
    latest = logs.get("latest", {})
    if latest:
        lines += ["", "| last value of | step | value |", "|---|---:|---:|"]
        for tag in sorted(latest):
            if tag.startswith(("generator/", "critic/", "wasserstein/", "validation/", "speed/")):
                step, value = latest[tag]
                lines.append(f"| {tag} | {step} | {value:.4g} |")
    grid = logs.get("grid_step")
    lines.append("")
    lines.append(
        f"- `{GRID_NAME}`: the validation grid at step {grid}"
        if grid is not None
        else "- no image grid was written"
    )
    lines.append(f"- `{SCALARS_NAME}`: {logs.get('scalars', 0)} scalar values")
    return "\n".join(lines)
