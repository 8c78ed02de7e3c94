"""Sizes and time budgets of a burst: the GPU run's, and the dry run's on the CPU.

The GPU run must end within 9 minutes of wall time (a lent machine gives 15 minutes of device
time in all, its start included, and at most 10 per command); the dry run, which covers the
same code at tiny sizes on two busy cores, within 3. Each step's budget is a ceiling enforced
by killing its process; training gets whatever the steps before it left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: The environment variable that selects the dry run (``GPU_BURST_DRY_RUN=1``).
DRY_RUN_VARIABLE = "GPU_BURST_DRY_RUN"


@dataclass(frozen=True)
class Plan:
    """What one burst runs, how big, and for how long (seconds are wall-clock)."""

    name: str
    device: str  # "cuda", or "cpu" in the dry run
    wall: float  # from the runner's start to its last file written
    budgets: tuple[tuple[str, float], ...]  # (step, ceiling) in the order they run
    finish: float  # kept after training: stop it, export, write the files
    train_seconds: float | None  # training's own ceiling (None: all the time left)
    train_overrides: tuple[str, ...]  # sizes and loader, after the recipe's own overrides
    export_every: float  # seconds between fp16 exports of the training generator
    check_size: int  # image side of the generator and loss checks
    patchmatch_size: int
    fill_size: int
    fill_hole: int
    fill_batches: tuple[int, ...]
    fill_precisions: tuple[str, ...]
    fill_images: int  # images per fill row (batch × calls), after one untimed call
    compile_fill: bool  # torch.compile rows in the fill table
    rate_iterations: int  # Algorithm 1 iterations and warm-up steps timed, after untimed ones


def loader_workers() -> int:
    """DataLoader workers for the GPU run: the machine's cores less two (the trainer, the runner)."""
    return max(1, min(12, (os.cpu_count() or 4) - 2))


GPU = Plan(
    name="GPU",
    device="cuda",
    wall=525.0,
    budgets=(
        ("environment", 30.0),
        ("cuda_tests", 60.0),
        ("checks", 60.0),
        ("throughput", 150.0),
        ("distributed", 30.0),
    ),
    finish=35.0,
    train_seconds=None,
    train_overrides=(f"data.num_workers={loader_workers()}",),
    export_every=60.0,
    check_size=256,
    patchmatch_size=128,
    fill_size=512,
    fill_hole=128,
    fill_batches=(1, 16),
    fill_precisions=("fp32", "bf16"),
    fill_images=32,
    compile_fill=True,
    rate_iterations=10,
)

DRY_RUN = Plan(
    name="dry run (CPU, tiny sizes)",
    device="cpu",
    wall=175.0,
    # Ceilings for two cores shared with other work: the steps took 2, 5, 12, 45 and 5 s on a
    # quiet machine (2026-12-06), and one Algorithm 1 iteration between 3 and 15 s on a busy one.
    budgets=(
        ("environment", 20.0),
        ("cuda_tests", 30.0),
        ("checks", 40.0),
        ("throughput", 75.0),
        ("distributed", 25.0),
    ),
    finish=10.0,
    train_seconds=10.0,
    # 64² crops of the full-width generator, two per batch: a step takes seconds on 2 cores.
    train_overrides=(
        "data.image_size=64",
        "critics.local_size=32",
        "data.batch_size=2",
        "data.num_workers=0",
        "schedule.val_images=2",
        "schedule.critic_warmup_steps=1",  # the dry run reaches the generator's updates
    ),
    export_every=4.0,
    check_size=64,
    patchmatch_size=40,
    fill_size=64,
    fill_hole=16,
    fill_batches=(2,),
    # bf16 is emulated on this project's CPUs (16 s for one 64² fill): the GPU run times it.
    fill_precisions=("fp32",),
    fill_images=2,
    # Tracing the generator alone took 19 s on this project's 2 cores (backend "eager").
    compile_fill=False,
    rate_iterations=1,
)


def plan_for(dry_run: bool) -> Plan:
    """The dry run's plan or the GPU's."""
    return DRY_RUN if dry_run else GPU


def dry_run_requested() -> bool:
    """Whether ``GPU_BURST_DRY_RUN`` asks for the dry run (1, true, yes)."""
    return os.environ.get(DRY_RUN_VARIABLE, "").strip().lower() in ("1", "true", "yes")
