"""The adversarial phase's levers (inpaintkit/adversarial.py, Trainer.train_step): each against a
plain recomputation, and the critic warm-up and validation guard through real runs."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

# The tiny dataset and 4-step run of test_train, as fixtures of this module too.
from test_train import (  # noqa: F401
    FAST,
    TINY,
    _fresh_critics,
    dataset,
    one_thread,
    straight_run,
    train_quietly,
)

from inpaintkit import losses
from inpaintkit.adversarial import critic_updates_before, penalty_weight
from inpaintkit.config import ConfigError, load_recipe
from inpaintkit.masks import MaskSampler
from inpaintkit.model.critics import crop_hole_boxes
from inpaintkit.train import TrainingError
from inpaintkit.train_log import BEST_GENERATOR_FILE
from inpaintkit.trainer import Trainer, batches_per_step, phase_of
from inpaintkit.training_state import load_training_state


def _batches(recipe, count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` prepared-like batches: images in [-1, 1] and the recipe's masks."""
    g = torch.Generator().manual_seed(seed)
    size, n = recipe.data.image_size, recipe.data.batch_size
    masks = MaskSampler(recipe.masks, size, size, seed)
    return [
        (torch.rand(n, 3, size, size, generator=g) * 2 - 1, masks.batch(range(i * n, (i + 1) * n)))
        for i in range(count)
    ]


def test_phases_and_batches_follow_the_schedule():
    recipe = load_recipe(TINY, [*FAST, "schedule.warmup_steps=2", "schedule.critic_warmup_steps=3"])
    assert [phase_of(recipe, s) for s in range(7)] == ["warm-up"] * 2 + ["critics"] * 3 + [
        "adversarial"
    ] * 2
    shared = load_recipe(
        TINY, [*FAST, "optimizer.critic_steps=3", "optimizer.share_generator_forward=true"]
    )
    assert batches_per_step(shared, "adversarial") == 3  # the generator's batch serves one update
    assert batches_per_step(shared, "critics") == 3
    assert batches_per_step(load_recipe(TINY, FAST), "adversarial") == 2


def test_lazy_penalty_weights_every_kth_update_k_times():
    recipe = load_recipe(
        TINY,
        [
            *FAST,
            "loss.gradient_penalty_every=4",
            "loss.wgan_gp_lambda=10",
            "schedule.warmup_steps=5",
        ],
    )
    assert [penalty_weight(recipe, i) for i in range(9)] == [40, 0, 0, 0, 40, 0, 0, 0, 40]
    # Counting over the run: none during the warm-up, critic_steps per step after it.
    assert critic_updates_before(recipe, 3) == 0
    assert critic_updates_before(recipe, 8) == 3 * recipe.optimizer.critic_steps


def _plain_shared_step(trainer: Trainer, real, mask, penalty: float) -> None:
    """The shared-forward Algorithm 1 step written out: one forward, a critic update on its
    detached fill, then the generator's loss (Trainer.generator_losses, checked against a hand
    computation in test_train) on that same forward against the updated critics."""
    out = trainer.generator(real, mask)
    d_loss, _ = trainer.critics.losses(real, mask, out.refined, penalty)
    trainer.d_optimizer.zero_grad()
    d_loss.backward()
    trainer.d_optimizer.step()
    loss, _ = trainer.generator_losses(real, mask, adversarial=True, out=out)
    trainer.g_optimizer.zero_grad()
    loss.backward()
    trainer.g_optimizer.step()


@pytest.mark.parametrize("step", [0, 1])  # a penalised update (index 0) and a lazy one (index 1)
def test_shared_forward_step_equals_the_plain_computation(step):
    overrides = [
        *FAST,
        "optimizer.share_generator_forward=true",
        "loss.gradient_penalty_every=2",
        "loss.gan_loss_alpha=0.5",  # a strong adversarial term, so a wrong order would show
        "schedule.warmup_steps=0",
    ]
    recipe = load_recipe(TINY, overrides)
    batch = _batches(recipe, 1)
    trainers = []
    for _ in range(2):
        torch.manual_seed(0)
        trainers.append(Trainer(recipe, torch.device("cpu")))
    ours, plain = trainers
    torch.manual_seed(1)
    ours.train_step(iter(batch), step)
    torch.manual_seed(1)
    _plain_shared_step(plain, *batch[0], penalty_weight(recipe, step))
    for a, b in zip(
        ours.state_tensors()[0].values(), plain.state_tensors()[0].values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # The generator and the critics both moved (the test is not vacuous).
    torch.manual_seed(0)
    fresh = Trainer(recipe, torch.device("cpu"))
    for net in ("generator", "global_critic"):
        moved = [
            not torch.equal(p, q)
            for p, q in zip(
                getattr(ours, net).parameters(), getattr(fresh, net).parameters(), strict=True
            )
        ]
        assert any(moved), net


def test_penalty_on_a_sub_batch_is_the_penalty_of_those_samples():
    recipe = load_recipe(TINY, [*FAST, "loss.gradient_penalty_batch=1"])
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    real, mask = _batches(recipe, 1)[0]
    refined = torch.rand_like(real) * 2 - 1
    torch.manual_seed(5)
    _, scalars = trainer.critics.losses(real, mask, refined, 10.0)
    torch.manual_seed(5)
    fake = real * (1 - mask) + refined * mask
    expected = losses.gradient_penalty(trainer.global_critic, real[:1], fake[:1], mask[:1], 10.0)
    torch.testing.assert_close(scalars["critic/global_gradient_penalty"], expected.detach())
    # Penalty weight 0 (a lazy update): no penalty at all.
    _, scalars = trainer.critics.losses(real, mask, refined, 0.0)
    assert scalars["critic/global_gradient_penalty"] == 0


@pytest.mark.parametrize("adversarial", [False, True])
def test_lattice_term_adds_its_weighted_loss_of_the_composited_fills(adversarial):
    overrides = [*FAST, "loss.lattice_periods=[3, 4]"]
    plain_recipe = load_recipe(TINY, overrides)
    recipe = load_recipe(TINY, [*overrides, "loss.lattice_alpha=3.0"])
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    torch.manual_seed(0)
    plain = Trainer(plain_recipe, torch.device("cpu"))
    real, mask = _batches(recipe, 1)[0]
    mask = torch.zeros_like(mask)
    mask[..., 4:28, 6:30] = 1  # every 3 and 4 px lattice cell inside the eroded hole
    out = trainer.forward(real, mask)
    ours, scalars = trainer.generator_losses(real, mask, adversarial, out)
    base, _ = plain.generator_losses(real, mask, adversarial, out)
    fills = real * (1 - mask) + out.refined.float() * mask
    lattice = (losses.lattice_loss(fills, mask, 3) + losses.lattice_loss(fills, mask, 4)) / 2
    assert lattice > 0
    torch.testing.assert_close(scalars["generator/lattice"], lattice.detach())
    torch.testing.assert_close(ours, base + 3.0 * lattice)
    assert "generator/lattice" not in plain.generator_losses(real, mask, adversarial, out)[1]


def test_lattice_term_above_the_photo_uses_the_real_images_as_its_floor():
    overrides = [*FAST, "loss.lattice_periods=[3, 4]", "loss.lattice_alpha=3.0"]
    recipe = load_recipe(TINY, [*overrides, "loss.lattice_above_photo=true"])
    trainer = Trainer(recipe, torch.device("cpu"))
    real, mask = _batches(recipe, 1)[0]
    mask = torch.zeros_like(mask)
    mask[..., 4:28, 6:30] = 1
    out = trainer.forward(real, mask)
    _, scalars = trainer.generator_losses(real, mask, False, out)
    fills = real * (1 - mask) + out.refined.float() * mask
    expected = losses.lattice_loss(fills, mask, (3, 4), photos=real)
    torch.testing.assert_close(scalars["generator/lattice"], expected.detach())
    assert expected < losses.lattice_loss(fills, mask, (3, 4))


def test_feature_matching_term_compares_the_critics_view_of_fill_and_photo():
    recipe = load_recipe(TINY, [*FAST, "loss.feature_matching_alpha=2.0"])
    plain_recipe = load_recipe(TINY, FAST)
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    torch.manual_seed(0)
    plain = Trainer(plain_recipe, torch.device("cpu"))
    real, mask = _batches(recipe, 1)[0]
    out = trainer.forward(real, mask)
    ours, scalars = trainer.generator_losses(real, mask, True, out)
    base, _ = plain.generator_losses(real, mask, True, out)
    matching = scalars["generator/feature_matching"]
    assert matching > 0
    torch.testing.assert_close(ours, base + 2.0 * matching, rtol=1e-5, atol=1e-6)
    # By hand, from each critic's maps of the composited fill and of the photo.
    fake = real * (1 - mask) + out.refined.float() * mask
    critics = trainer.critics
    size = recipe.critics.local_size
    expected = (
        losses.feature_matching_loss(
            critics.global_.forward_with_features(fake)[1],
            critics.global_.forward_with_features(real)[1],
        )
        + losses.feature_matching_loss(
            critics.local.forward_with_features(crop_hole_boxes(fake, mask, size))[1],
            critics.local.forward_with_features(crop_hole_boxes(real, mask, size))[1],
        )
    ) / 2
    torch.testing.assert_close(matching, expected.detach())
    # The photo itself as the fill: nothing to match. The critics get no gradient.
    terms = critics.generator_losses(real, mask, real.clone(), feature_matching=True)
    assert terms.feature_matching.item() == 0.0
    assert all(p.grad is None for p in critics.global_.parameters())


@pytest.mark.parametrize(
    ("overrides", "scalar", "term"),
    [
        ([], "periodicity", losses.periodicity_loss),
        (
            ["loss.periodicity_two_sided=true"],
            "periodicity",
            functools.partial(losses.periodicity_loss, two_sided=True),
        ),
        (
            ["loss.periodicity_two_sided=true", "loss.periodicity_photo_units=true"],
            "periodicity",
            functools.partial(losses.periodicity_loss, two_sided=True, photo_units=True),
        ),
        ([], "detail_excess", losses.detail_excess_loss),
        ([], "chroma_excess", losses.chroma_excess_loss),
        (
            ["loss.detail_deficit_fraction=0.7"],
            "detail_deficit",
            functools.partial(losses.detail_deficit_loss, fraction=0.7),
        ),
    ],
)
def test_fill_term_adds_its_weighted_loss_of_the_composited_fills(overrides, scalar, term):
    """The generator's terms scored on the composited fills: each reaches the loss, weighted
    2 (``loss.<scalar>_alpha``), with its options (``overrides``)."""
    recipe = load_recipe(TINY, [*FAST, f"loss.{scalar}_alpha=2.0", *overrides])
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    torch.manual_seed(0)
    plain = Trainer(load_recipe(TINY, FAST), torch.device("cpu"))
    real, mask = _batches(recipe, 1)[0]
    if scalar.endswith("_excess"):  # flat photos: any detail of an untrained fill is too much
        real = real.mean(dim=(-2, -1), keepdim=True).expand_as(real).contiguous()
    out = trainer.forward(real, mask)
    ours, scalars = trainer.generator_losses(real, mask, False, out)
    base, _ = plain.generator_losses(real, mask, False, out)
    fills = real * (1 - mask) + out.refined.float() * mask
    expected = term(fills, real, mask)
    if overrides:  # each option changes the loss, so the test sees that it reached it
        assert expected.item() != term.func(fills, real, mask).item()
    assert expected.item() > 0
    torch.testing.assert_close(scalars[f"generator/{scalar}"], expected.detach())
    torch.testing.assert_close(ours, base + 2.0 * expected)


def test_both_sides_of_the_detail_budget_add_their_own_weighted_losses():
    """Excess and deficit on together (one shared computation in the trainer): each scalar is
    its own loss, and the total adds both at their weights."""
    terms = ["loss.detail_excess_alpha=2.0", "loss.detail_deficit_alpha=3.0"]
    options = [*FAST, "loss.detail_deficit_fraction=0.7"]
    recipe = load_recipe(TINY, [*options, *terms])
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    plain = Trainer(load_recipe(TINY, options), torch.device("cpu"))
    real, mask = _batches(recipe, 1)[0]
    half = real.shape[-1] // 2  # flat on the left (excess), textured on the right (deficit)
    real[..., :half] = real[..., :half].mean(dim=(-2, -1), keepdim=True)
    out = trainer.forward(real, mask)
    ours, scalars = trainer.generator_losses(real, mask, False, out)
    base, _ = plain.generator_losses(real, mask, False, out)
    fills = real * (1 - mask) + out.refined.float() * mask
    excess = losses.detail_excess_loss(fills, real, mask)
    deficit = losses.detail_deficit_loss(fills, real, mask, 0.7)
    assert excess.item() > 0 and deficit.item() > 0
    torch.testing.assert_close(scalars["generator/detail_excess"], excess.detach())
    torch.testing.assert_close(scalars["generator/detail_deficit"], deficit.detach())
    torch.testing.assert_close(ours, base + 2.0 * excess + 3.0 * deficit)


def test_flat_gate_term_adds_its_weighted_loss_of_the_forwards_gates():
    """``loss.flat_gate_alpha`` scores the gates of the very forward it is given, at the
    recipe's threshold, and a backward reaches the gates' convs."""
    gated = ["model.noise_inputs=true", "model.noise_gates=true"]
    options = [*FAST, *gated, "loss.flat_gate_detail=0.3"]
    recipe = load_recipe(TINY, [*options, "loss.flat_gate_alpha=2.0"])
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    plain = Trainer(load_recipe(TINY, options), torch.device("cpu"))
    real, mask = _batches(recipe, 1)[0]
    half = real.shape[-1] // 2  # the left half flat: the only place the term looks
    real[..., :half] = real[..., :half].mean(dim=(-2, -1), keepdim=True)
    out = trainer.forward(real, mask)
    ours, scalars = trainer.generator_losses(real, mask, False, out)
    base, _ = plain.generator_losses(real, mask, False, out)
    expected = losses.flat_gate_loss(out.noise_gates, real, mask, 0.3)
    assert 0 < expected.item() < 1  # open gates (1) on part of the hole
    assert losses.flat_gate_loss(out.noise_gates, real, mask, 0.0).item() == 0.0
    torch.testing.assert_close(scalars["generator/flat_gate"], expected.detach())
    torch.testing.assert_close(ours, base + 2.0 * expected)
    (ours - base).backward()
    assert all(p.grad.abs().sum() > 0 for p in trainer.model.refine.noise.gates.parameters())


def test_critic_lr_scales_with_the_schedule():
    recipe = load_recipe(TINY, [*FAST, "optimizer.lr=1e-4", "optimizer.critic_lr=4e-4"])
    trainer = Trainer(recipe, torch.device("cpu"))
    trainer.set_learning_rate(0.5e-4)  # e.g. halfway down a cool-down
    assert trainer.g_optimizer.param_groups[0]["lr"] == pytest.approx(0.5e-4)
    assert trainer.d_optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)


def test_critic_warmup_trains_the_critics_alone_then_the_generator(dataset, tmp_path):  # noqa: F811
    warm = [*FAST, "schedule.critic_warmup_steps=2", "schedule.checkpoint_every=1"]
    recipe = load_recipe(TINY, [*warm, "schedule.steps=2"])
    torch.manual_seed(recipe.schedule.seed)
    initial = {
        k: v.clone() for k, v in Trainer(recipe, torch.device("cpu")).generator.state_dict().items()
    }
    train_quietly(recipe, dataset, tmp_path / "run")
    tensors, meta = load_training_state(tmp_path / "run")
    for key, value in initial.items():
        assert torch.equal(tensors[f"generator.{key}"], value), key
    assert not any(k.startswith("g_optimizer.state") for k in tensors)
    fresh = _fresh_critics(recipe)
    assert any(not torch.equal(tensors[k], fresh[k]) for k in fresh)
    assert meta["samples_per_rank"] == 2 * recipe.optimizer.critic_steps * recipe.data.batch_size
    # Step 3 trains the generator.
    train_quietly(
        load_recipe(TINY, [*warm, "schedule.steps=3"]), dataset, tmp_path / "run", resume=True
    )
    tensors, _ = load_training_state(tmp_path / "run")
    assert any(k.startswith("g_optimizer.state") for k in tensors)


def test_validation_guard_stops_on_a_fall_and_keeps_the_best(
    dataset,  # noqa: F811
    straight_run,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    import inpaintkit.train_log as train_log

    falling = iter([20.0, 20.5, 19.0])  # step 0 (the --init-from weights), 2, then 4: -1.5 dB

    def fake_validate(*args, **kwargs):
        means, grid = original(*args, **kwargs)
        return {**means, "hole_psnr": next(falling)}, grid

    original = train_log.validate
    monkeypatch.setattr(train_log, "validate", fake_validate)
    recipe = load_recipe(
        TINY,
        [
            *FAST,
            "schedule.steps=6",
            "schedule.val_every=2",
            "schedule.checkpoint_every=2",
            "schedule.max_validation_drop_db=1.0",
        ],
    )
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"fell to 19.00 dB at step 4.*20.50 dB at step 2"):
        train_quietly(recipe, dataset, run, init_from=straight_run / "generator.safetensors")
    _, meta = load_training_state(run)
    assert meta["step"] == 2  # step 4 was never saved
    steps = [
        json.loads(line)["step"] for line in (run / "validation.jsonl").read_text().splitlines()
    ]
    assert steps == [0, 2, 4]
    from inpaintkit.checkpoint import read_metadata

    assert read_metadata(run / BEST_GENERATOR_FILE)["step"] == "2"
    # A resume reads the best back from validation.jsonl and still refuses the fall.
    falling = iter([19.0])
    with pytest.raises(TrainingError, match="20.50 dB at step 2"):
        train_quietly(recipe, dataset, run, resume=True)
    assert Path(run / BEST_GENERATOR_FILE).is_file()


def _global_critic_inputs(recipe, monkeypatch) -> tuple[Trainer, list[torch.Tensor]]:
    """A trainer whose global critic records every input it is called on."""
    trainer = Trainer(recipe, torch.device("cpu"))
    seen: list[torch.Tensor] = []
    forward = trainer.critics.global_forward

    def recording(x):
        seen.append(x.detach().clone())
        return forward(x)

    monkeypatch.setattr(trainer.critics, "global_forward", recording)
    return trainer, seen


@pytest.mark.parametrize("shift", [0, 8])
def test_global_critic_sees_real_and_fake_at_one_random_phase(shift, monkeypatch):
    recipe = load_recipe(TINY, [*FAST, f"critics.global_shift={shift}"])
    trainer, seen = _global_critic_inputs(recipe, monkeypatch)
    ((real, mask),) = _batches(recipe, 1)
    refined = torch.rand_like(real) * 2 - 1
    fake = real * (1 - mask) + refined * mask
    offsets = set()
    for _ in range(6):
        seen.clear()
        trainer.critics.losses(real, mask, refined, penalty=0.0)
        trainer.critics.generator_losses(real, mask, refined)
        real_seen, fake_seen, fake_for_generator = seen
        # The one offset that maps the real batch onto what the critic saw moves the fake alike.
        matches = [
            (dy, dx)
            for dy in range(max(shift, 1))
            for dx in range(max(shift, 1))
            if torch.equal(torch.roll(real, (dy, dx), dims=(2, 3)), real_seen)
        ]
        assert len(matches) == 1
        assert torch.equal(torch.roll(fake, matches[0], dims=(2, 3)), fake_seen)
        assert any(
            torch.equal(torch.roll(fake, (dy, dx), dims=(2, 3)), fake_for_generator)
            for dy in range(max(shift, 1))
            for dx in range(max(shift, 1))
        )
        offsets.add(matches[0])
    # Off (the paper's), the critic sees the images as they are; on, the phase changes.
    assert offsets == {(0, 0)} if shift == 0 else len(offsets) > 1


def test_global_shift_must_fit_the_image():
    with pytest.raises(ConfigError, match="critics.global_shift"):
        load_recipe(TINY, [*FAST, "critics.global_shift=-1"])
