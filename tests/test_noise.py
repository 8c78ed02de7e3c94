"""Noise inputs of the refinement decoder (inpaintkit.model.noise, GeneratorConfig.noise_inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inpaintkit.model.generator import NOISE_LAYERS, Generator, GeneratorConfig
from inpaintkit.model.noise import FIELD_SIDE, GATE_GAIN, NoiseInputs, tiled_field


def holed(n: int = 2, side: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    images = torch.rand(n, 3, side, side) * 2 - 1
    masks = torch.zeros(n, 1, side, side)
    masks[..., 8:32, 12:36] = 1
    return images, masks


def pair() -> tuple[Generator, Generator]:
    """The same weights without and with noise inputs (strengths at their init, zero)."""
    torch.manual_seed(0)
    plain = Generator(GeneratorConfig(channels=4)).eval()
    noisy = Generator(GeneratorConfig(channels=4, noise_inputs=True)).eval()
    missing = noisy.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == [f"refine.noise.strengths.{i}" for i in range(len(NOISE_LAYERS))]
    return plain, noisy


def test_zero_strengths_compute_exactly_the_generator_without_noise():
    plain, noisy = pair()
    images, masks = holed()
    noisy.train()  # fresh noise, still multiplied by zero
    with torch.no_grad():
        assert torch.equal(plain(images, masks).refined, noisy(images, masks).refined)


def test_noise_reaches_only_the_refinement_decoder_and_only_through_its_strengths():
    plain, noisy = pair()
    for strength in noisy.refine.noise.strengths:
        strength.data.fill_(0.3)
    images, masks = holed()
    with torch.no_grad():
        a, b = plain(images, masks), noisy(images, masks)
    assert torch.equal(a.coarse, b.coarse)
    assert (a.refined - b.refined).abs().max() > 1e-2


def test_eval_noise_is_the_fixed_field_tiled_the_same_for_every_call_and_sample():
    layer = NoiseInputs([3, 2], field_side=8).eval()
    layer.strengths[1].data = torch.tensor([0.5, -2.0]).view(1, 2, 1, 1)
    x = torch.randn(2, 2, 19, 13)
    field = layer.fields[1].numpy()
    # The reference: np.tile, then crop.
    tiled = np.tile(field, (3, 2))[:19, :13]
    expected = x.numpy() + np.array([0.5, -2.0]).reshape(1, 2, 1, 1) * tiled
    out, gate = layer(x, 1)
    assert gate is None  # ungated
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=0, atol=1e-6)
    assert torch.equal(out, layer(x, 1)[0])
    # Every Generator draws the same fields: fills are reproducible across processes.
    assert torch.equal(NoiseInputs([3, 2], field_side=8).fields, layer.fields)


def test_tiled_field_matches_np_tile_beyond_one_period():
    field = torch.randn(FIELD_SIDE, FIELD_SIDE)
    out = tiled_field(field, FIELD_SIDE + 5, 2 * FIELD_SIDE + 3)
    assert out.shape == (1, 1, FIELD_SIDE + 5, 2 * FIELD_SIDE + 3)
    np.testing.assert_array_equal(
        out[0, 0].numpy(), np.tile(field.numpy(), (2, 3))[: FIELD_SIDE + 5, : 2 * FIELD_SIDE + 3]
    )


def test_training_noise_is_fresh_per_call_and_per_sample_and_standard_normal():
    layer = NoiseInputs([1]).train()
    layer.strengths[0].data.fill_(1.0)
    zeros = torch.zeros(2, 1, 128, 128)
    first, second = layer(zeros, 0)[0], layer(zeros, 0)[0]
    assert not torch.equal(first, second)
    assert not torch.equal(first[0], first[1])
    assert abs(float(first.mean())) < 0.02 and abs(float(first.std()) - 1) < 0.02
    # Neighbouring pixels are independent: no grid of any period in the noise itself.
    assert abs(float((first[..., 1:] * first[..., :-1]).mean())) < 0.02


def test_the_strengths_learn_from_zero():
    _, noisy = pair()
    noisy.train()
    images, masks = holed()
    noisy(images, masks).refined.square().mean().backward()
    grads = [s.grad for s in noisy.refine.noise.strengths]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_strengths_are_in_the_state_dict_and_the_fields_are_not():
    _, noisy = pair()
    keys = [k for k in noisy.state_dict() if ".noise." in k]
    assert keys == [f"refine.noise.strengths.{i}" for i in range(len(NOISE_LAYERS))]
    shapes = [tuple(noisy.state_dict()[k].shape) for k in keys]
    assert shapes == [(1, 8, 1, 1), (1, 8, 1, 1), (1, 4, 1, 1), (1, 2, 1, 1)]


def test_noise_follows_the_feature_dtype():
    """bf16 features (autocast training) stay bf16."""
    layer = NoiseInputs([2]).train()
    features = torch.zeros(1, 2, 8, 8, dtype=torch.bfloat16)
    assert layer(features, 0)[0].dtype == torch.bfloat16
    assert layer.eval()(features, 0)[0].dtype == torch.bfloat16


# --------------------------------------------------------------------------- gates


def test_gates_start_at_one_so_a_gated_generator_computes_what_it_did_without():
    _, noisy = pair()
    for strength in noisy.refine.noise.strengths:
        strength.data.fill_(0.3)
    gated = Generator(GeneratorConfig(channels=4, noise_inputs=True, noise_gates=True)).eval()
    missing = gated.load_state_dict(noisy.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(
        f"refine.noise.gates.{i}.{p}" for i in range(len(NOISE_LAYERS)) for p in ("weight", "bias")
    )
    for name, parameter in gated.named_parameters():  # what train --init-from does
        if name in missing:
            parameter.data.zero_()
    images, masks = holed()
    with torch.no_grad():
        assert torch.equal(noisy(images, masks).refined, gated(images, masks).refined)


def test_a_gate_scales_the_noise_pixel_by_pixel_by_two_sigmoid_of_the_features():
    """Against the formula written out: x + strength · 2 sigmoid(gain (w · x + b)) · field."""
    torch.manual_seed(1)
    layer = NoiseInputs([3], field_side=8, gated=True).eval()
    layer.strengths[0].data = torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1)
    layer.gates[0].weight.data = torch.randn(1, 3, 1, 1) / GATE_GAIN  # logits of order 1
    layer.gates[0].bias.data = torch.tensor([0.3]) / GATE_GAIN
    x = torch.randn(2, 3, 5, 6)
    field = layer.fields[0][:5, :6]
    expected = torch.empty_like(x)
    for n in range(2):
        for i in range(5):
            for j in range(6):
                logit = sum(layer.gates[0].weight[0, c, 0, 0] * x[n, c, i, j] for c in range(3))
                gate = 2 / (1 + torch.exp(-GATE_GAIN * (logit + 0.3 / GATE_GAIN)))
                for c in range(3):
                    strength = layer.strengths[0][0, c, 0, 0]
                    expected[n, c, i, j] = x[n, c, i, j] + strength * gate * field[i, j]
    with torch.no_grad():
        out, gate = layer(x, 0)
    torch.testing.assert_close(out, expected)
    assert gate.shape == (2, 1, 5, 6)
    torch.testing.assert_close((out - x) / (layer.strengths[0] * field), gate.expand_as(x))


def test_a_closed_gate_removes_the_noise_where_it_is_closed():
    layer = NoiseInputs([1], gated=True).train()
    layer.strengths[0].data.fill_(1.0)
    layer.gates[0].weight.data.fill_(-100.0)  # closed where the feature is positive
    x = torch.zeros(1, 1, 8, 8)
    x[..., :, 4:] = 1.0
    with torch.no_grad():
        out, gate = layer(x, 0)
    assert torch.equal(out[..., :, 4:], x[..., :, 4:])  # sigmoid(-100) is 0 in float32
    assert out[..., :, :4].abs().min() > 0
    assert not gate[..., :, 4:].any() and torch.equal(gate[..., :, :4], torch.ones(1, 1, 8, 4))


def test_the_generator_returns_its_gates_at_each_points_resolution():
    images, masks = holed()
    gated = Generator(GeneratorConfig(channels=4, noise_inputs=True, noise_gates=True))
    gates = gated(images, masks).noise_gates
    side = images.shape[-1]
    assert [tuple(g.shape) for g in gates] == [
        (len(images), 1, side // 2, side // 2),
        (len(images), 1, side // 2, side // 2),
        (len(images), 1, side, side),
        (len(images), 1, side, side),
    ]
    assert all(torch.equal(g, torch.ones_like(g)) for g in gates)  # 1 at init
    _, noisy = pair()
    assert noisy(images, masks).noise_gates is None


def test_gates_need_noise_inputs():
    with pytest.raises(ValueError, match="noise_gates needs noise_inputs"):
        GeneratorConfig(channels=4, noise_gates=True)
