"""The training workflow: Algorithm 1 on a tiny recipe, exact resume, signals, NaN stop, fill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from skimage import data as skdata

from inpaintkit import losses
from inpaintkit.config import load_recipe
from inpaintkit.prepare import PrepareOptions, prepare_dataset
from inpaintkit.train import SampleStream, TrainingError, train
from inpaintkit.training_state import load_training_state

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny.yaml"
# The machine running CI is small: 32x32 crops and one critic step per generator step keep
# every code path (both critics, gradient penalties, both stages) at a fraction of the cost.
FAST = ["data.image_size=32", "critics.local_size=16", "optimizer.critic_steps=1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """An HDF5 of 6 train + 2 val 72x72 images made by prepare from scikit-image's pictures."""
    folder = tmp_path_factory.mktemp("images")
    pictures = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket(),
                skdata.camera(), skdata.brick(), skdata.grass(), skdata.immunohistochemistry()]  # fmt: skip
    for i, picture in enumerate(pictures):
        Image.fromarray(picture).convert("RGB").resize((96, 80)).save(folder / f"{i}.png")
    out = folder / "tiny.h5"
    prepare_dataset(folder, out, PrepareOptions(size=72, val_count=2), workers=1)
    return out


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_training_state(run)
    return {k: v for k, v in tensors.items() if not k.startswith("rng.")}


def test_two_plus_two_steps_equal_four_bitwise(dataset, tmp_path):
    recipe = load_recipe(TINY, [*FAST, "schedule.steps=4", "schedule.checkpoint_every=4"])
    straight = train(recipe, dataset, tmp_path / "straight", device="cpu", progress=False)
    assert straight.step == 4 and not straight.interrupted

    half = load_recipe(TINY, [*FAST, "schedule.steps=2", "schedule.checkpoint_every=4"])
    assert train(half, dataset, tmp_path / "split", device="cpu", progress=False).step == 2
    resumed = train(recipe, dataset, tmp_path / "split", resume=True, device="cpu", progress=False)
    assert resumed.step == 4

    a, b = _tensors(tmp_path / "straight"), _tensors(tmp_path / "split")
    assert a.keys() == b.keys() and any(k.startswith("d_optimizer.state") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ga = load_file(tmp_path / "straight" / "generator.safetensors")
    gb = load_file(tmp_path / "split" / "generator.safetensors")
    assert all(torch.equal(ga[k], gb[k]) for k in ga)
    # Training moved the weights away from their initialisation.
    fresh = load_recipe(TINY, [*FAST, "schedule.steps=0"])
    from inpaintkit.model.generator import Generator

    torch.manual_seed(fresh.schedule.seed)
    init = Generator(fresh.model).state_dict()
    assert any(not torch.equal(init[k], ga[k]) for k in init)
    assert (tmp_path / "straight" / "config.yaml").read_text().startswith("name: tiny")
    assert list((tmp_path / "straight" / "logs").iterdir())


def test_existing_run_needs_resume_and_resume_needs_a_run(dataset, tmp_path):
    recipe = load_recipe(TINY, [*FAST, "schedule.steps=1"])
    with pytest.raises(TrainingError, match="no training state"):
        train(recipe, dataset, tmp_path / "run", resume=True, device="cpu", progress=False)
    train(recipe, dataset, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(TrainingError, match="already holds a run"):
        train(recipe, dataset, tmp_path / "run", device="cpu", progress=False)
    other = load_recipe(TINY, [*FAST, "schedule.steps=2", "model.channels=4"])
    with pytest.raises(TrainingError, match="'model' differs"):
        train(other, dataset, tmp_path / "run", resume=True, device="cpu", progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = losses.generator_wgan_loss

    def poisoned(scores):
        calls["n"] += 1
        value = original(scores)
        return value * float("nan") if calls["n"] > 4 else value  # 2 calls a step: NaN from step 3 on

    monkeypatch.setattr(losses, "generator_wgan_loss", poisoned)
    recipe = load_recipe(TINY, [*FAST, "schedule.steps=4", "schedule.checkpoint_every=2", "schedule.log_every=1"])
    with pytest.raises(TrainingError, match=r"NaN or inf between steps 2 and 3.*step 2"):
        train(recipe, dataset, tmp_path / "run", device="cpu", progress=False)
    _, meta = load_training_state(tmp_path / "run")
    assert meta["step"] == 2
    weights = load_file(tmp_path / "run" / "generator.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_sample_stream_restarts_anywhere_and_covers_each_epoch():
    full = SampleStream(5, seed=3, rank=0, world=1)
    items = [x for _, x in zip(range(12), full, strict=False)]
    assert [p for _, p in items] == list(range(12))
    assert sorted(i for i, _ in items[:5]) == list(range(5))  # an epoch is a permutation
    assert sorted(i for i, _ in items[5:10]) == list(range(5))
    later = SampleStream(5, seed=3, rank=0, world=1, start=7)
    assert [x for _, x in zip(range(5), later, strict=False)] == items[7:12]
    ranks = [[i for _, (i, _) in zip(range(3), SampleStream(6, 0, r, 2), strict=False)] for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == list(range(6))  # ranks split an epoch


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from inpaintkit.cli import main; main()", *args]


def test_cli_interrupt_resume_then_fill(dataset, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _cli("train", str(TINY), "--data", str(dataset), "--out", str(run), "--device", "cpu", "--quiet",
             *FAST, "schedule.steps=1000", "schedule.checkpoint_every=1", "schedule.image_every=1000",
             "schedule.val_every=1000"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while (
        not (run / "training_state.json").exists()
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, output
    assert "SIGINT: stopped after step" in output
    _, meta = load_training_state(run)
    stopped = meta["step"]
    assert 1 <= stopped < 1000

    done = subprocess.run(
        _cli("train", str(TINY), "--data", str(dataset), "--out", str(run), "--device", "cpu", "--quiet",
             "--resume", *FAST, f"schedule.steps={stopped + 1}"),
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert load_training_state(run)[1]["step"] == stopped + 1

    image = tmp_path / "in.png"
    mask = tmp_path / "mask.png"
    Image.fromarray(skdata.astronaut()[::8, ::8]).save(image)
    hole = np.zeros((64, 64), dtype=np.uint8)
    hole[20:40, 24:44] = 255
    Image.fromarray(hole).save(mask)
    filled = subprocess.run(
        _cli("fill", str(image), "--masks", str(mask), "--output", str(tmp_path / "out.png"),
             "--checkpoint", str(run / "generator.safetensors"), "--device", "cpu"),
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert filled.returncode == 0, filled.stdout + filled.stderr
    result = np.asarray(Image.open(tmp_path / "out.png"))
    original = np.asarray(Image.open(image))
    assert result.shape == original.shape
    assert np.array_equal(result[hole == 0], original[hole == 0])  # known pixels untouched
