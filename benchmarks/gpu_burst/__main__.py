"""``python -m gpu_burst run|pack|step`` with benchmarks/ on PYTHONPATH (gpu_burst.sh sets it).

python -m gpu_burst run --out DIR [--dry-run] [--data TRAIN.h5]   # what gpu_burst.sh runs
python -m gpu_burst pack [--source ../shared/data/train] [--out data/gpu_burst/train.h5]
python -m gpu_burst step NAME --result FILE [--dry-run]           # one step (the runner's child)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .plan import dry_run_requested, plan_for


def main() -> int:
    parser = argparse.ArgumentParser(prog="gpu_burst", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="every step, then training, into --out")
    run.add_argument("--out", type=Path, required=True, help="folder for report.md and the rest")
    run.add_argument(
        "--data",
        type=Path,
        default=None,
        help="packed training set (default: $GPU_BURST_DATA or data/gpu_burst/train.h5)",
    )
    pack = commands.add_parser("pack", help="pack the training set that travels with the call")
    pack.add_argument(
        "--source", type=Path, default=None, help="images (default ../shared/data/train)"
    )
    pack.add_argument("--out", type=Path, default=None, help="default data/gpu_burst/train.h5")
    step = commands.add_parser("step", help="one step of the burst (run by the runner)")
    step.add_argument(
        "name", choices=("environment", "checks", "throughput", "distributed"), help="the step"
    )
    step.add_argument("--result", type=Path, required=True, help="JSON file of its results")
    for sub in (run, step):
        sub.add_argument(
            "--dry-run",
            action="store_true",
            default=dry_run_requested(),
            help="every step on the CPU at tiny sizes (also GPU_BURST_DRY_RUN=1)",
        )
    args = parser.parse_args()

    if args.command == "pack":
        from .pack import DEFAULT_DATA, DEFAULT_SOURCE
        from .pack import pack as pack_data

        return pack_data(args.source or DEFAULT_SOURCE, args.out or DEFAULT_DATA)
    plan = plan_for(args.dry_run)
    if args.command == "run":
        from .pack import DEFAULT_DATA
        from .runner import run_burst

        data = args.data or Path(os.environ.get("GPU_BURST_DATA") or DEFAULT_DATA)
        return run_burst(args.out, args.dry_run, data, plan)

    import importlib

    from .results import Results

    module = importlib.import_module(f".{args.name}", __package__)
    results = Results(args.result)
    try:
        module.run(plan, results)
    finally:
        results.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
