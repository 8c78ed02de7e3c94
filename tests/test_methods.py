"""Tests for inpaintkit.methods: the one interface fill and evaluate call."""

from __future__ import annotations

import pytest
import torch

import inpaintkit.checkpoint
import inpaintkit.methods
from inpaintkit.blend import poisson_blend
from inpaintkit.checkpoint import NO_DEFAULT_MODEL, CheckpointError, save_generator
from inpaintkit.devices import resolve_device
from inpaintkit.methods import (
    BiharmonicMethod,
    DeepFillMethod,
    MeanColorMethod,
    PatchMatchMethod,
)
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.patchmatch import patchmatch_inpaint
from inpaintkit.tensors import image_to_tensor, tensor_to_image


def random_batch(
    n: int = 2, h: int = 12, w: int = 10, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, h, w, generator=g) * 2 - 1
    masks = (torch.rand(n, 1, h, w, generator=g) < 0.3).float()
    return images, masks


def known(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return images[masks.expand_as(images) == 0]


# --------------------------------------------------------------------------- floors


def mean_color_reference(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    out = images.clone()
    for i in range(images.shape[0]):
        known_pixels = [
            (y, x)
            for y in range(images.shape[2])
            for x in range(images.shape[3])
            if masks[i, 0, y, x] == 0
        ]
        for c in range(3):
            values = [float(images[i, c, y, x]) for y, x in known_pixels]
            mean = sum(values) / len(values) if values else 0.0
            for y in range(images.shape[2]):
                for x in range(images.shape[3]):
                    if masks[i, 0, y, x] == 1:
                        out[i, c, y, x] = mean
    return out


def test_mean_color_matches_plain_loops() -> None:
    images, masks = random_batch()
    masks[1] = 1.0  # a sample with no known pixel gets mid-grey
    out = MeanColorMethod()(images, masks)
    torch.testing.assert_close(out, mean_color_reference(images, masks), atol=1e-5, rtol=0)
    assert torch.equal(known(out, masks), known(images, masks))


def test_biharmonic_reproduces_a_linear_ramp_and_keeps_known_pixels() -> None:
    # A linear function is biharmonic, so the solver must continue it exactly into the hole.
    h, w = 16, 20
    ys, xs = torch.meshgrid(
        torch.linspace(-0.8, 0.8, h), torch.linspace(-0.5, 0.9, w), indexing="ij"
    )
    ramp = torch.stack([ys, xs, (ys + xs) / 2])[None]
    images = torch.cat([ramp, random_batch(1, h, w)[0]])
    masks = torch.zeros(2, 1, h, w)
    masks[:, :, 5:11, 6:14] = 1
    out = BiharmonicMethod()(images, masks)
    torch.testing.assert_close(out[0], ramp[0], atol=1e-4, rtol=0)
    assert torch.equal(known(out, masks), known(images, masks))
    assert not torch.equal(out[1], images[1])


@pytest.mark.parametrize("method", [MeanColorMethod(), BiharmonicMethod()])
def test_floors_accept_empty_and_full_masks(method) -> None:
    images, _ = random_batch(2, 8, 8)
    masks = torch.zeros(2, 1, 8, 8)
    masks[1] = 1
    out = method(images, masks)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(out[0], images[0])
    assert out.min() >= -1 and out.max() <= 1


def test_methods_reject_bad_shapes() -> None:
    images, masks = random_batch()
    with pytest.raises(ValueError, match="masks must be"):
        MeanColorMethod()(images, masks[:, :, :-1])
    with pytest.raises(ValueError, match="images must be"):
        MeanColorMethod()(images[:, :2], masks)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# --------------------------------------------------------------------------- PatchMatch


def test_patchmatch_method_is_patchmatch_inpaint_per_sample() -> None:
    images, masks = random_batch(2, 16, 14, seed=3)
    masks[0] = 0  # nothing to fill: returned as is
    out = PatchMatchMethod(patch_size=3, seed=5)(images, masks)
    assert PatchMatchMethod.name == "patchmatch"
    assert torch.equal(out[0], images[0])
    expected = patchmatch_inpaint(
        tensor_to_image(images)[1], masks[1, 0].numpy() > 0.5, patch_size=3, seed=5
    )
    hole = masks[1].expand(3, -1, -1) > 0
    assert torch.equal(out[1][hole], image_to_tensor(expected)[0][hole])
    assert torch.equal(known(out, masks), known(images, masks))  # bit-exact, not via uint8


# --------------------------------------------------------------------------- DeepFill


def test_no_default_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inpaintkit.checkpoint, "default_checkpoint", lambda: None)
    with pytest.raises(CheckpointError) as info:
        DeepFillMethod(None, device="cpu")
    assert str(info.value) == NO_DEFAULT_MODEL
    assert "--checkpoint" in NO_DEFAULT_MODEL and "--method patchmatch" in NO_DEFAULT_MODEL


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(channels=4)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_generator(path, generator)
    return path, generator


def deepfill_reference(
    generator: Generator, images: torch.Tensor, masks: torch.Tensor, blend: str = "none"
) -> torch.Tensor:
    """Plainly: mirror-pad each sample to a multiple of 8, run, crop, paste into the holes
    (or Poisson-blend, itself tested against a dense solve in test_blend.py)."""
    out = images.clone()
    predictions = torch.empty_like(images)
    h, w = images.shape[2:]
    ph, pw = -h % 8, -w % 8
    for i in range(images.shape[0]):
        x = torch.nn.functional.pad(images[i : i + 1], (0, pw, 0, ph), mode="reflect")
        m = torch.nn.functional.pad(masks[i : i + 1], (0, pw, 0, ph), mode="reflect")
        with torch.no_grad():
            predictions[i] = generator(x, m).refined[0, :, :h, :w]
        hole = masks[i, 0] > 0.5
        out[i][:, hole] = predictions[i][:, hole]
    return poisson_blend(images, predictions, masks) if blend == "poisson" else out


@pytest.mark.parametrize("blend", ["poisson", "none"])
def test_deepfill_matches_the_generator_and_gives_offsets(tiny_checkpoint, blend) -> None:
    path, generator = tiny_checkpoint
    method = DeepFillMethod(path, device="cpu", precision="fp32", blend=blend)
    assert method.name == "deepfill"
    images, masks = random_batch(2, 21, 19, seed=1)
    out, offsets = method.fill_with_offsets(images, masks)
    expected = deepfill_reference(generator, images, masks, blend)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    if blend == "poisson":  # the blend is not the paste
        assert (out - deepfill_reference(generator, images, masks)).abs().max() > 0.01
    assert torch.equal(known(out, masks), known(images, masks))
    assert offsets.shape == (2, 2, 6, 5) and offsets.dtype == torch.long
    assert torch.equal(method(images, masks), out)


def test_deepfill_autocast_and_channels_last_keep_known_pixels(tiny_checkpoint) -> None:
    path, _ = tiny_checkpoint
    images, masks = random_batch(1, 16, 24, seed=2)
    reference = DeepFillMethod(path, device="cpu", precision="fp32", channels_last=False)(
        images, masks
    )
    fast = DeepFillMethod(path, device="cpu", precision="bf16", channels_last=True)(images, masks)
    assert fast.dtype == torch.float32
    assert torch.equal(known(fast, masks), known(images, masks))
    assert (fast - reference).abs().max() < 0.1  # bf16 keeps about 3 significant digits
    with pytest.raises(ValueError, match="precision must be one of"):
        DeepFillMethod(path, device="cpu", precision="fp8")


def test_auto_precision_is_bf16_only_where_the_device_has_it(tiny_checkpoint, monkeypatch) -> None:
    import inpaintkit.methods

    path, _ = tiny_checkpoint
    monkeypatch.setattr(inpaintkit.methods, "has_native_bf16", lambda device: True)
    assert DeepFillMethod(path, device="cpu").precision == "bf16"
    assert DeepFillMethod(path, device="cpu", precision="fp32").precision == "fp32"
    assert not DeepFillMethod(path, device="cpu").channels_last  # slower under CPU bf16
    monkeypatch.setattr(inpaintkit.methods, "has_native_bf16", lambda device: False)
    assert DeepFillMethod(path, device="cpu").precision == "fp32"
    assert DeepFillMethod(path, device="cpu").channels_last  # faster in CPU fp32
    assert not DeepFillMethod(path, device="cpu", channels_last=False).channels_last
