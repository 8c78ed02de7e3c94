"""Benchmark: contextual attention's forward and backward at two revisions of the code, side by side.

Each revision is a source tree (a checkout, or ``git worktree add /tmp/old REV``); its
``inpaintkit`` is imported in a fresh subprocess, so both time the same inputs on the same
machine, alternately (ABAB…), and the table gives medians and new / old ratios. The layer runs
in the generator's hole mode at batch ``--batch`` on 64² features of ``--channels`` channels,
for rate 2 (the paper's) and rate 1, with a centred 32²-feature hole ("half") and with the
whole grid as hole ("whole": what a batch of large training holes makes the window).

    git worktree add /tmp/old 1dca9a7
    python benchmarks/bench_attention_revisions.py /tmp/old .
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

#: Run in the subprocess: time forward alone and forward + backward, print one JSON line.
_TIMER = r"""
import json, sys, time
import torch
from inpaintkit.model.attention import ContextualAttention
rate, hole, batch, channels, repeats = json.loads(sys.argv[1])
gen = torch.Generator().manual_seed(0)
features = torch.randn(batch, channels, 64, 64, generator=gen).requires_grad_(True)
mask = torch.zeros(batch, 1, 64, 64)
if hole == "whole":
    mask[:] = 1
else:
    mask[:, :, 16:48, 16:48] = 1
layer = ContextualAttention(rate=rate, foreground="hole")
def forward_backward():
    layer(features, features, mask).square().sum().backward()
def forward():
    with torch.no_grad():
        layer(features, features, mask)
forward_backward()  # warm-up: allocator, first-call dispatch
times = {"forward": [], "forward+backward": []}
for _ in range(repeats):
    for name, call in (("forward", forward), ("forward+backward", forward_backward)):
        start = time.perf_counter()
        call()
        times[name].append(time.perf_counter() - start)
print(json.dumps(times))
"""


def time_revision(tree: Path, case: list, threads: int) -> dict[str, list[float]]:
    """Times of ``case`` with ``tree``'s ``inpaintkit``, in a subprocess of its own."""
    tree = tree.resolve()
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(threads))
    found = subprocess.run(
        [sys.executable, "-c", "import inpaintkit; print(inpaintkit.__file__)"],
        env=env,
        cwd=tree,  # `python -c` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree):
        raise SystemExit(f"{tree}: imports inpaintkit from {found}, not from the tree")
    out = subprocess.run(
        [sys.executable, "-c", _TIMER, json.dumps(case)],
        env=env,
        cwd=tree,  # `python -c` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="source tree of the revision to compare against")
    parser.add_argument("new", type=Path, help="source tree of the revision under test")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timings per process")
    parser.add_argument("--rounds", type=int, default=2, help="ABAB rounds (processes per tree)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} threads; "
        f"batch {args.batch}, {args.channels} channels, 64² features; "
        f"old = {args.old}, new = {args.new}; {args.rounds} rounds × {args.repeats} repeats\n"
    )
    print("| rate | hole | pass | old (s) | new (s) | new / old |")
    print("|---:|---|---|---:|---:|---:|")
    for rate in (2, 1):
        for hole in ("half", "whole"):
            case = [rate, hole, args.batch, args.channels, args.repeats]
            times = {"old": {}, "new": {}}
            for _ in range(args.rounds):
                for label, tree in (("old", args.old), ("new", args.new)):
                    for name, values in time_revision(tree, case, args.threads).items():
                        times[label].setdefault(name, []).extend(values)
            for name in ("forward", "forward+backward"):
                old = statistics.median(times["old"][name])
                new = statistics.median(times["new"][name])
                print(
                    f"| {rate} | {hole} | {name} | {old:.3f} | {new:.3f} | {new / old:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
