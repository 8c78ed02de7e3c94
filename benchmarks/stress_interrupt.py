"""Stress run: SIGKILL ``inpaintkit prepare|train|fill|evaluate`` at random moments, then resume.

For each command, an uninterrupted reference run first; then, ``--kills`` times, a fresh run
is started as a child process, killed with SIGKILL at a random moment after it has committed
some work (seeded), its output folder is checked (every file opens; the only other names are
atomic_write's temporary files and the documented resume files), the same command is re-run
(``--resume`` for prepare and train; fill and evaluate skip what is done by default) and its
results are compared with the reference, bit for bit (evaluate: every metric, not the timings).

    python benchmarks/stress_interrupt.py                 # 10 kills per command
    python benchmarks/stress_interrupt.py --quick         # 2 kills per command
    python benchmarks/stress_interrupt.py --kills 50 --max-seconds 1800 --seed 7

The test suite (tests/test_reliability_interrupt.py) runs the same scenarios with one kill
per command. docs/reliability.md explains what is promised.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import yaml
from PIL import Image
from safetensors import safe_open

from inpaintkit.io import is_temporary
from inpaintkit.prepare import PrepareOptions, prepare_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = ROOT / "recipes" / "tiny.yaml"
#: The tiny recipe made smaller still (as tests/test_train.py does) and without image/val logging.
TRAIN_OVERRIDES = [
    "data.image_size=32",
    "critics.local_size=16",
    "optimizer.critic_steps=1",
    "schedule.steps=6",
    "schedule.checkpoint_every=1",
    "schedule.image_every=1000",
    "schedule.val_every=1000",
]


# --------------------------------------------------------------------------- checking outputs


def check_file(path: Path) -> str | None:
    """Open ``path`` fully by its kind; None if it is whole, else a one-line problem."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"):
            with Image.open(path) as image:
                image.load()
        elif suffix == ".h5":
            with h5py.File(path, "r") as f:
                for name in f:
                    f[name][()]
        elif suffix == ".safetensors":
            with safe_open(str(path), framework="np") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    f.get_tensor(name)
        elif suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
                if line.endswith("\n"):  # a last line without newline is the documented cut
                    json.loads(line)
        elif suffix == ".yaml":
            yaml.safe_load(path.read_text(encoding="utf-8"))
        elif suffix in (".txt", ".csv", ".html"):
            path.read_text(encoding="utf-8")
        else:
            return f"{path}: unexpected file"
    except Exception as err:  # noqa: BLE001 - any failure to open is the finding
        return f"{path}: {type(err).__name__}: {' '.join(str(err).split())[:200]}"
    return None


def check_outputs(out: Path, resume_files: tuple[str, ...] = ()) -> tuple[list[str], list[Path]]:
    """``(problems, temporaries)`` of the files below ``out``.

    ``resume_files``: names (not paths) that may hold partial work by design; they are
    not opened. Temporaries are atomic_write's leftovers (hidden, never under a final name).
    """
    problems, temporaries = [], []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if is_temporary(path):
            temporaries.append(path)
        elif path.name in resume_files or path.name.startswith("events.out.tfevents."):
            continue  # TensorBoard's append-only log tolerates a cut last record
        elif (problem := check_file(path)) is not None:
            problems.append(problem)
    return problems, temporaries


def _digest(data: bytes | np.ndarray) -> str:
    return hashlib.sha256(data.tobytes() if isinstance(data, np.ndarray) else data).hexdigest()[:16]


def _pixels(path: Path) -> str:
    with Image.open(path) as image:
        return f"{image.mode} {image.size} {_digest(np.asarray(image))}"


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    """One command to interrupt: its inputs, arguments, progress test, and result fingerprint."""

    name: str
    make_inputs: Callable[[Path], None]  # writes the inputs into the given folder
    args: Callable[[Path, Path], list[str]]  # (inputs, out) -> CLI arguments
    resume: list[str]  # extra arguments of the re-run
    started: Callable[[Path], bool]  # out -> True once some work is committed
    snapshot: Callable[[Path], dict[str, str]]  # out -> fingerprint of the results
    window: float  # seconds of work after started() on a busy machine; the tests kill within a quarter of it (the stress run measures its own)
    resume_files: tuple[str, ...] = ()


def _noise_folder(folder: Path, count: int, height: int, width: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png"
        )


def _prepare_inputs(inputs: Path) -> None:
    _noise_folder(inputs / "images", 200, 20, 20, seed=1)


def _prepare_snapshot(out: Path) -> dict[str, str]:
    snap = {}
    with h5py.File(out / "d.h5", "r") as f:
        for name in sorted(f):
            data = f[name][()]
            # Strings and variable-length rows come back as object arrays: fingerprint their repr.
            snap[f"dataset {name}"] = _digest(
                repr(data.tolist()).encode() if data.dtype.kind == "O" else data
            )
        for name in sorted(f.attrs):
            snap[f"attr {name}"] = str(f.attrs[name])
    for name in ("d.train.txt", "d.val.txt"):
        snap[name] = _digest((out / name).read_bytes())
    return snap


def _fill_inputs(inputs: Path) -> None:
    _noise_folder(inputs / "images", 16, 32, 32, seed=2)
    hole = np.zeros((32, 32), np.uint8)
    hole[8:20, 10:24] = 255
    Image.fromarray(hole).save(inputs / "mask.png")


def _images_in(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.png") if not is_temporary(p))


def _train_inputs(inputs: Path) -> None:
    _noise_folder(inputs / "images", 6, 40, 40, seed=3)
    prepare_dataset(
        inputs / "images", inputs / "data.h5", PrepareOptions(size=40, val_count=2), workers=1
    )


def _train_snapshot(out: Path) -> dict[str, str]:
    with safe_open(str(out / "generator.safetensors"), framework="np") as f:
        snap = {name: _digest(f.get_tensor(name)) for name in sorted(f.keys())}  # noqa: SIM118
    snap["step"] = str(json.loads((out / "training_state.json").read_text())["step"])
    return snap


def _evaluate_inputs(inputs: Path) -> None:
    _noise_folder(inputs / "images", 40, 24, 24, seed=4)


def _evaluate_snapshot(out: Path) -> dict[str, str]:
    snap = {}
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        row.pop("seconds")  # a timing, different on every run
        snap[f"result {row['image']} {row['method']}"] = json.dumps(row, sort_keys=True)
    for path in _images_in(out):
        snap[str(path.relative_to(out))] = _pixels(path)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for method, stats in metrics["summary"].items():
        snap[f"summary {method}"] = json.dumps(
            {k: v for k, v in stats.items() if "seconds" not in k}, sort_keys=True
        )
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in metrics["images"]]
    snap["metrics.json rows"] = json.dumps(rows, sort_keys=True)
    return snap


SCENARIOS = {
    "prepare": Scenario(
        name="prepare",
        make_inputs=_prepare_inputs,
        args=lambda i, o: [
            "prepare",
            str(i / "images"),
            str(o / "d.h5"),
            "--size",
            "16",
            "--val-count",
            "20",
            "--workers",
            "1",
        ],
        resume=["--resume"],
        # Work is committed as whole part files; the partial file is the last step's assembly.
        started=lambda o: any((o / ".d.h5.parts").glob("part-*.h5")),
        snapshot=_prepare_snapshot,
        window=0.6,
        resume_files=(".d.h5.partial",),
    ),
    "train": Scenario(
        name="train",
        make_inputs=_train_inputs,
        args=lambda i, o: [
            "train",
            str(TINY_RECIPE),
            "--data",
            str(i / "data.h5"),
            "--out",
            str(o / "run"),
            "--device",
            "cpu",
            "--quiet",
            *TRAIN_OVERRIDES,
        ],
        resume=["--resume"],
        started=lambda o: (o / "run" / "training_state.json").exists(),
        snapshot=lambda o: _train_snapshot(o / "run"),
        window=3.0,
    ),
    "fill": Scenario(
        name="fill",
        make_inputs=_fill_inputs,
        args=lambda i, o: [
            "fill",
            str(i / "images"),
            "--masks",
            str(i / "mask.png"),
            "-o",
            str(o / "filled"),
            "--method",
            "patchmatch",
            "--device",
            "cpu",
            "--workers",
            "1",
            "--batch-size",
            "2",
        ],
        resume=[],
        started=lambda o: bool((o / "filled").is_dir() and _images_in(o / "filled")),
        snapshot=lambda o: {p.name: _pixels(p) for p in _images_in(o / "filled")},
        window=1.0,
    ),
    "evaluate": Scenario(
        name="evaluate",
        make_inputs=_evaluate_inputs,
        args=lambda i, o: [
            "evaluate",
            str(i / "images"),
            "-o",
            str(o / "report"),
            "--size",
            "24",
            "--samples",
            "3",
            "--quiet",
            "--device",
            "cpu",
        ],
        resume=[],
        started=lambda o: (
            (o / "report" / "results.jsonl").is_file()
            and (o / "report" / "results.jsonl").stat().st_size > 0
        ),
        snapshot=lambda o: _evaluate_snapshot(o / "report"),
        window=1.0,
        resume_files=(
            "results.jsonl",
        ),  # checked line by line by check_file, cut last line allowed
    ),
}


# --------------------------------------------------------------------------- running


def child_env() -> dict[str, str]:
    """One thread per child: the results must not depend on it, and the machine is shared."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def run_cli(args: list[str], in_process: bool = False) -> tuple[int, str]:
    """Run ``inpaintkit ARGS`` to the end -> ``(exit code, output)``.

    ``in_process`` saves the interpreter start-up (tests); torch then runs on one thread, as
    the children do, so training is bit-identical across the two.
    """
    if not in_process:
        done = subprocess.run(
            [sys.executable, "-c", "from inpaintkit.cli import main; main()", *args],
            capture_output=True,
            text=True,
            env=child_env(),
        )
        return done.returncode, done.stdout + done.stderr
    import torch
    from click.testing import CliRunner

    from inpaintkit.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        torch.set_num_threads(threads)
    return result.exit_code, result.output


def kill_during(
    args: list[str], started: Callable[[], bool], delay: float, timeout: float = 120.0
) -> bool:
    """Start ``inpaintkit ARGS`` as a child, SIGKILL it ``delay`` s after ``started()``.

    Returns True when the kill landed (the child was still running), False when the child had
    already exited. Raises on a child that neither starts nor ends within ``timeout``.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", "from inpaintkit.cli import main; main()", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    deadline = time.monotonic() + timeout
    try:
        while not started() and child.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"inpaintkit {args[0]} made no progress in {timeout:.0f} s")
            time.sleep(0.02)
        time.sleep(delay)
        landed = child.poll() is None
        if landed:
            child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=timeout)
        if not landed and child.returncode != 0:
            raise RuntimeError(
                f"inpaintkit {args[0]} failed on its own: {err.decode(errors='replace')[-500:]}"
            )
        return landed
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def running_time(args: list[str], started: Callable[[], bool], timeout: float = 120.0) -> float:
    """Seconds an uninterrupted ``inpaintkit ARGS`` runs on after ``started()``: the kill window.

    Measured on this machine, now, so the random kills land while the command is still
    working, however fast or loaded the machine is.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", "from inpaintkit.cli import main; main()", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    try:
        while not started() and child.poll() is None:
            time.sleep(0.02)
        begin = time.monotonic()
        child.wait(timeout=timeout)
        return time.monotonic() - begin
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@dataclass
class Trial:
    """What one kill-and-resume found."""

    landed: bool  # the kill hit a running process
    problems_after_kill: list[str] = field(default_factory=list)
    problems_after_resume: list[str] = field(default_factory=list)
    temporaries: list[Path] = field(default_factory=list)  # atomic_write leftovers after the resume
    # Result keys that differ from the reference.
    differences: list[str] = field(default_factory=list)


def prepare_scenario(
    scenario: Scenario, work: Path, in_process: bool = False
) -> tuple[Path, dict[str, str]]:
    """Write the inputs and run the reference (uninterrupted) -> ``(inputs, reference snapshot)``."""
    inputs = work / "inputs"
    scenario.make_inputs(inputs)
    reference = work / "reference"
    reference.mkdir()
    code, output = run_cli(scenario.args(inputs, reference), in_process)
    if code != 0:
        raise RuntimeError(f"reference {scenario.name} run failed ({code}): {output[-1000:]}")
    return inputs, scenario.snapshot(reference)


def trial(
    scenario: Scenario,
    inputs: Path,
    reference: dict[str, str],
    out: Path,
    delay: float,
    in_process: bool = False,
) -> Trial:
    """Kill a fresh run into ``out`` after ``delay`` s of progress, check, resume, compare."""
    out.mkdir(parents=True)
    args = scenario.args(inputs, out)
    result = Trial(landed=kill_during(args, lambda: scenario.started(out), delay))
    result.problems_after_kill, _ = check_outputs(out, scenario.resume_files)
    code, output = run_cli(args + scenario.resume, in_process)
    if code != 0:
        result.problems_after_resume.append(
            f"re-run exited with {code}: {' '.join(output.split())[-300:]}"
        )
        return result
    result.problems_after_resume, result.temporaries = check_outputs(out, scenario.resume_files)
    snapshot = scenario.snapshot(out)
    result.differences = sorted(
        k for k in reference.keys() | snapshot.keys() if reference.get(k) != snapshot.get(k)
    )
    return result


# --------------------------------------------------------------------------- the stress run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 kills per command")
    parser.add_argument("--kills", type=int, default=10, help="kills per command (default 10)")
    parser.add_argument(
        "--max-seconds", type=float, default=900.0, help="stop starting new trials after this"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument(
        "--commands", default="prepare,train,fill,evaluate", help="comma-separated subset"
    )
    args = parser.parse_args()
    kills = 2 if args.quick else args.kills
    rng = random.Random(args.seed)
    start = time.monotonic()
    rows = []
    failures = []
    with tempfile.TemporaryDirectory(prefix="inpaintkit-stress-") as tmp:
        for name in args.commands.split(","):
            scenario = SCENARIOS[name]
            work = Path(tmp) / name
            t0 = time.monotonic()
            inputs, reference = prepare_scenario(scenario, work)
            timing = work / "timing"
            timing.mkdir()
            window = running_time(
                scenario.args(inputs, timing), functools.partial(scenario.started, timing)
            )
            shutil.rmtree(timing)
            trials = []
            for k in range(kills):
                if time.monotonic() - start > args.max_seconds:
                    break
                delay = rng.uniform(0.0, 0.9 * window)
                result = trial(scenario, inputs, reference, work / f"trial{k}", delay)
                trials.append(result)
                for problem in (
                    result.problems_after_kill + result.problems_after_resume + result.differences
                ):
                    failures.append(f"{name} trial {k} (delay {delay:.2f} s): {problem}")
                shutil.rmtree(work / f"trial{k}")
            rows.append((name, trials, window, time.monotonic() - t0))

    print("## Interruption stress run: SIGKILL at random moments, then resume\n")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"Command: `{shlex.join(['python', 'benchmarks/stress_interrupt.py', *sys.argv[1:]])}`")
    print(
        f"Seed {args.seed}; each trial: fresh run, SIGKILL at a uniform moment within the first 90 % of the "
        "time an uninterrupted run works after its first committed output (the window, measured in this "
        "run), check every file, re-run, compare with an uninterrupted run.\n"
    )
    print(
        "| command | trials | window (s) | kills that hit a running process | corrupt files after kill | "
        "re-runs identical to uninterrupted | temporary files left | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, trials, window, seconds in rows:
        landed = sum(t.landed for t in trials)
        corrupt = sum(len(t.problems_after_kill) for t in trials)
        identical = sum(not t.problems_after_resume and not t.differences for t in trials)
        temporaries = sum(len(t.temporaries) for t in trials)
        print(
            f"| {name} | {len(trials)} | {window:.2f} | {landed} | {corrupt} | {identical}/{len(trials)} | {temporaries} "
            f"| {seconds:.1f} |"
        )
    if failures:
        print("\nFailures:\n")
        print("\n".join(f"- {line}" for line in failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
