"""Generator: architecture vs appendix D, parameter count, shapes, ranges, input handling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inpaintkit.model import attention, layers, stride1
from inpaintkit.model.generator import (
    PARAMETER_FIELDS,
    Generator,
    GeneratorConfig,
    GeneratorOutput,
    fields_blocking_init,
)
from inpaintkit.model.layers import GenConv, GenDeconv, mirror_pad, pad_exactly

# Appendix D, verbatim (one encoder-decoder; "resize" is a nearest 2x resize before the next conv).
APPENDIX_ENCODER_DECODER = (
    "K5S1C32 - K3S2C64 - K3S1C64 - K3S2C128 - K3S1C128 - K3S1C128 - K3D2S1C128 - K3D4S1C128 - "
    "K3D8S1C128 - K3D16S1C128 - K3S1C128 - K3S1C128 - resize - K3S1C64 - K3S1C64 - resize - "
    "K3S1C32 - K3S1C16 - K3S1C3"
)
APPENDIX_ATTENTION_BRANCH = (
    "K5S1C32 - K3S2C64 - K3S1C64 - K3S2C128 - K3S1C128 - K3S1C128 - attention - K3S1C128 - K3S1C128"
)
DILATED_BRANCH = " - ".join(APPENDIX_ENCODER_DECODER.split(" - ")[:10])
DECODER = " - ".join(APPENDIX_ENCODER_DECODER.split(" - ")[10:])


def parse(spec: str) -> list[tuple[int, int, int, int] | str]:
    """'K3D2S1C128' -> (kernel 3, dilation 2, stride 1, channels 128); other tokens kept as words."""
    layers: list[tuple[int, int, int, int] | str] = []
    for token in spec.split(" - "):
        if not token.startswith("K"):
            layers.append(token)
            continue
        kernel = int(token[1 : token.index("D") if "D" in token else token.index("S")])
        dilation = int(token[token.index("D") + 1 : token.index("S")]) if "D" in token else 1
        stride = int(token[token.index("S") + 1 : token.index("C")])
        layers.append((kernel, dilation, stride, int(token[token.index("C") + 1 :])))
    return layers


def described(*modules: torch.nn.Module) -> list[tuple[int, int, int, int] | str]:
    """Our layers in order in the same notation ('resize' for GenDeconv's upsampling)."""
    layers: list[tuple[int, int, int, int] | str] = []
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, GenDeconv):
                layers.append("resize")
            elif isinstance(sub, GenConv):
                conv = sub.conv
                layers.append(
                    (conv.kernel_size[0], conv.dilation[0], conv.stride[0], conv.out_channels)
                )
            elif type(sub).__name__ == "ContextualAttention":
                layers.append("attention")
    return layers


def conv_params(kernel: int, cin: int, cout: int) -> int:
    return kernel * kernel * cin * cout + cout


def count_from_appendix(spec: str, cin: int) -> int:
    total = 0
    for layer in parse(spec):
        if isinstance(layer, tuple):
            kernel, _, _, cout = layer
            total += conv_params(kernel, cin, cout)
            cin = cout
    return total


def random_inputs(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, 8:30, 10:40] = 1
    mask[-1, :, 40:60, 4:20] = 1
    mask[-1, :, 2:12, 50:62] = 1
    return image, mask


def test_architecture_matches_appendix_d():
    g = Generator()
    assert described(g.coarse) == parse(APPENDIX_ENCODER_DECODER)
    assert described(g.refine.dilated) == parse(DILATED_BRANCH)
    assert described(g.refine.attention) == parse(APPENDIX_ATTENTION_BRANCH)
    assert described(g.refine.decoder) == parse(DECODER)
    # The attention branch's last conv before the layer uses ReLU (authors' code); the final
    # convs of both stages have no activation; everything else is ELU.
    assert g.refine.attention.encoder[-1].activation == "relu"
    assert g.coarse.decoder[-1].activation == "none" and g.refine.decoder[-1].activation == "none"
    elu = [m for m in g.modules() if isinstance(m, GenConv) and m.activation == "elu"]
    assert len(elu) == len([m for m in g.modules() if isinstance(m, GenConv)]) - 3
    # Input: masked image, ones, mask (5 channels) for both stages; decoder reads both branches.
    assert g.coarse.encoder[0].conv.in_channels == 5
    assert (
        g.refine.dilated[0].conv.in_channels == 5
        and g.refine.attention.encoder[0].conv.in_channels == 5
    )
    assert g.refine.decoder[0].conv.in_channels == 256
    # "Same" mirror padding: dilation * (k - 1) / 2; no normalisation layers anywhere.
    for m in g.modules():
        if isinstance(m, GenConv):
            assert m.pad == m.conv.dilation[0] * (m.conv.kernel_size[0] - 1) // 2
        assert not isinstance(
            m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm)
        )


def test_parameter_count_exact():
    coarse = count_from_appendix(APPENDIX_ENCODER_DECODER, 5)
    dilated = count_from_appendix(DILATED_BRANCH, 5)
    attention = count_from_appendix(APPENDIX_ATTENTION_BRANCH, 5)
    full_decoder = count_from_appendix(DECODER, 256)
    baseline_decoder = count_from_appendix(DECODER, 128)
    full = Generator(GeneratorConfig())
    baseline = Generator(GeneratorConfig(contextual_attention=False))
    assert sum(p.numel() for p in full.parameters()) == coarse + dilated + attention + full_decoder
    assert sum(p.numel() for p in baseline.parameters()) == coarse + dilated + baseline_decoder
    # The figures quoted in docs/model.md.
    assert sum(p.numel() for p in full.parameters()) == 3_767_558
    assert sum(p.numel() for p in baseline.parameters()) == 2_896_454
    assert sum(p.numel() for p in full.coarse.parameters()) == 1_448_227


def test_forward_shapes_ranges_offsets():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(channels=8))
    image, mask = random_inputs(2, 64)
    out = g(image, mask, return_offsets=True)
    assert isinstance(out, GeneratorOutput)
    assert out.coarse.shape == out.refined.shape == (2, 3, 64, 64)
    for x in (out.coarse, out.refined):
        assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    assert (
        out.offsets is not None
        and out.offsets.shape == (2, 2, 16, 16)
        and out.offsets.dtype == torch.int64
    )
    assert g(image, mask).offsets is None


def test_non_square_and_clipping():
    torch.manual_seed(1)
    g = Generator(GeneratorConfig(channels=8))
    with torch.no_grad():  # blow up the final convs so the raw outputs leave [-1, 1]
        g.coarse.decoder[-1].conv.weight.mul_(1000)
        g.refine.decoder[-1].conv.weight.mul_(1000)
    image = torch.rand(1, 3, 72, 96) * 2 - 1
    mask = torch.zeros(1, 1, 72, 96)
    mask[..., 20:50, 30:70] = 1
    out = g(image, mask)
    assert out.refined.shape == (1, 3, 72, 96)
    assert out.refined.abs().max() == 1.0 and out.coarse.abs().max() == 1.0  # clipped, not squashed


def test_hole_content_is_ignored():
    torch.manual_seed(2)
    g = Generator(GeneratorConfig(channels=8))
    image, mask = random_inputs(2, 64)
    other = torch.where(mask > 0.5, torch.rand_like(image) * 2 - 1, image)
    other[0, :, 8:30, 10:40] = float("nan")  # even NaN in the hole never reaches the network
    a, b = g(image, mask), g(other, mask)
    assert torch.equal(a.refined, b.refined) and torch.equal(a.coarse, b.coarse)


def test_mask_changes_output():
    torch.manual_seed(3)
    g = Generator(GeneratorConfig(channels=8))
    image, mask = random_inputs(1, 64)
    moved = torch.roll(mask, shifts=8, dims=3)
    assert not torch.allclose(g(image, mask).refined, g(image, moved).refined)


def test_baseline_switch():
    g = Generator(GeneratorConfig(channels=8, contextual_attention=False))
    assert g.refine.attention is None
    assert g.refine.decoder[0].conv.in_channels == 32  # 4c: the dilated branch alone
    assert not any(type(m).__name__ == "ContextualAttention" for m in g.modules())
    image, mask = random_inputs(2, 64)
    out = g(image, mask, return_offsets=True)
    assert out.refined.shape == (2, 3, 64, 64) and out.offsets is None


def test_no_stop_gradient_between_stages():
    torch.manual_seed(4)
    g = Generator(GeneratorConfig(channels=8, contextual_attention=False))
    image, mask = random_inputs(1, 64)
    g(image, mask).refined.sum().backward()
    grad = g.coarse.encoder[0].conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": 7},
        {"channels": 0},
        {"attention_rate": 0},
        {"attention_stride": 0},
        {"attention_softmax_scale": 0.0},
        {"attention_propagate_size": 2},
        {"attention_foreground": "known"},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        GeneratorConfig(**kwargs)


def test_input_validation():
    g = Generator(GeneratorConfig(channels=8, contextual_attention=False))
    with pytest.raises(ValueError, match="multiple of 8"):
        g(torch.zeros(1, 3, 60, 64), torch.zeros(1, 1, 60, 64))
    with pytest.raises(ValueError, match="mask must be"):
        g(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="image must be"):
        g(torch.zeros(1, 4, 64, 64), torch.zeros(1, 1, 64, 64))


def test_gen_conv_matches_reference():
    """GenConv == numpy reflect padding + unpadded conv + ELU (and replicate when too small)."""
    torch.manual_seed(5)
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    for kernel, stride, dilation in [(5, 1, 1), (3, 2, 1), (3, 1, 2), (3, 1, 4)]:
        layer = GenConv(3, 4, kernel, stride=stride, dilation=dilation).double()
        pad = dilation * (kernel - 1) // 2
        np_mode = "reflect" if pad < 9 else "edge"
        padded = torch.from_numpy(
            np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode=np_mode)
        )
        expected = F.elu(
            F.conv2d(padded, layer.conv.weight, layer.conv.bias, stride=stride, dilation=dilation)
        )
        torch.testing.assert_close(layer(x), expected)
        assert layer(x).shape[-2:] == (-(-9 // stride), -(-11 // stride))


def test_mirror_pad_falls_back_to_replicate():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.testing.assert_close(mirror_pad(x, 2), F.pad(x, (2, 2, 2, 2), mode="reflect"))
    torch.testing.assert_close(mirror_pad(x, 4), F.pad(x, (4, 4, 4, 4), mode="replicate"))
    assert mirror_pad(x, 0) is x


def test_pad_exactly_keeps_bf16_under_cpu_autocast():
    """CPU autocast runs F.pad's reflect/replicate in fp32; pad_exactly keeps the dtype and values."""
    x = torch.randn(2, 3, 6, 7).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for mode in ("reflect", "replicate"):
            assert F.pad(x, (2, 2, 1, 1), mode=mode).dtype == torch.float32  # why it exists
            padded = pad_exactly(x, (2, 2, 1, 1), mode)
            assert padded.dtype == torch.bfloat16
            assert torch.equal(padded, F.pad(x.float(), (2, 2, 1, 1), mode=mode).bfloat16())


def test_bf16_forward_is_the_same_with_exact_pads(monkeypatch):
    """The full model under bf16 autocast gives bit-identical outputs and offsets whether its
    pads run in bf16 (pad_exactly) or, as autocast would, in fp32."""
    torch.manual_seed(7)
    generator = Generator(GeneratorConfig(channels=8)).eval()
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:40, 20:48] = 1

    def run():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return generator(image, mask, return_offsets=True)

    exact = run()
    for module in (layers, attention, stride1):
        monkeypatch.setattr(module, "pad_exactly", lambda x, p, m: F.pad(x, p, mode=m))
    through_fp32 = run()
    for name in ("coarse", "refined", "offsets"):
        assert torch.equal(getattr(exact, name), getattr(through_fp32, name)), name


@pytest.mark.parametrize("size", [(1, 1), (1, 3), (5, 6), (8, 8)])
def test_gen_deconv_is_nearest_resize_then_mirror_padded_conv(size):
    """The sub-pixel computation == upsample by repetition, reflect pad 1, 3x3 conv, ELU."""
    torch.manual_seed(6)
    layer = GenDeconv(4, 3).double()
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    padded = torch.from_numpy(np.pad(up.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect"))
    conv = layer.conv.conv
    expected = F.elu(F.conv2d(padded, conv.weight, conv.bias))
    torch.testing.assert_close(layer(x), expected)


def bilinear_reference(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear resize with half-pixel centres, one output pixel at a time: output pixel
    o sits at input coordinate (o + 0.5) / 2 - 0.5, clamped to the first and last pixels."""
    n, c, h, w = x.shape
    out = torch.zeros(n, c, 2 * h, 2 * w, dtype=x.dtype)
    for oy in range(2 * h):
        y = min(max((oy + 0.5) / 2 - 0.5, 0.0), h - 1)
        y0 = int(np.floor(y))
        y1, fy = min(y0 + 1, h - 1), y - y0
        for ox in range(2 * w):
            x_ = min(max((ox + 0.5) / 2 - 0.5, 0.0), w - 1)
            x0 = int(np.floor(x_))
            x1, fx = min(x0 + 1, w - 1), x_ - x0
            out[:, :, oy, ox] = (
                (1 - fy) * (1 - fx) * x[:, :, y0, x0]
                + (1 - fy) * fx * x[:, :, y0, x1]
                + fy * (1 - fx) * x[:, :, y1, x0]
                + fy * fx * x[:, :, y1, x1]
            )
    return out


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (5, 6)])
def test_gen_deconv_bilinear_is_bilinear_resize_then_mirror_padded_conv(size):
    torch.manual_seed(6)
    layer = GenDeconv(4, 3, mode="bilinear").double()
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    up = bilinear_reference(x)
    padded = torch.from_numpy(np.pad(up.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect"))
    conv = layer.conv.conv
    expected = F.elu(F.conv2d(padded, conv.weight, conv.bias))
    torch.testing.assert_close(layer(x), expected)
    # Same parameters as the nearest resize's: one checkpoint loads into either.
    assert layer.state_dict().keys() == GenDeconv(4, 3).state_dict().keys()
    with pytest.raises(ValueError, match="mode must be one of"):
        GenDeconv(4, 3, mode="bicubic")


def test_upsample_option_reaches_both_decoders():
    torch.manual_seed(0)
    nearest = Generator(GeneratorConfig(channels=4))
    bilinear = Generator(GeneratorConfig(channels=4, upsample="bilinear"))
    bilinear.load_state_dict(nearest.state_dict())
    layers = [m for m in bilinear.modules() if isinstance(m, GenDeconv)]
    assert len(layers) == 4 and {m.mode for m in layers} == {"bilinear"}
    x, mask = torch.rand(1, 3, 32, 32) * 2 - 1, torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 8:20] = 1
    a, b = nearest(x, mask), bilinear(x, mask)
    assert not torch.allclose(a.coarse, b.coarse) and not torch.allclose(a.refined, b.refined)
    with pytest.raises(ValueError, match="upsample must be one of"):
        GeneratorConfig(upsample="area")


def test_parameter_fields_are_exactly_the_fields_that_change_the_parameters():
    """--init-from compares only PARAMETER_FIELDS; every other field must leave the weights'
    names and shapes as they are, and each listed field must change them."""
    base = GeneratorConfig(channels=4)
    other = {
        "channels": 6,
        "contextual_attention": False,
        "attention_rate": 1,
        "attention_stride": 2,
        "attention_softmax_scale": 5.0,
        "attention_propagate_size": 1,
        "attention_foreground": "all",
        "attention_paste": "tent",
        "upsample": "bilinear",
        "noise_inputs": True,
        "noise_gates": True,
    }
    assert set(other) == {f.name for f in dataclasses.fields(GeneratorConfig)}
    for name, value in other.items():
        # Gates need noise inputs to gate: they are compared against a generator with them.
        start = dataclasses.replace(base, noise_inputs=True) if name == "noise_gates" else base
        shapes = {k: v.shape for k, v in Generator(start).state_dict().items()}
        changed = Generator(dataclasses.replace(start, **{name: value})).state_dict()
        same = {k: v.shape for k, v in changed.items()} == shapes
        assert same == (name not in PARAMETER_FIELDS), name


def test_fields_blocking_init_allow_adding_noise_inputs_and_gates_only():
    plain = GeneratorConfig(channels=4)
    noisy = dataclasses.replace(plain, noise_inputs=True)
    assert fields_blocking_init(plain, dataclasses.replace(plain, upsample="bilinear")) == []
    assert fields_blocking_init(plain, noisy) == []  # added strengths start at zero
    assert fields_blocking_init(noisy, plain) == ["noise_inputs"]  # dropping them would not
    gated = dataclasses.replace(noisy, noise_gates=True)
    assert fields_blocking_init(plain, gated) == []  # added gates start at one
    assert fields_blocking_init(noisy, gated) == []
    assert fields_blocking_init(gated, noisy) == ["noise_gates"]
    wider = dataclasses.replace(noisy, channels=6, contextual_attention=False)
    assert fields_blocking_init(plain, wider) == ["channels", "contextual_attention"]


def test_gen_deconv_gradcheck():
    torch.manual_seed(7)
    layer = GenDeconv(2, 2).double()
    x = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_attention_foreground_option_reaches_the_layer_and_keeps_known_features():
    """Modes "hole" (default) and "all" share every weight; they differ only off the hole."""
    torch.manual_seed(0)
    hole_model = Generator(GeneratorConfig(channels=8)).eval()
    all_model = Generator(GeneratorConfig(channels=8, attention_foreground="all")).eval()
    assert hole_model.refine.attention.attention.foreground == "hole"
    assert all_model.refine.attention.attention.foreground == "all"
    assert sum(p.numel() for p in hole_model.parameters()) == sum(
        p.numel() for p in all_model.parameters()
    )
    all_model.load_state_dict(hole_model.state_dict())
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = (inputs[0], output)

        return hook

    hole_model.refine.attention.attention.register_forward_hook(record("hole"))
    all_model.refine.attention.attention.register_forward_hook(record("all"))
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 16:40, 20:36] = 1
    mask[1, :, 40:56, 8:24] = 1
    with torch.no_grad():
        hole_out = hole_model(image, mask)
        all_out = all_model(image, mask)
    features, hole_attended = seen["hole"]
    _, all_attended = seen["all"]
    hole = torch.nn.functional.interpolate(mask, size=features.shape[-2:]).expand_as(features) > 0.5
    assert torch.equal(hole_attended[~hole], features[~hole])
    torch.testing.assert_close(hole_attended[hole], all_attended[hole])
    assert not torch.allclose(hole_attended[~hole], all_attended[~hole])
    torch.testing.assert_close(hole_out.coarse, all_out.coarse)  # stage one has no attention


def test_layers_start_like_the_authors_tensorflow_code():
    """Glorot-uniform weights, zero biases (tf.layers.conv2d's defaults), on every layer."""
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(channels=8))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == sum(isinstance(m, GenConv) for m in model.modules())  # one each
    for conv in convs:
        out_channels, in_channels, kh, kw = conv.weight.shape
        bound = (6.0 / (in_channels * kh * kw + out_channels * kh * kw)) ** 0.5
        assert conv.weight.abs().max() <= bound
        # A uniform sample of this size fills most of its range: Kaiming's a=sqrt(5) would not.
        assert conv.weight.abs().max() > 0.8 * bound
        assert torch.count_nonzero(conv.bias) == 0


def test_input_reaches_the_output_at_initialisation():
    """The coarse network's 17 plain ELU layers keep the signal at init (not PyTorch's default).

    With Kaiming-uniform(a=sqrt(5)) the last dilated layer's activations shrink to std ~0.02
    and the first layer's relative gradient to ~1e-6; with Glorot they stay ~0.1 and ~1e-1.
    """
    torch.manual_seed(0)
    model = Generator()
    stds: list[float] = []
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out: stds.append(float(out.detach().std())))
        for layer in model.coarse.encoder
    ]
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 20:44, 20:44] = 1
    out = model(image, mask)
    for hook in hooks:
        hook.remove()
    assert min(stds) > 0.05, stds
    (out.coarse - image).abs().mean().backward()
    first = model.coarse.encoder[0].conv.weight
    assert float(first.grad.norm() / first.detach().norm()) > 1e-3
