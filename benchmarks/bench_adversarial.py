"""The adversarial phase's cost on this machine: where an Algorithm 1 iteration's time goes, and
what each lever of the recipe buys, in seconds per generator update.

``--profile``: one torch.profiler run of the default recipe's Algorithm 1 (256² x 4, bf16,
channels_last, real batches from ``--data``), its time split by the ``record_function`` labels
of inpaintkit/trainer.py and inpaintkit/adversarial.py (data, generator forward, critic
forward, gradient penalty, critic backward, generator backward, optimisers).

``--levers``: the same recipe with each lever (and their combinations) side by side, the
configurations interleaved round by round so that a busy machine slows them alike; prints
seconds per generator update (median over rounds) and the speed-up over the paper's.

    python benchmarks/bench_adversarial.py --data ~/.cache/inpaintkit/data/train.h5 --profile --levers
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from inpaintkit.config import load_recipe, resolve_recipe
from inpaintkit.distributed import Distributed
from inpaintkit.train_data import batch_stream, open_images
from inpaintkit.trainer import Trainer

#: Lever settings measured against the paper's Algorithm 1 (recipe overrides).
LEVERS: dict[str, list[str]] = {
    "paper (5 critic updates, own forwards)": [],
    "5 critic updates, shared forward": ["optimizer.share_generator_forward=true"],
    "1 critic update": ["optimizer.critic_steps=1"],
    "1 critic update, shared forward": [
        "optimizer.critic_steps=1",
        "optimizer.share_generator_forward=true",
    ],
    "1, shared, penalty every 4th": [
        "optimizer.critic_steps=1",
        "optimizer.share_generator_forward=true",
        "loss.gradient_penalty_every=4",
    ],
    "1, shared, penalty on 2 of 4 samples": [
        "optimizer.critic_steps=1",
        "optimizer.share_generator_forward=true",
        "loss.gradient_penalty_batch=2",
    ],
    "2, shared, penalty every 4th": [
        "optimizer.critic_steps=2",
        "optimizer.share_generator_forward=true",
        "loss.gradient_penalty_every=4",
    ],
    "1, shared, penalty every 4th, critics anti-aliased": [
        "optimizer.critic_steps=1",
        "optimizer.share_generator_forward=true",
        "loss.gradient_penalty_every=4",
        "critics.antialias=true",
    ],
    "1, shared, penalty every 4th, 128² crops x 4": [
        "optimizer.critic_steps=1",
        "optimizer.share_generator_forward=true",
        "loss.gradient_penalty_every=4",
        "data.image_size=128",
    ],
}

#: The profiler labels, in the order of an iteration.
LABELS = [
    "data",
    "generator forward",
    "critic forward",
    "gradient penalty",
    "critic backward",
    "critic optimizer",
    "critic forward (generator loss)",
    "generator backward",
    "generator optimizer",
]


def make_trainer(overrides: list[str], data: Path, warmup_done: int):
    """A trainer past its warm-up (Algorithm 1 from the first step) and its real batch stream."""
    recipe = load_recipe(
        resolve_recipe("default"), [*overrides, "schedule.warmup_steps=0", "data.num_workers=1"]
    )
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    batches = batch_stream(trainer, open_images(recipe, data), Distributed(), start=0)
    for step in range(warmup_done):
        trainer.train_step(batches, step)
    return trainer, batches


def run_profile(data: Path, iterations: int) -> None:
    trainer, batches = make_trainer([], data, warmup_done=1)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for step in range(1, 1 + iterations):
            trainer.train_step(batches, step)
    wall = (time.perf_counter() - start) / iterations
    totals = {e.key: e.cpu_time_total / 1e6 / iterations for e in prof.key_averages()}
    print(f"\n### Where an Algorithm 1 iteration's time goes ({iterations} iterations profiled)\n")
    print("| part | s per iteration | share |")
    print("|---|---:|---:|")
    accounted = 0.0
    for label in LABELS:
        seconds = totals.get(label, 0.0)
        # "gradient penalty" runs inside no other label; everything else is disjoint too.
        accounted += seconds
        print(f"| {label} | {seconds:.2f} | {seconds / wall:.0%} |")
    print(
        f"| rest (loss arithmetic, crops, logging) | {wall - accounted:.2f} | {(wall - accounted) / wall:.0%} |"
    )
    print(f"| **iteration (wall, with the profiler)** | **{wall:.2f}** | 100% |")


def run_levers(data: Path, rounds: int, names: list[str]) -> None:
    """Time the levers ``names`` (all of :data:`LEVERS` if empty), the first as the baseline."""
    unknown = sorted(set(names) - set(LEVERS))
    if unknown:
        raise SystemExit(f"unknown lever(s) {unknown}; known: {list(LEVERS)}")
    chosen = {name: LEVERS[name] for name in names or LEVERS}
    trainers = {
        name: make_trainer(overrides, data, warmup_done=1) for name, overrides in chosen.items()
    }
    times: dict[str, list[float]] = {name: [] for name in chosen}
    for r in range(rounds):
        for name, (trainer, batches) in trainers.items():
            start = time.perf_counter()
            trainer.train_step(batches, 1 + r)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times[next(iter(chosen))])
    print(f"\n### Levers, seconds per generator update (median of {rounds} rounds, interleaved)\n")
    print("| configuration | s / generator update | speed-up |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {base / median:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="an HDF5 file from `prepare`")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--levers", action="store_true")
    parser.add_argument("--iterations", type=int, default=2, help="profiled iterations")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per lever")
    parser.add_argument(
        "--lever",
        action="append",
        default=[],
        help="time only this lever (repeatable; the first is the baseline)",
    )
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; recipe `default` (256² x 4, bf16 autocast where native, channels_last)"
    )
    if args.profile:
        run_profile(args.data, args.iterations)
    if args.levers:
        run_levers(args.data, args.rounds, args.lever)


if __name__ == "__main__":
    main()
