"""benchmarks/gpu_burst.sh: its dry run (every step on the CPU, tiny sizes) writes every file.

The GPU run itself needs a lent GPU machine (docs/gpu.md); this runs the same code with
``GPU_BURST_DRY_RUN=1`` on a packed set of four scikit-image photos, as the command line does.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from skimage import data

from inpaintkit.checkpoint import load_generator

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_writes_report_generator_scalars_and_grid(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        picture = Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")
        picture.resize((80, 72)).save(images / f"{name}.jpg", quality=90)
    packed = tmp_path / "train.h5"
    prepare = [sys.executable, "-m", "inpaintkit.cli", "prepare", images, packed]
    options = ["--resize", "none", "--store", "encoded", "--val-count", "2", "--quiet"]
    subprocess.run([*map(str, prepare), *options], check=True, cwd=ROOT)

    out = tmp_path / "out"
    env = {
        **os.environ,
        "GPU_BURST_DRY_RUN": "1",
        "OUT": str(out),
        "GPU_BURST_DATA": str(packed),
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_burst.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "burst.log",
        "generator-fp16.safetensors",
        "grid.png",
        "report.md",
        "results.json",
        "scalars.csv",
    ]  # a lent machine returns at most 8
    report = (out / "report.md").read_text()
    for step in ("environment", "cuda_tests", "checks", "throughput", "distributed", "training"):
        assert f"| {step} | ok |" in report
    assert "CPU against CPU" in report and "**no**" not in report
    assert report.index("## 4. Training") < report.index("## 3. Throughput")  # the table last

    with safe_open(str(out / "generator-fp16.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
        assert int(f.metadata()["step"]) >= 1 and "gpu_burst" in f.metadata()
    assert load_generator(out / "generator-fp16.safetensors").config.contextual_attention
    with open(out / "scalars.csv") as f:
        tags = {row["tag"] for row in csv.DictReader(f)}
    assert {"generator/loss", "critic/loss", "validation/hole_psnr"} <= tags
    assert Image.open(out / "grid.png").size[0] == 5 * 64  # input|coarse|refined|attention|truth
