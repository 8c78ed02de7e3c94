"""ONNX export (inpaintkit.export, ``inpaintkit export``) and the onnxruntime fill (inpaintkit.onnx_method).

One small generator is exported once per module; every parity test runs that one file at
other sizes and batch sizes than it was traced with, so a size frozen into the graph fails.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from skimage import data

from inpaintkit.checkpoint import save_generator
from inpaintkit.export import MIN_SIDE, OUTPUT_NAMES, WholeGridAttention, export_onnx
from inpaintkit.io import is_temporary, read_mask, read_rgb
from inpaintkit.memory import MemoryBudgetError, check_fill, fill_need, largest_working_side
from inpaintkit.methods import DeepFillMethod
from inpaintkit.metrics import psnr
from inpaintkit.model.attention import ContextualAttention
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.model.noise import GATE_GAIN
from inpaintkit.onnx_method import OnnxGenerator, OnnxMethod
from inpaintkit.tensors import image_to_tensor, mask_to_tensor, signed_to_unit

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def boxed(n: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images in [-1, 1] and one random rectangular hole per sample."""
    rng = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, height, width, generator=rng) * 2 - 1
    masks = torch.zeros(n, 1, height, width)
    for i in range(n):
        top = int(torch.randint(0, height // 2, (1,), generator=rng))
        left = int(torch.randint(0, width // 2, (1,), generator=rng))
        masks[i, :, top : top + height // 3, left : left + width // 3] = 1.0
    return images, masks


def hole_relative_error(ours: torch.Tensor, reference: torch.Tensor, masks: torch.Tensor) -> float:
    hole = masks.expand_as(reference) > 0.5
    return float((ours - reference)[hole].abs().max() / reference[hole].abs().max())


def export_fresh(generator: Generator, folder: Path) -> Path:
    """Save ``generator`` as a checkpoint in ``folder`` and export it -> the ONNX file."""
    checkpoint, model = folder / "fresh.safetensors", folder / "fresh.onnx"
    save_generator(checkpoint, generator)
    export_onnx(model, checkpoint)
    return model


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Generator, Path, Path]:
    """``(generator, its checkpoint, its export)``: a 4-channel generator, seeded."""
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(channels=4)).eval()
    folder = tmp_path_factory.mktemp("onnx")
    checkpoint = folder / "small.safetensors"
    save_generator(checkpoint, generator)
    model = folder / "small.onnx"
    export_onnx(model, checkpoint)
    return generator, checkpoint, model


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"foreground": "all"},
        {"stride": 2},
        {"propagate_size": 1, "fuse": False},
        {"rate": 1},
        {"paste": "tent"},
        {"paste": "tent", "stride": 2},
        {"paste": "tent", "foreground": "all", "rate": 1},
    ],
)
def test_whole_grid_attention_matches_the_layer(options):
    layer = ContextualAttention(**options)
    rng = torch.Generator().manual_seed(1)
    features = torch.randn(2, 6, 20, 24, generator=rng)
    mask = torch.zeros(2, 1, 80, 96)
    mask[0, :, 12:40, 20:52] = 1.0  # one hole each, in different places
    mask[1, :, 48:76, 60:90] = 1.0
    expected = layer(features, features, mask)
    ours = WholeGridAttention(layer)(features, features, mask)
    error = (ours - expected).abs().max() / expected.abs().max()
    assert error <= 1e-5, error  # float rounding: other summation orders


def test_export_has_dynamic_axes_and_its_metadata(small):
    _, checkpoint, model_path = small
    model = onnx.load(str(model_path))
    onnx.checker.check_model(model, full_check=True)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims[:1] + dims[2:]] == ["batch", "height", "width"]
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    assert model.opset_import[0].version >= 17
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert "1 = hole" in meta["convention.mask"] and "[-1, 1]" in meta["convention.image"]
    assert (meta["multiple"], meta["min_side"]) == ("8", str(MIN_SIDE))
    assert not [p for p in model_path.parent.iterdir() if is_temporary(p)]


@pytest.mark.parametrize(("n", "height", "width"), [(1, 80, 104), (3, 128, 96)])
def test_onnx_matches_pytorch_on_the_hole(small, n, height, width):
    """Other sizes and batch sizes than the export traced (2 x 80 x 80): one file for all."""
    generator, _, model = small
    images, masks = boxed(n, height, width, seed=height)
    with torch.no_grad():
        expected = generator(images, masks)
    ours = OnnxGenerator(model)(images, masks)
    assert ours.refined.shape == expected.refined.shape
    assert hole_relative_error(ours.refined, expected.refined, masks) <= 1e-4
    assert hole_relative_error(ours.coarse, expected.coarse, masks) <= 1e-4


@pytest.mark.parametrize("option", [{"attention_paste": "tent"}, {"upsample": "bilinear"}])
def test_onnx_matches_pytorch_with_parameter_free_options(tmp_path, option):
    """The paste's window and the decoders' resize travel with the checkpoint's config into
    the exported graph."""
    torch.manual_seed(1)
    generator = Generator(GeneratorConfig(channels=4, **option)).eval()
    model = export_fresh(generator, tmp_path)
    images, masks = boxed(2, 96, 88, seed=7)
    with torch.no_grad():
        expected = generator(images, masks)
        default = Generator(GeneratorConfig(channels=4)).eval()
        default.load_state_dict(generator.state_dict())
        default_output = default(images, masks)
    ours = OnnxGenerator(model)(images, masks)
    assert hole_relative_error(ours.refined, expected.refined, masks) <= 1e-4
    # ...and it is not the default's output (the test would pass for a default-only export).
    assert hole_relative_error(default_output.refined, expected.refined, masks) > 1e-3


@pytest.mark.parametrize("gated", [False, True])
def test_onnx_matches_pytorch_with_noise_inputs(tmp_path, gated):
    """The eval-mode noise (a fixed field, tiled, and gated when it has gates) is in the graph
    at every size."""
    torch.manual_seed(2)
    config = GeneratorConfig(channels=4, noise_inputs=True, noise_gates=gated)
    generator = Generator(config).eval()
    for strength in generator.refine.noise.strengths:
        strength.data.fill_(0.5)
    for gate in generator.refine.noise.gates or ():
        gate.weight.data.normal_(0.0, 1.0 / GATE_GAIN)  # logits of order 1: a lost gate shows
    model = export_fresh(generator, tmp_path)
    images, masks = boxed(2, 96, 88, seed=8)
    with torch.no_grad():
        expected = generator(images, masks)
        generator.refine.noise = None
        without = generator(images, masks)
    ours = OnnxGenerator(model)(images, masks)
    assert hole_relative_error(ours.refined, expected.refined, masks) <= 1e-4
    assert hole_relative_error(without.refined, expected.refined, masks) > 1e-3


def test_onnx_method_fills_like_deepfill_fp32(small):
    """The method (inpaint's padding to 8, Poisson blending) at an odd size, and below MIN_SIDE."""
    _, checkpoint, model = small
    images, masks = boxed(2, 90, 101, seed=5)
    torch_method = DeepFillMethod(checkpoint, device="cpu", precision="fp32")
    onnx_method = OnnxMethod(model)
    expected, ours = torch_method(images, masks), onnx_method(images, masks)
    assert torch.equal(ours[masks.expand_as(ours) == 0], images[masks.expand_as(images) == 0])
    assert hole_relative_error(ours, expected, masks) <= 1e-4
    tiny_images, tiny_masks = boxed(1, 40, 56, seed=6)  # edge-padded to 72, cropped back
    tiny = onnx_method(tiny_images, tiny_masks)
    assert tiny.shape == tiny_images.shape and torch.isfinite(tiny).all()


def test_default_model_fills_the_examples_alike_in_both_runtimes(tmp_path):
    """Hole PSNR of the packaged model, PyTorch fp32 against onnxruntime, within 0.05 dB.

    Two of the four example photos (the smaller ones), so the test stays short.
    """
    model = tmp_path / "default.onnx"
    export_onnx(model)
    runtimes = DeepFillMethod(device="cpu", precision="fp32"), OnnxMethod(model)
    for stem in ("camera", "coffee"):
        truth = image_to_tensor(read_rgb(next((EXAMPLES / "images").glob(f"{stem}.*"))))
        mask = mask_to_tensor(read_mask(EXAMPLES / "masks" / f"{stem}.png"))
        erased = truth * (1 - mask)
        scores = [
            float(psnr(signed_to_unit(method(erased, mask)), signed_to_unit(truth), mask))
            for method in runtimes
        ]
        assert abs(scores[0] - scores[1]) <= 0.05, (stem, scores)


def test_cli_export_and_fill_with_onnxruntime(small, invoke, tmp_path):
    _, checkpoint, _ = small
    model = tmp_path / "cli.onnx"
    result = invoke("export", "--checkpoint", checkpoint, "-o", model)
    assert result.exit_code == 0, result.output
    assert model.is_file() and "multiples of 8" in result.stdout
    picture = np.ascontiguousarray(data.astronaut()[100:196, 150:238])  # 96 x 88
    hole = np.zeros(picture.shape[:2], bool)
    hole[30:60, 20:50] = True
    Image.fromarray(picture).save(tmp_path / "in.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "hole.png")
    outputs = {}
    for runtime, extra in [
        ("torch", ("--checkpoint", checkpoint, "--precision", "fp32")),
        ("onnxruntime", ("--onnx", model)),
    ]:
        out = tmp_path / f"{runtime}.png"
        args = ("fill", tmp_path / "in.png", "-m", tmp_path / "hole.png", "-o", out)
        result = invoke(*args, "--runtime", runtime, *extra, "--quiet")
        assert result.exit_code == 0, result.output
        outputs[runtime] = read_rgb(out).astype(int)
    assert np.array_equal(outputs["onnxruntime"][~hole], picture[~hole])
    assert np.abs(outputs["onnxruntime"] - outputs["torch"]).max() <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--runtime", "onnxruntime"), "needs --onnx"),
        (("--onnx", "{model}"), "--onnx needs --runtime onnxruntime"),
        (("--runtime", "onnxruntime", "--onnx", "{model}", "--attention", "att"), "--attention"),
        (("--runtime", "onnxruntime", "--onnx", "{model}", "--method", "patchmatch"), "deepfill"),
    ],
)
def test_fill_refuses_what_onnxruntime_cannot_do(small, invoke, tmp_path, args, message):
    _, _, model = small
    args = [str(a).format(model=model) for a in args]
    result = invoke("fill", EXAMPLES / "images", "-m", EXAMPLES / "masks", "-o", tmp_path, *args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_missing_onnxruntime_is_one_line(small, invoke, tmp_path, monkeypatch):
    _, _, model = small
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    args = ("-m", EXAMPLES / "masks", "-o", tmp_path / "out", "--runtime", "onnxruntime")
    result = invoke("fill", EXAMPLES / "images", *args, "--onnx", model)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: --runtime onnxruntime needs the onnxruntime package: pip install 'inpaintkit[onnx]'"
    )


def test_a_file_that_is_not_an_export_is_refused(small, tmp_path):
    _, checkpoint, _ = small
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.onnx: not a loadable ONNX model"):
        OnnxMethod(junk)
    other = tmp_path / "other.onnx"  # a valid ONNX model, not ours
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), str(other))
    with pytest.raises(ValueError, match="other.onnx: not an `inpaintkit export` model"):
        OnnxMethod(other)


def test_the_memory_budget_counts_the_whole_grid_squared():
    """The exported attention's memory grows with the area squared (11.9 GiB at 1024²)."""
    name, budget, photo = OnnxMethod.name, 8 * 2**30, (2048, 2048)

    def need(side: int) -> int:
        return fill_need(photo, (side, side), name)

    assert need(1024) - need(512) > 8 * (need(512) - need(256))  # not linear in the pixels
    assert need(1024) > 4 * fill_need(photo, (1024, 1024), "deepfill")
    with pytest.raises(MemoryBudgetError, match="--max-size"):
        check_fill(photo, photo, name, budget)
    side = largest_working_side(photo, name, budget)
    assert need(side) <= budget < need(side + 8)


def test_an_onnx_fill_leaves_the_callers_subnormal_floats_alone(small):
    # onnxruntime's denormal-as-zero option flushes subnormals on the thread that creates the
    # session; OnnxGenerator confines it to a thread of its own. (Before: hypothesis's float
    # strategies refused to run in the same pytest process.)
    smallest_normal = 2.2250738585072014e-308
    method = OnnxMethod(small[2], blend="none")
    images = torch.zeros(1, 3, 80, 80)
    masks = torch.zeros(1, 1, 80, 80)
    masks[..., 20:40, 20:40] = 1
    method(images, masks)
    assert smallest_normal / 2 > 0
