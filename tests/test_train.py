"""The training workflow: Algorithm 1 on a tiny recipe, exact resume, signals, NaN stop, fill,
the loss combination against a hand computation, and a 2-process (torchrun, gloo) run against
a 1-process reference."""

from __future__ import annotations

import json
import math
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
from inpaintkit.checkpoint import load_generator, read_metadata
from inpaintkit.config import load_recipe
from inpaintkit.data import InpaintingDataset
from inpaintkit.masks import MaskSampler
from inpaintkit.model.critics import crop_hole_boxes
from inpaintkit.periodicity import alternation, periodicity, repetition
from inpaintkit.prepare import prepare_dataset
from inpaintkit.prepare_options import PrepareOptions
from inpaintkit.tensors import composite, image_to_tensor
from inpaintkit.train import (
    Trainer,
    TrainingError,
    export_raw_generator,
    learning_rate,
    train,
)
from inpaintkit.train_data import SampleStream, TrainingSamples
from inpaintkit.train_log import PER_IMAGE_GRID_MEASURES
from inpaintkit.training_state import load_training_state

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny.yaml"
# The machine running CI is small: 32x32 crops and one critic step per generator step keep
# every code path (both critics, gradient penalties, both stages) at a fraction of the cost.
FAST = ["data.image_size=32", "critics.local_size=16", "optimizer.critic_steps=1"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, as torchrun gives each rank: the networks are tiny, and on a loaded
    2-core machine OpenMP's spinning threads made these runs ~30x slower than one thread.
    It also makes CPU results independent of the thread count, for the bitwise comparisons."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """An HDF5 of 6 train + 2 val 72x72 images made by prepare from scikit-image's pictures."""
    folder = tmp_path_factory.mktemp("images")
    pictures = [
        skdata.astronaut(),
        skdata.coffee(),
        skdata.chelsea(),
        skdata.rocket(),
        skdata.camera(),
        skdata.brick(),
        skdata.grass(),
        skdata.immunohistochemistry(),
    ]
    for i, picture in enumerate(pictures):
        Image.fromarray(picture).convert("RGB").resize((96, 80)).save(folder / f"{i}.png")
    out = folder / "tiny.h5"
    prepare_dataset(folder, out, PrepareOptions(size=72, val_count=2), workers=1)
    return out


STRAIGHT = [*FAST, "schedule.steps=4", "schedule.checkpoint_every=2", "schedule.keep_every=2"]


@pytest.fixture(scope="module")
def straight_run(dataset, tmp_path_factory) -> Path:
    """One 4-step run (generator kept at steps 2 and 4), shared by the tests that compare to it."""
    out = tmp_path_factory.mktemp("straight") / "run"
    result = train_quietly(load_recipe(TINY, STRAIGHT), dataset, out)
    assert result.step == 4 and not result.interrupted and result.main
    return out


def train_quietly(recipe, data: Path, out: Path, **options):
    """``train`` on the CPU without a progress bar, as the tests here run it."""
    return train(recipe, data, out, device="cpu", progress=False, **options)


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_training_state(run)
    return {k: v for k, v in tensors.items() if not k.startswith("rng.")}


def _assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_plus_two_steps_equal_four_bitwise(dataset, straight_run, tmp_path):
    half = load_recipe(TINY, [*STRAIGHT, "schedule.steps=2"])
    assert train_quietly(half, dataset, tmp_path / "split").step == 2
    resumed = train_quietly(
        load_recipe(TINY, STRAIGHT),
        dataset,
        tmp_path / "split",
        resume=True,
    )
    assert resumed.step == 4

    a, b = _tensors(straight_run), _tensors(tmp_path / "split")
    assert any(k.startswith("d_optimizer.state") for k in a)
    _assert_equal(a, b)
    for name in (
        "generator.safetensors",
        "generator-00000002.safetensors",
        "generator-00000004.safetensors",
    ):
        _assert_equal(load_file(straight_run / name), load_file(tmp_path / "split" / name))
    # Training moved the weights away from their initialisation.
    fresh = load_recipe(TINY, [*FAST, "schedule.steps=0"])
    from inpaintkit.model.generator import Generator

    torch.manual_seed(fresh.schedule.seed)
    init = Generator(fresh.model).state_dict()
    ga = load_file(straight_run / "generator.safetensors")
    assert any(not torch.equal(init[k], ga[k]) for k in init)
    assert (straight_run / "config.yaml").read_text().startswith("name: tiny")
    assert list((straight_run / "logs").iterdir())


def test_samples_cross_processes_as_uint8_and_prepare_restores_the_float_values(dataset):
    """The loader ships uint8 images and bool masks; on the device they equal the float path's."""
    recipe = load_recipe(TINY, FAST)
    masks = MaskSampler(recipe.masks, 32, 32, seed=3)
    as_uint8 = TrainingSamples(
        InpaintingDataset(dataset, crop_size=32, dtype="uint8"), masks, 3, rank=1, world=2
    )
    as_float = TrainingSamples(InpaintingDataset(dataset, crop_size=32), masks, 3, rank=1, world=2)
    items = [(i % 6, p) for i, p in zip(range(4), range(10, 14), strict=True)]
    images, holes = zip(*(as_uint8[item] for item in items), strict=True)
    assert images[0].dtype == torch.uint8 and images[0].shape == (3, 32, 32)
    assert holes[0].dtype == torch.bool and holes[0].shape == (1, 32, 32)
    trainer = Trainer(recipe, torch.device("cpu"))
    image, mask = trainer.prepare(torch.stack(images), torch.stack(holes))
    expected = torch.stack([as_float[item][0] for item in items])
    assert image.dtype == torch.float32 and torch.equal(image, expected)  # bit for bit
    # Same crops as image_to_tensor of the uint8 pixels, and the masks of (seed, position*world + rank).
    assert torch.equal(image, image_to_tensor(torch.stack(images).permute(0, 2, 3, 1).numpy()))
    assert mask.dtype == torch.float32 and torch.equal(
        mask, masks.batch([p * 2 + 1 for _, p in items])
    )


def test_losses_match_a_hand_computation():
    """Trainer's generator and critic losses, recomputed from the pieces with distinct weights."""
    weights = [
        "loss.l1_loss_alpha=1.5",
        "loss.ae_loss_alpha=0.7",
        "loss.coarse_l1_alpha=1.3",
        "loss.gan_loss_alpha=0.25",
        "loss.global_wgan_loss_alpha=2.0",
        "loss.wgan_gp_lambda=3.0",
        "loss.spatial_discount_gamma=0.8",
    ]
    recipe = load_recipe(TINY, [*FAST, *weights])
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    generator, global_critic, local_critic = (
        trainer.generator,
        trainer.global_critic,
        trainer.local_critic,
    )
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = MaskSampler(recipe.masks, 32, 32, seed=5).batch([0, 1])
    assert 0 < mask.mean() < 1

    g_loss, g_scalars = trainer.generator_losses(real, mask)
    with torch.no_grad():
        out = generator(real, mask)
        fake = real * (1 - mask) + out.refined * mask
        fake_box = crop_hole_boxes(fake, mask, 16)
        g_global, g_local = -global_critic(fake).mean(), -local_critic(fake_box).mean()
        discount = losses.spatial_discount(mask, 0.8, "bbox")
        hole_values, known_values = 3 * mask.sum(), 3 * (1 - mask).sum()

        def l1(x: torch.Tensor, weight: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
            return ((x - real).abs() * weight).sum() / count

        hole = 1.3 * l1(out.coarse, discount, hole_values) + l1(out.refined, discount, hole_values)
        known = 1.3 * l1(out.coarse, 1 - mask, known_values) + l1(
            out.refined, 1 - mask, known_values
        )
        expected = 1.5 * hole + 0.7 * known + 0.25 * (2.0 * g_global + g_local)
    torch.testing.assert_close(g_loss, expected, rtol=1e-5, atol=1e-7)
    for key, value in (
        ("l1_loss", hole),
        ("ae_loss", known),
        ("global_wgan", g_global),
        ("local_wgan", g_local),
    ):
        torch.testing.assert_close(g_scalars[f"generator/{key}"], value, rtol=1e-5, atol=1e-7)
    g_loss.backward()  # reaches the generator only
    assert all(p.grad is not None for p in generator.parameters())
    assert all(p.grad is None for net in (global_critic, local_critic) for p in net.parameters())
    generator.zero_grad(set_to_none=True)

    torch.manual_seed(7)
    d_loss, d_scalars = trainer.critic_losses(real, mask)
    torch.manual_seed(7)
    t_global, t_local = torch.rand(2), torch.rand(2)  # the penalties' draws, global first

    def penalty(
        critic: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, m: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        x = (a + t.view(-1, 1, 1, 1) * (b - a)).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x).sum(), x)
        norms = torch.stack([(grad[i] * m[i]).pow(2).sum().sqrt() for i in range(len(x))])
        return 3.0 * ((norms - 1) ** 2).mean()

    real_box, mask_box = crop_hole_boxes(real, mask, 16), crop_hole_boxes(mask, mask, 16)
    gp_global = penalty(global_critic, real, fake, mask, t_global)
    gp_local = penalty(local_critic, real_box, fake_box, mask_box, t_local)
    with torch.no_grad():
        wgan_global = global_critic(fake).mean() - global_critic(real).mean()
        wgan_local = local_critic(fake_box).mean() - local_critic(real_box).mean()
    torch.testing.assert_close(
        d_loss.detach(), wgan_global + wgan_local + gp_global + gp_local, rtol=1e-5, atol=1e-7
    )
    torch.testing.assert_close(
        d_scalars["critic/global_gradient_penalty"], gp_global, rtol=1e-5, atol=1e-7
    )
    torch.testing.assert_close(d_scalars["wasserstein/local"], -wgan_local, rtol=1e-5, atol=1e-7)
    d_loss.backward()  # reaches both critics, not the generator
    assert all(
        p.grad is not None for net in (global_critic, local_critic) for p in net.parameters()
    )
    assert all(p.grad is None for p in generator.parameters())


# --------------------------------------------------------------------------- two processes


# Run by torchrun in each rank: the CLI's own entry point, plus a record of what this rank
# wrote and of its final weights (rank 1's are in no file otherwise).
RANK_SCRIPT = """
import json, os, sys
from safetensors.torch import save_file
import inpaintkit.train as T
from inpaintkit import checkpoint

report, rank = sys.argv[1], os.environ["RANK"]
writes, trainers = [], []

def recorded(name, write):
    def wrapper(*args, **kwargs):
        writes.append(name)
        return write(*args, **kwargs)
    return wrapper

T.save_training_state = recorded("training_state", T.save_training_state)
T.save_recipe = recorded("recipe", T.save_recipe)
checkpoint.save_generator = recorded("generator", checkpoint.save_generator)
trainer_init = T.Trainer.__init__
def init(self, *args, **kwargs):
    trainer_init(self, *args, **kwargs)
    trainers.append(self)
T.Trainer.__init__ = init

from inpaintkit.cli import main
try:
    main(sys.argv[2:])
finally:
    save_file(trainers[0].state_tensors()[0], f"{report}/rank{rank}.safetensors")
    with open(f"{report}/rank{rank}.json", "w") as f:
        json.dump(writes, f)
"""


def _reference_run(recipe, data: Path, world: int) -> tuple[Trainer, list[torch.Tensor]]:
    """What ``world`` ranks compute, done plainly by one process without torch.distributed.

    Each rank has its own sample stream and its own torch generator (seed + rank, as train
    seeds them); gradients of every update are the mean over the ranks' batches. Returns the
    trainer and each rank's final generator state.
    """
    seed, size, batch = recipe.schedule.seed, recipe.data.image_size, recipe.data.batch_size
    torch.manual_seed(seed)
    trainer = Trainer(recipe, torch.device("cpu"))
    rng, streams = [], []
    for rank in range(world):
        torch.manual_seed(seed + rank)
        rng.append(torch.get_rng_state())
        images = InpaintingDataset(
            data,
            crop_size=size,
            random_crop=recipe.data.random_crop,
            random_flip=recipe.data.random_flip,
            dtype="uint8",
        )
        samples = TrainingSamples(
            images, MaskSampler(recipe.masks, size, size, seed), seed, rank, world
        )
        streams.append(map(samples.__getitem__, SampleStream(len(images), seed, rank, world)))

    def update(loss_of, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        params = list(module.parameters())
        grads = []
        for rank in range(world):
            items = [next(streams[rank]) for _ in range(batch)]
            image, mask = trainer.prepare(
                torch.stack([i for i, _ in items]), torch.stack([m for _, m in items])
            )
            torch.set_rng_state(rng[rank])
            loss, _ = loss_of(image, mask)
            grads.append(torch.autograd.grad(loss, params))
            rng[rank] = torch.get_rng_state()
        for param, *per_rank in zip(params, *grads, strict=True):
            param.grad = sum(per_rank[1:], per_rank[0]) / world
        optimizer.step()

    # In the d_optimizer's order.
    critics = torch.nn.ModuleList([trainer.local_critic, trainer.global_critic])
    for _ in range(recipe.schedule.steps):
        for _ in range(recipe.optimizer.critic_steps):
            update(trainer.critic_losses, critics, trainer.d_optimizer)
        update(trainer.generator_losses, trainer.generator, trainer.g_optimizer)
    return trainer, rng


def test_two_processes_keep_identical_weights_and_match_the_reference(
    dataset, straight_run, tmp_path
):
    """torchrun, 2 ranks on gloo, 1 step then --resume to 2: same weights on both ranks, rank 0
    alone writes, and the result is exactly the reference's for 2 ranks, as the 1-process run
    is the reference's for 1 rank."""
    run = tmp_path / "run"
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for steps, extra in ((1, []), (2, ["--resume"])):
        report = tmp_path / f"report{steps}"
        report.mkdir()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
                str(tmp_path / "rank.py"),
                str(report),
                "train",
                str(TINY),
                "--data",
                str(dataset),
                "--out",
                str(run),
                "--device",
                "cpu",
                "--quiet",
                *extra,
                *FAST,
                f"schedule.steps={steps}",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count(f"done: {steps} steps") == 1  # one rank reports
        assert json.loads((report / "rank0.json").read_text()) == [
            "recipe",
            "generator",
            "training_state",  # last: the commit point (save())
        ]
        assert json.loads((report / "rank1.json").read_text()) == []
        assert len(list((run / "logs").iterdir())) == steps  # one TensorBoard writer per launch

    rank0, rank1 = load_file(report / "rank0.safetensors"), load_file(report / "rank1.safetensors")
    _assert_equal(rank0, rank1)  # gradients were averaged, every update, for every network
    _assert_equal(_tensors(run), rank0)
    tensors, meta = load_training_state(run)
    assert meta["world"] == 2 and meta["samples_per_rank"] == 2 * 2 * 2  # steps x draws x batch
    assert not torch.equal(tensors["rng.rank0.torch_cpu"], tensors["rng.rank1.torch_cpu"])

    recipe = load_recipe(TINY, [*FAST, "schedule.steps=2"])
    reference, rng = _reference_run(recipe, dataset, world=2)
    _assert_equal(reference.state_tensors()[0], rank0)  # so the resume, too, was exact
    for rank in (0, 1):
        assert torch.equal(tensors[f"rng.rank{rank}.torch_cpu"], rng[rank])
    # The same reference with one rank is the 1-process run: the only differences between the
    # two are each rank's data and noise and the averaging.
    single, _ = _reference_run(recipe, dataset, world=1)
    one_process = load_file(straight_run / "generator-00000002.safetensors")
    _assert_equal(single.generator.state_dict(), one_process)
    assert any(not torch.equal(one_process[k], rank0[f"generator.{k}"]) for k in one_process)


def test_existing_run_needs_resume_and_resume_needs_a_run(dataset, tmp_path):
    recipe = load_recipe(TINY, [*FAST, "schedule.steps=1"])
    with pytest.raises(TrainingError, match="no training state"):
        train_quietly(recipe, dataset, tmp_path / "run", resume=True)
    train_quietly(recipe, dataset, tmp_path / "run")
    with pytest.raises(TrainingError, match="already holds a run"):
        train_quietly(recipe, dataset, tmp_path / "run")
    other = load_recipe(TINY, [*FAST, "schedule.steps=2", "model.channels=4"])
    with pytest.raises(TrainingError, match="'model' differs"):
        train_quietly(other, dataset, tmp_path / "run", resume=True)
    # A run saved before a model field existed resumes with that field's default.
    state = tmp_path / "run" / "training_state.json"
    meta = json.loads(state.read_text())
    meta["recipe"]["model"].pop("contextual_attention")
    state.write_text(json.dumps(meta))
    longer = load_recipe(TINY, [*FAST, "schedule.steps=2"])
    assert train_quietly(longer, dataset, tmp_path / "run", resume=True).step == 2
    meta = json.loads(state.read_text())
    meta["recipe"]["critics"]["retired_option"] = 1
    state.write_text(json.dumps(meta))
    with pytest.raises(TrainingError, match="'critics' differs"):
        train_quietly(longer, dataset, tmp_path / "run", resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = losses.generator_wgan_loss

    def poisoned(scores):
        calls["n"] += 1
        value = original(scores)
        # 2 calls a step: NaN from step 3 on.
        return value * float("nan") if calls["n"] > 4 else value

    monkeypatch.setattr(losses, "generator_wgan_loss", poisoned)
    recipe = load_recipe(
        TINY, [*FAST, "schedule.steps=4", "schedule.checkpoint_every=2", "schedule.log_every=1"]
    )
    with pytest.raises(TrainingError, match=r"NaN or inf between steps 2 and 3.*step 2"):
        train_quietly(recipe, dataset, tmp_path / "run")
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
    ranks = [
        [i for _, (i, _) in zip(range(3), SampleStream(6, 0, r, 2), strict=False)] for r in (0, 1)
    ]
    assert sorted(ranks[0] + ranks[1]) == list(range(6))  # ranks split an epoch


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from inpaintkit.cli import main; main()", *args]


def test_cli_interrupt_resume_then_fill(dataset, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # With a DataLoader worker, and the signal sent to the whole process group as Ctrl-C in a
    # terminal does: the worker must not die before the step it feeds is done and saved.
    proc = subprocess.Popen(
        _cli(
            "train",
            str(TINY),
            "--data",
            str(dataset),
            "--out",
            str(run),
            "--device",
            "cpu",
            "--quiet",
            *FAST,
            "schedule.steps=1000",
            "schedule.checkpoint_every=1",
            "schedule.image_every=1000",
            "schedule.val_every=1000",
            "data.num_workers=1",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while (
        not (run / "training_state.json").exists()
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    time.sleep(0.3)  # into a step, with batches in flight
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, output
    assert "SIGINT: stopped after step" in output
    _, meta = load_training_state(run)
    stopped = meta["step"]
    assert 1 <= stopped < 1000

    done = subprocess.run(
        _cli(
            "train",
            str(TINY),
            "--data",
            str(dataset),
            "--out",
            str(run),
            "--device",
            "cpu",
            "--quiet",
            "--resume",
            *FAST,
            f"schedule.steps={stopped + 1}",
        ),
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert load_training_state(run)[1]["step"] == stopped + 1

    image = tmp_path / "in.png"
    mask = tmp_path / "mask.png"
    Image.fromarray(skdata.astronaut()[::8, ::8]).save(image)
    hole = np.zeros((64, 64), dtype=np.uint8)
    hole[20:40, 24:44] = 255
    Image.fromarray(hole).save(mask)
    filled = subprocess.run(
        _cli(
            "fill",
            str(image),
            "--masks",
            str(mask),
            "--output",
            str(tmp_path / "out.png"),
            "--checkpoint",
            str(run / "generator.safetensors"),
            "--device",
            "cpu",
        ),
        capture_output=True,
        text=True,
        env=env,
    )
    assert filled.returncode == 0, filled.stdout + filled.stderr
    result = np.asarray(Image.open(tmp_path / "out.png"))
    original = np.asarray(Image.open(image))
    assert result.shape == original.shape
    assert np.array_equal(result[hole == 0], original[hole == 0])  # known pixels untouched


# --------------------------------------------------------------------------- warm-up, init, progressive size


def _fresh_critics(recipe) -> dict[str, torch.Tensor]:
    """The critics' initial weights, as train builds them (seeded Trainer, CPU)."""
    torch.manual_seed(recipe.schedule.seed)
    trainer = Trainer(recipe, torch.device("cpu"))
    return {k: v for k, v in trainer.state_tensors()[0].items() if "critic." in k}


def test_warmup_trains_the_generator_alone_then_algorithm_1_starts(dataset, tmp_path):
    warm = [*FAST, "schedule.warmup_steps=2", "schedule.checkpoint_every=1"]
    recipe = load_recipe(TINY, [*warm, "schedule.steps=2"])
    train_quietly(recipe, dataset, tmp_path / "run")
    tensors, meta = load_training_state(tmp_path / "run")
    # The critics neither ran an update nor changed, and only one batch was drawn per step.
    for key, value in _fresh_critics(recipe).items():
        assert torch.equal(tensors[key], value), key
    assert not any(k.startswith("d_optimizer.state") for k in tensors)
    assert meta["samples_per_rank"] == 2 * recipe.data.batch_size
    assert meta["train_seconds"] > 0
    # Step 3 is an Algorithm 1 step: critic_steps + 1 batches, and the critics move.
    train_quietly(
        load_recipe(TINY, [*warm, "schedule.steps=3"]),
        dataset,
        tmp_path / "run",
        resume=True,
    )
    tensors, meta = load_training_state(tmp_path / "run")
    assert (
        meta["samples_per_rank"] == (2 + recipe.optimizer.critic_steps + 1) * recipe.data.batch_size
    )
    assert any(k.startswith("d_optimizer.state") for k in tensors)
    fresh = _fresh_critics(recipe)
    assert any(not torch.equal(tensors[k], fresh[k]) for k in fresh)


def test_warmup_loss_is_the_reconstruction_loss_and_never_runs_a_critic():
    recipe = load_recipe(TINY, FAST)
    trainer = Trainer(recipe, torch.device("cpu"))
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = MaskSampler(recipe.masks, 32, 32).batch([0, 1])

    def forbidden(*args, **kwargs):
        raise AssertionError("a critic ran during warm-up")

    trainer.critics.local_forward = trainer.critics.global_forward = forbidden
    torch.manual_seed(0)
    loss, scalars = trainer.generator_losses(real, mask, adversarial=False)
    torch.manual_seed(0)
    out = trainer.generator(real, mask)
    cfg = recipe.loss
    rec = losses.reconstruction_loss(
        real,
        (out.coarse, out.refined),
        mask,
        gamma=cfg.spatial_discount_gamma,
        mode=cfg.spatial_discount_mode,
        coarse_weight=cfg.coarse_l1_alpha,
        hole_weight=cfg.l1_loss_alpha,
        known_weight=cfg.ae_loss_alpha,
    )
    torch.testing.assert_close(loss, rec.total)
    assert set(scalars) == {"generator/loss", "generator/l1_loss", "generator/ae_loss"}


def test_image_size_may_change_on_resume_only_while_the_critics_are_untrained(dataset, tmp_path):
    warm = [*FAST, "schedule.warmup_steps=2", "schedule.checkpoint_every=1"]
    train_quietly(
        load_recipe(TINY, [*warm, "schedule.steps=1"]),
        dataset,
        tmp_path / "run",
    )
    bigger = [*warm, "data.image_size=48", "critics.local_size=16"]
    # Still warming up: the critics are rebuilt for 48x48 and training goes on at the new size.
    result = train_quietly(
        load_recipe(TINY, [*bigger, "schedule.steps=3"]),
        dataset,
        tmp_path / "run",
        resume=True,
    )
    assert result.step == 3
    tensors, meta = load_training_state(tmp_path / "run")
    assert meta["recipe"]["data"]["image_size"] == 48
    # Step 3 trained the critics at 48: back to 32 would not fit the global critic any more.
    with pytest.raises(
        TrainingError, match="image_size changed from 48 to 32 after the critics started"
    ):
        train_quietly(
            load_recipe(TINY, [*warm, "schedule.steps=4"]),
            dataset,
            tmp_path / "run",
            resume=True,
        )


def test_init_from_starts_a_new_run_from_a_generator(dataset, straight_run, tmp_path):
    source = straight_run / "generator.safetensors"
    # lr 0: the one step leaves the weights where --init-from put them.
    recipe = load_recipe(TINY, [*FAST, "schedule.steps=1", "optimizer.lr=0"])
    train_quietly(recipe, dataset, tmp_path / "run", init_from=source)
    _assert_equal(load_file(tmp_path / "run" / "generator.safetensors"), load_file(source))
    _, meta = load_training_state(tmp_path / "run")
    assert meta["init_from"] == [f"{source} (step 4)"]
    # The lineage survives a resume; the critics and optimisers were fresh.
    train_quietly(
        load_recipe(TINY, [*FAST, "schedule.steps=2"]),
        dataset,
        tmp_path / "run",
        resume=True,
    )
    assert load_training_state(tmp_path / "run")[1]["init_from"] == meta["init_from"]
    with pytest.raises(TrainingError, match="cannot be combined with --resume"):
        train_quietly(
            recipe,
            dataset,
            tmp_path / "run",
            resume=True,
            init_from=source,
        )
    narrow = load_recipe(TINY, [*FAST, "schedule.steps=1", "model.channels=4"])
    with pytest.raises(TrainingError, match="its channels differ"):
        train_quietly(narrow, dataset, tmp_path / "other", init_from=source)
    # A parameter-free attention option may change: the same weights, pasted with the tent.
    tent = load_recipe(
        TINY, [*FAST, "schedule.steps=1", "optimizer.lr=0", "model.attention_paste=tent"]
    )
    train_quietly(tent, dataset, tmp_path / "tent", init_from=source)
    _assert_equal(load_file(tmp_path / "tent" / "generator.safetensors"), load_file(source))
    assert (
        load_generator(tmp_path / "tent" / "generator.safetensors").config.attention_paste == "tent"
    )
    # So may the decoders' resize (model.upsample), which has no parameters either.
    bilinear = load_recipe(
        TINY, [*FAST, "schedule.steps=1", "optimizer.lr=0", "model.upsample=bilinear"]
    )
    train_quietly(bilinear, dataset, tmp_path / "bilinear", init_from=source)
    _assert_equal(load_file(tmp_path / "bilinear" / "generator.safetensors"), load_file(source))
    # A recipe with noise inputs starts from a checkpoint without them, strengths at zero...
    noisy = load_recipe(
        TINY, [*FAST, "schedule.steps=1", "optimizer.lr=0", "model.noise_inputs=true"]
    )
    train_quietly(noisy, dataset, tmp_path / "noisy", init_from=source)
    started = load_file(tmp_path / "noisy" / "generator.safetensors")
    strengths = {k: started.pop(k) for k in list(started) if ".noise." in k}
    assert len(strengths) == 4 and all(not t.any() for t in strengths.values())
    _assert_equal(started, load_file(source))
    # ... and one with gates from the noisy one, gates at zero (open at 1, as the noise was).
    gated = load_recipe(
        TINY,
        [*FAST, "schedule.steps=1", "optimizer.lr=0", "model.noise_inputs=true"]
        + ["model.noise_gates=true"],
    )
    train_quietly(
        gated, dataset, tmp_path / "gated", init_from=tmp_path / "noisy" / "generator.safetensors"
    )
    started = load_file(tmp_path / "gated" / "generator.safetensors")
    gates = {k: started.pop(k) for k in list(started) if ".gates." in k}
    assert len(gates) == 8 and all(not t.any() for t in gates.values())
    _assert_equal(started, load_file(tmp_path / "noisy" / "generator.safetensors"))
    # ... but not the other way: the noise would be dropped.
    plain = load_recipe(TINY, [*FAST, "schedule.steps=1"])
    with pytest.raises(TrainingError, match="its noise_inputs differ"):
        train_quietly(
            plain,
            dataset,
            tmp_path / "plain",
            init_from=tmp_path / "noisy" / "generator.safetensors",
        )
    with pytest.raises(TrainingError, match="--init-from"):
        train_quietly(recipe, dataset, tmp_path / "third", init_from=dataset)


def test_validation_log_has_one_line_per_validation(dataset, tmp_path):
    recipe = load_recipe(TINY, [*FAST, "schedule.steps=4", "schedule.val_every=2"])
    train_quietly(recipe, dataset, tmp_path / "run")
    lines = [
        json.loads(line)
        for line in (tmp_path / "run" / "validation.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in lines] == [2, 4]
    assert lines[1]["samples"] == 4 * (recipe.optimizer.critic_steps + 1) * recipe.data.batch_size
    assert lines[1]["train_seconds"] >= lines[0]["train_seconds"] > 0
    assert 0 < lines[1]["hole_psnr"] < 100 and lines[1]["hole_l1"] > 0
    # The 8 px grid's measure (NaN where the tiny holes leave a lattice cell without a pixel).
    for key in ("hole_lattice_spread", *PER_IMAGE_GRID_MEASURES):
        # Alternation is minus a correlation: in [-1, 1], negative where nothing alternates.
        low = -1 if key.endswith("alternation") else 0
        assert math.isnan(lines[1][key]) or lines[1][key] >= low


def test_validation_measures_the_lattice_of_fills_and_photos_per_image():
    from inpaintkit.train_log import validate

    recipe = load_recipe(TINY, ["data.image_size=48"])
    generator = Trainer(recipe, torch.device("cpu")).generator.eval()
    photos = torch.from_numpy(skdata.astronaut()[::4, ::4][:48, :48].copy())
    images = torch.stack([photos, photos.flip(0), photos.flip(1)]).permute(0, 3, 1, 2) / 127.5 - 1
    masks = torch.zeros(3, 1, 48, 48)
    masks[0, :, 8:40, 8:40] = 1
    masks[1, :, 4:44, 10:30] = 1  # 20 px wide: its eroded interior still reaches every 8 px cell
    masks[2, :, 20:26, 20:26] = 1  # reaches 2 × 2 cells only: not measured
    with torch.no_grad():
        means, grid = validate(generator, images, masks, batch_size=2, lattice_periods=(8,))
        truth = losses.lattice_loss_per_image(images, masks, 8)
    assert truth.shape == (2,)
    assert means["truth_lattice_loss"] == pytest.approx(truth.mean().item(), rel=1e-5)
    assert means["hole_lattice_loss"] > 0
    fills = losses.lattice_loss_per_image(
        composite(images, generator(images, masks).refined, masks), masks, 8
    )
    assert means["hole_lattice_gridded"] == pytest.approx(
        (fills > 2 * truth).double().mean().item()
    )
    assert means["hole_lattice_excess"] == pytest.approx(
        (fills - truth).clamp(min=0).mean().item(), rel=1e-5
    )
    assert grid.shape == (3 * 48, 5 * 48, 3)
    completed = composite(images, generator(images, masks).refined, masks)
    assert means["hole_periodicity"] == pytest.approx(
        periodicity(completed, masks).mean().item(), rel=1e-5
    )
    assert means["truth_periodicity"] == pytest.approx(
        periodicity(images, masks).mean().item(), rel=1e-5
    )
    assert means["hole_alternation"] == pytest.approx(
        alternation(completed, masks).mean().item(), rel=1e-5
    )
    in_photo_units = repetition(completed, masks, reference=images)
    assert means["hole_periodicity_photo_units"] == pytest.approx(
        in_photo_units[0].mean().item(), rel=1e-5
    )
    assert means["hole_alternation_photo_units"] == pytest.approx(
        in_photo_units[1].mean().item(), rel=1e-5
    )
    per_image = [
        losses.detail_excess_loss(completed[i : i + 1], images[i : i + 1], masks[i : i + 1])
        for i in range(len(images))
    ]
    assert means["hole_detail_excess"] == pytest.approx(torch.stack(per_image).mean().item())
    per_image = [
        losses.chroma_excess_loss(completed[i : i + 1], images[i : i + 1], masks[i : i + 1])
        for i in range(len(images))
    ]
    assert means["hole_chroma_excess"] == pytest.approx(torch.stack(per_image).mean().item())
    assert means["hole_chroma_excess"] > 0
    per_image = [
        losses.detail_deficit_loss(completed[i : i + 1], images[i : i + 1], masks[i : i + 1])
        for i in range(len(images))
    ]
    assert means["hole_detail_deficit"] == pytest.approx(torch.stack(per_image).mean().item())
    assert means["hole_detail_deficit"] > 0
    # Over several periods: losses averaged over them, gridded at one period or more.
    with torch.no_grad():
        means, _ = validate(generator, images, masks, batch_size=2, lattice_periods=(4, 8))
        completed = composite(images, generator(images, masks).refined, masks)
    fills = losses.lattice_loss_per_image(completed, masks, (4, 8))
    truth = losses.lattice_loss_per_image(images, masks, (4, 8))
    assert means["hole_lattice_loss"] == pytest.approx(fills.mean().item(), rel=1e-5)
    assert means["hole_lattice_gridded"] == pytest.approx(
        (fills > 2 * truth).any(dim=1).double().mean().item()
    )


def test_bf16_autocast_only_where_the_hardware_has_it(monkeypatch):
    import inpaintkit.trainer as trainer_module
    from inpaintkit.devices import has_native_bf16

    assert has_native_bf16(torch.device("cuda"))
    assert not has_native_bf16(torch.device("meta"))
    recipe = load_recipe(TINY, [*FAST, "performance.bf16=true"])
    monkeypatch.setattr(trainer_module, "has_native_bf16", lambda device: False)
    assert Trainer(recipe, torch.device("cpu")).autocast_dtype is None
    monkeypatch.setattr(trainer_module, "has_native_bf16", lambda device: True)
    assert Trainer(recipe, torch.device("cpu")).autocast_dtype == torch.bfloat16
    # tiny: bf16 off.
    assert Trainer(load_recipe(TINY, FAST), torch.device("cpu")).autocast_dtype is None


def test_weight_average_is_what_the_run_validates_saves_and_resumes(dataset, tmp_path):
    """With optimizer.ema_half_life on: generator.safetensors holds the average, a resume
    continues it bit for bit, and a run saved without one starts it from its generator."""
    ema = ["optimizer.ema_half_life=2", "optimizer.ema_rampup=0"]
    decay = 0.5 ** (1 / 2)

    # A run saved without an average, resumed with one: the average starts from step 2's weights.
    plain = load_recipe(TINY, [*STRAIGHT, "schedule.steps=2"])
    train_quietly(plain, dataset, tmp_path / "late")
    before = {k: v for k, v in _tensors(tmp_path / "late").items() if k.startswith("generator.")}
    assert not any(k.startswith("generator_average.") for k in _tensors(tmp_path / "late"))
    late = load_recipe(TINY, [*STRAIGHT, *ema, "schedule.steps=3"])
    train_quietly(late, dataset, tmp_path / "late", resume=True)
    after = _tensors(tmp_path / "late")
    saved = load_file(tmp_path / "late" / "generator.safetensors")
    for key, value in before.items():
        name = key.removeprefix("generator.")
        expected = decay * value + (1 - decay) * after[key]
        torch.testing.assert_close(after[f"generator_average.{name}"], expected)
        assert torch.equal(saved[name], after[f"generator_average.{name}"])
    assert any(not torch.equal(saved[k.removeprefix("generator.")], after[k]) for k in before)

    # Two plus two steps equal four, average included.
    four = load_recipe(TINY, [*STRAIGHT, *ema])
    train_quietly(four, dataset, tmp_path / "straight")
    two = load_recipe(TINY, [*STRAIGHT, *ema, "schedule.steps=2"])
    train_quietly(two, dataset, tmp_path / "split")
    train_quietly(four, dataset, tmp_path / "split", resume=True)
    a, b = _tensors(tmp_path / "straight"), _tensors(tmp_path / "split")
    assert any(k.startswith("generator_average.") for k in a)
    _assert_equal(a, b)
    for name in ("generator.safetensors", "generator-00000004.safetensors"):
        _assert_equal(load_file(tmp_path / "straight" / name), load_file(tmp_path / "split" / name))


def test_export_raw_generator_writes_the_optimisers_weights(dataset, tmp_path):
    """With a weight average, generator.safetensors is the average; the export is the state's
    generator.* tensors, with the run's metadata and a label saying which weights they are."""
    recipe = load_recipe(TINY, [*STRAIGHT, "optimizer.ema_half_life=2", "optimizer.ema_rampup=0"])
    train_quietly(recipe, dataset, tmp_path / "run")
    assert export_raw_generator(tmp_path / "run", tmp_path / "raw.safetensors") == 4
    raw, state = load_file(tmp_path / "raw.safetensors"), _tensors(tmp_path / "run")
    average = load_file(tmp_path / "run" / "generator.safetensors")
    assert raw.keys() == average.keys()
    for name, value in raw.items():
        assert torch.equal(value, state[f"generator.{name}"]), name
    assert any(not torch.equal(raw[k], average[k]) for k in raw)
    meta, run_meta = (
        read_metadata(path)
        for path in (tmp_path / "raw.safetensors", tmp_path / "run" / "generator.safetensors")
    )
    assert meta["step"] == "4" and meta["recipe"] == run_meta["recipe"]
    assert meta["weights"].startswith("raw") and run_meta["weights"].startswith("exponential")
    load_generator(tmp_path / "raw.safetensors")  # a checkpoint like any other


def test_resume_takes_the_recipes_learning_rate(dataset, tmp_path):
    """The saved optimiser state holds the old lr; a resume with optimizer.lr=0 must not move
    a weight (it would at the saved 1e-4), and the state it saves records lr 0."""
    train_quietly(
        load_recipe(TINY, [*STRAIGHT, "schedule.steps=2"]),
        dataset,
        tmp_path / "run",
    )
    before = _tensors(tmp_path / "run")
    frozen = load_recipe(TINY, [*STRAIGHT, "schedule.steps=3", "optimizer.lr=0"])
    train_quietly(frozen, dataset, tmp_path / "run", resume=True)
    after, meta = load_training_state(tmp_path / "run")
    assert meta["step"] == 3
    for name, value in before.items():
        if name.startswith(("generator.", "local_critic.", "global_critic.")):
            assert torch.equal(after[name], value), name
    for key in ("g_optimizer", "d_optimizer"):
        assert [g["lr"] for g in meta[key]["param_groups"]] == [0.0]


def test_learning_rate_cools_down_over_the_last_steps():
    """Constant until the last lr_cooldown_steps, then lr x (1 - sqrt(progress)), written out."""
    recipe = load_recipe(
        TINY, ["schedule.steps=10", "schedule.lr_cooldown_steps=4", "optimizer.lr=0.2"]
    )
    expected = [0.2] * 7 + [0.2 * 0.5, 0.2 * (1 - 0.5**0.5), 0.2 * (1 - 0.75**0.5)]
    assert [learning_rate(recipe, step) for step in range(10)] == pytest.approx(expected, abs=1e-15)
    constant = load_recipe(TINY, ["schedule.steps=10", "optimizer.lr=0.2"])
    assert {learning_rate(constant, step) for step in range(10)} == {0.2}


def test_a_cooled_run_equals_one_resumed_at_the_cooled_rates(dataset, tmp_path):
    """Four steps cooled over the last two train step 2 at the full lr and step 3 at
    lr x (1 - sqrt(1/2)): bit for bit what three constant-lr steps and a resume at that lr give."""
    cooled = load_recipe(TINY, [*STRAIGHT, "schedule.lr_cooldown_steps=2"])
    train_quietly(cooled, dataset, tmp_path / "cooled")
    train_quietly(
        load_recipe(TINY, [*STRAIGHT, "schedule.steps=3"]),
        dataset,
        tmp_path / "by_hand",
    )
    last = cooled.optimizer.lr * (1 - 0.5**0.5)
    by_hand = load_recipe(TINY, [*STRAIGHT, f"optimizer.lr={last!r}"])
    train_quietly(by_hand, dataset, tmp_path / "by_hand", resume=True)
    _assert_equal(_tensors(tmp_path / "cooled"), _tensors(tmp_path / "by_hand"))
    _, meta = load_training_state(tmp_path / "cooled")
    assert meta["g_optimizer"]["param_groups"][0]["lr"] == pytest.approx(last)


class _Killed(Exception):
    """Stands for a SIGKILL between a checkpoint's generator files and its state commit."""


def test_a_kill_before_the_state_commits_leaves_generator_files_a_resume_repeats(
    dataset, tmp_path, monkeypatch
):
    """The generator files go first and training_state.json last: killed in between at the
    final step, the committed state is the previous checkpoint's, the snapshot of the final
    step exists, and the resume rewrites them bit for bit as an uninterrupted run has them.
    (In the other order the resume of the finished run trained nothing and left them stale.)"""
    import inpaintkit.train as train_module

    recipe = load_recipe(TINY, STRAIGHT)
    train_quietly(recipe, dataset, tmp_path / "straight")
    commit = train_module.save_training_state

    def killed_at_step_4(out, step, tensors, meta):
        if step == 4:
            raise _Killed
        return commit(out, step, tensors, meta)

    monkeypatch.setattr(train_module, "save_training_state", killed_at_step_4)
    with pytest.raises(_Killed):
        train_quietly(recipe, dataset, tmp_path / "killed")
    _, meta = load_training_state(tmp_path / "killed")
    assert meta["step"] == 2
    assert read_metadata(tmp_path / "killed" / "generator.safetensors")["step"] == "4"
    assert (tmp_path / "killed" / "generator-00000004.safetensors").is_file()

    monkeypatch.setattr(train_module, "save_training_state", commit)
    train_quietly(recipe, dataset, tmp_path / "killed", resume=True)
    _assert_equal(_tensors(tmp_path / "straight"), _tensors(tmp_path / "killed"))
    for name in ("generator.safetensors", "generator-00000004.safetensors"):
        _assert_equal(
            load_file(tmp_path / "straight" / name), load_file(tmp_path / "killed" / name)
        )
