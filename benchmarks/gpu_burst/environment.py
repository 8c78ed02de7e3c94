"""Step 1: the machine — GPU, driver, torch, CUDA, free memory — and the packages inpaintkit needs.

The GPU machine has its own ``python3`` and no package registry: inpaintkit runs there from
the source tree (``PYTHONPATH``), so every dependency in pyproject.toml must already be
installed. This step says plainly which are missing or too old, before anything needs them.
"""

from __future__ import annotations

import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Needed by the burst itself beside inpaintkit's own dependencies.
EXTRA_REQUIREMENTS = ("pytest>=7", "packaging")


def requirements() -> list[str]:
    """inpaintkit's dependencies as pyproject.toml lists them, then :data:`EXTRA_REQUIREMENTS`."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    found = re.findall(r'^\s*"([^"]+)"', block.group(1), re.M) if block else []
    return [*found, *EXTRA_REQUIREMENTS]


def package_status(requirement: str) -> dict:
    """``{"requirement", "installed", "ok"}`` for one requirement string such as ``scipy>=1.12``."""
    name = re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0]
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        return {"requirement": requirement, "installed": None, "ok": False}
    try:
        from packaging.requirements import Requirement

        ok = Requirement(requirement).specifier.contains(installed, prereleases=True)
    except ImportError:  # packaging is missing: say so in its own row, trust the rest
        ok = True
    return {"requirement": requirement, "installed": installed, "ok": ok}


def nvidia_smi() -> str:
    """nvidia-smi's one-line view of each GPU, or why there is none."""
    query = "name,driver_version,memory.total,memory.used,temperature.gpu,power.limit"
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"nvidia-smi not available ({err.__class__.__name__})"
    return (done.stdout or done.stderr).strip()


def run(plan, results) -> None:
    """Fill ``results`` with the machine, torch and package facts (see module docstring)."""
    results["python"] = f"{platform.python_version()} ({platform.machine()})"
    results["packages"] = [package_status(r) for r in requirements()]
    results.save()
    import torch

    results["torch"] = torch.__version__
    results["cuda_runtime"] = torch.version.cuda
    results["cudnn"] = (
        torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    )
    results["cuda_available"] = torch.cuda.is_available()
    results["nvidia_smi"] = nvidia_smi()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        results["gpu"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "memory_gib": round(total / 2**30, 1),
            "free_gib": round(free / 2**30, 1),
            "bf16": torch.cuda.is_bf16_supported(),
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    results["cpu_threads"] = torch.get_num_threads()
    if plan.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available to torch: the GPU steps will fail")


def section(result: dict) -> str:
    """The report's environment section."""
    lines = ["## 1. Environment", ""]
    gpu = result.get("gpu")
    lines.append(f"- python {result.get('python')}, torch {result.get('torch')}")
    lines.append(
        f"- CUDA runtime {result.get('cuda_runtime')}, cuDNN {result.get('cudnn')}, "
        f"CUDA available: {result.get('cuda_available')}"
    )
    if gpu:
        lines.append(
            f"- GPU: {gpu['name']} (compute {gpu['capability']}, {gpu['multiprocessors']} SMs), "
            f"{gpu['free_gib']} of {gpu['memory_gib']} GiB free; bf16: {gpu['bf16']}; "
            f"TF32 in cuDNN convolutions: {gpu['cudnn_tf32']}, in matmuls: {gpu['matmul_tf32']}"
        )
    lines.append(f"- nvidia-smi: {result.get('nvidia_smi', 'not run')}")
    packages = result.get("packages", [])
    bad = [p for p in packages if not p["ok"]]
    if bad:
        listed = ", ".join(
            f"{p['requirement']} (installed: {p['installed'] or 'none'})" for p in bad
        )
        lines.append(f"- **missing or too old: {listed}**")
    elif packages:
        lines.append(f"- all {len(packages)} required packages present")
    lines.append(
        "- packages: "
        + ", ".join(f"{p['requirement'].split('>')[0]} {p['installed']}" for p in packages)
    )
    return "\n".join(lines)
