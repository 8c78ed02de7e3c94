"""The burst itself: each step in a child process under its budget, then training, then the files.

Every step's output goes to ``$OUT/burst.log``; its results to a JSON file that the step saves
as it goes (:mod:`.results`), so a step killed at its budget still reports what it finished.
``report.md`` is rewritten after every step, so even a burst killed from outside leaves one.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import training
from .plan import Plan
from .results import load_results

ROOT = Path(__file__).resolve().parents[2]
#: The pytest marker of the tests that need CUDA (pyproject.toml registers it).
CUDA_MARKER = "cuda"
#: The files the burst writes into $OUT (a lent machine returns at most 8).
REPORT_NAME = "report.md"
LOG_NAME = "burst.log"
RESULTS_NAME = "results.json"
#: A step is not started with less time than this left for it.
SHORTEST_STEP = 5.0


def cuda_test_files() -> list[Path]:
    """The test modules that use the ``cuda`` marker (pytest -m cuda runs only these: the
    others need packages, such as the serve extra's, that a GPU machine may lack)."""
    return sorted(
        p for p in (ROOT / "tests").glob("test_*.py") if f"mark.{CUDA_MARKER}" in p.read_text()
    )


def run_child(command: list[str], seconds: float, log: Path) -> dict:
    """Run ``command`` with its output appended to ``log``; kill its process group after ``seconds``."""
    start = time.monotonic()
    with open(log, "ab") as sink:
        sink.write(f"\n===== {' '.join(command)} (budget {seconds:.0f} s)\n".encode())
        sink.flush()
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=seconds)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # compile workers and loaders too
            process.wait()
            code, status = None, f"timed out at {seconds:.0f} s"
    return {"status": status, "exit_code": code, "seconds": round(time.monotonic() - start, 1)}


def step_command(name: str, result: Path, dry_run: bool) -> list[str]:
    """The child process of step ``name``: pytest for the CUDA tests, else ``gpu_burst step``."""
    if name == "cuda_tests":
        files = [str(p.relative_to(ROOT)) for p in cuda_test_files()]
        return [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            CUDA_MARKER,
            "-q",
            "-p",
            "no:cacheprovider",
            *files,
        ]
    flags = ["--dry-run"] if dry_run else []
    return [sys.executable, "-m", "gpu_burst", "step", name, "--result", str(result), *flags]


def pytest_summary(log: Path, offset: int) -> str:
    """The last pytest summary line in ``log`` after byte ``offset`` ("3 passed, 1 skipped in 2.1s")."""
    with open(log, "rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    pattern = re.compile(r"\d+ (passed|failed|skipped|deselected|error)")
    found = [line.strip(" =") for line in lines if pattern.search(line)]
    return found[-1] if found else "no pytest summary"


def _section(step: str, *results: dict | None) -> str:
    """Step ``step``'s report section; a step module that cannot be imported or rendered
    (say, a benchmark it reuses broke) costs its section, not the report."""
    try:
        return importlib.import_module(f".{step}", __package__).section(*results)
    except Exception as err:
        return f"## {step}\n\n**could not write this section: {err!r}**"


class Report:
    """``report.md`` and ``results.json`` in $OUT, rewritten as steps finish."""

    def __init__(self, out: Path, plan: Plan, start: float) -> None:
        self.out, self.plan, self.start = out, plan, start
        self.steps: list[tuple[str, dict, float]] = []
        self.results: dict[str, dict] = {}
        self.when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def add(self, name: str, status: dict, budget: float, result: dict) -> None:
        self.steps.append((name, status, budget))
        self.results[name] = result
        self.write()

    def text(self) -> str:
        env = self.results.get("environment", {})
        gpu = env.get("gpu", {}).get("name") or "no GPU"
        lines = [
            f"# GPU burst, {self.when}: {gpu}",
            "",
            f"- plan: {self.plan.name}; wall so far {time.monotonic() - self.start:.0f} s of "
            f"{self.plan.wall:.0f} s; host {platform.node()}",
            "- command: `bash benchmarks/gpu_burst.sh` (docs/gpu.md); the throughput table is last",
            "",
            "| step | status | seconds | budget (s) |",
            "|---|---|---:|---:|",
        ]
        for name, status, budget in self.steps:
            lines.append(f"| {name} | {status['status']} | {status['seconds']} | {budget:.0f} |")
        lines.append("")
        if "environment" in self.results:
            lines += [_section("environment", self.results["environment"]), ""]
        if "cuda_tests" in self.results:
            tests = self.results["cuda_tests"]
            lines += [
                "## 2. CUDA correctness",
                "",
                f"- `pytest -m {CUDA_MARKER}` on {', '.join(tests['files']) or 'no files'}: "
                f"{tests['summary']}",
                "",
            ]
        if "checks" in self.results:
            lines += [_section("checks", self.results["checks"]), ""]
        if "training" in self.results:
            lines += [_section("training", self.results["training"]), ""]
        if "throughput" in self.results:
            smoke = self.results.get("distributed")
            lines += [_section("throughput", self.results["throughput"], smoke), ""]
        return "\n".join(lines)

    def write(self) -> None:
        (self.out / REPORT_NAME).write_text(self.text(), encoding="utf-8")
        (self.out / RESULTS_NAME).write_text(
            json.dumps({"steps": self.steps, **self.results}, indent=1, default=str),
            encoding="utf-8",
        )


def algorithm1_rate(result: dict) -> float | None:
    """The Algorithm 1 iterations/s the throughput step measured, if it did."""
    for row in result.get("rows", []):
        if row.get("what") == "Algorithm 1" and "rate" in row:
            return row["rate"]
    return None


def train(
    plan: Plan, data: Path, out: Path, work: Path, seconds: float, longest: float, report: Report
) -> dict:
    """Step 4: supervise ``inpaintkit train`` for ``seconds`` (``longest`` while nothing is
    saved yet), then write its scalars and grid."""
    dry_run = plan.device == "cpu"
    rate = algorithm1_rate(report.results.get("throughput", {}))
    overrides = (*plan.train_overrides, *training.cadence(rate, dry_run))
    run = work / "run"
    command = training.train_command(data, run, plan.device, overrides)
    result: dict = {"overrides": [*training.TRAINING.overrides, *overrides], "command": command}
    if not data.is_file():
        result["error"] = (
            f"no packed training set at {data}: make it with "
            "`PYTHONPATH=benchmarks python -m gpu_burst pack` and carry data/gpu_burst"
        )
        return result
    gpu = report.results.get("environment", {}).get("gpu", {}).get("name", "CPU")
    note = {"gpu_burst": f"{gpu}, {report.when}"}
    log = out / LOG_NAME
    with open(log, "ab") as sink:
        sink.write(f"\n===== {' '.join(command)} (for {seconds:.0f} s)\n".encode())
    result["run"] = training.supervise(
        command, run, out / training.GENERATOR_NAME, log, seconds, plan.export_every, note, longest
    )
    result["logs"] = training.write_logs(run, out / training.SCALARS_NAME, out / training.GRID_NAME)
    return result


def run_burst(out: Path, dry_run: bool, data: Path, plan: Plan) -> int:
    """Every step, then training, within ``plan.wall`` seconds; 0 when every step succeeded."""
    start = time.monotonic()
    deadline = start + plan.wall
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, plan, start)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="gpu-burst-") as tmp:
        work = Path(tmp)
        for name, ceiling in plan.budgets:
            budget = min(ceiling, deadline - time.monotonic() - plan.finish - SHORTEST_STEP)
            if budget < SHORTEST_STEP:
                status = {"status": "skipped (no time left)", "seconds": 0}
                report.add(name, status, ceiling, {})
                failures += 1
                continue
            result_file = work / f"{name}.json"
            print(f"[{time.monotonic() - start:5.0f} s] {name} (budget {budget:.0f} s)", flush=True)
            log = out / LOG_NAME
            offset = log.stat().st_size if log.is_file() else 0
            status = run_child(step_command(name, result_file, dry_run), budget, out / LOG_NAME)
            if name == "cuda_tests":
                result = {
                    "files": [str(p.relative_to(ROOT)) for p in cuda_test_files()],
                    "summary": pytest_summary(log, offset),
                }
            else:
                result = load_results(result_file)
            failures += status["status"] != "ok"
            print(f"[{time.monotonic() - start:5.0f} s] {name}: {status['status']}", flush=True)
            report.add(name, status, budget, result)

        longest = deadline - time.monotonic() - plan.finish
        seconds = longest if plan.train_seconds is None else min(longest, plan.train_seconds)
        print(f"[{time.monotonic() - start:5.0f} s] training for {seconds:.0f} s", flush=True)
        step_start = time.monotonic()
        result = train(plan, data, out, work, seconds, longest, report)
        code = result.get("run", {}).get("exit_code")
        ok = code in (0, 130) and bool(result.get("run", {}).get("exported"))
        failures += not ok
        status = {
            "status": "ok" if ok else f"failed (exit {code})",
            "seconds": round(time.monotonic() - step_start, 1),
        }
        report.add("training", status, seconds, result)
    print(f"[{time.monotonic() - start:5.0f} s] done, {failures} step(s) failed\n", flush=True)
    print(report.text(), flush=True)
    return 1 if failures else 0
