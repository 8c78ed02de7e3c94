"""PatchMatch guided by a network's fill: the guide sets the layout, the known region the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inpaintkit.checkpoint import save_generator
from inpaintkit.methods import DeepFillMethod, MeanColorMethod
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.patchmatch import patchmatch_inpaint
from inpaintkit.patchmatch.inpaint import guide_levels
from inpaintkit.patchmatch.pyramid import downsample
from inpaintkit.tensors import image_to_tensor, mask_to_tensor, tensor_to_image
from inpaintkit.texture import GuidedPatchMatchMethod


def two_textures(seed: int = 0) -> np.ndarray:
    """(48, 64, 3) uint8: noisy red on the left half, noisy blue on the right."""
    rng = np.random.default_rng(seed)
    image = np.zeros((48, 64, 3), dtype=np.float64)
    image[:, :32] = (190, 40, 40)
    image[:, 32:] = (40, 40, 190)
    return np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)


def red_share(pixels: np.ndarray) -> float:
    return float((pixels[:, 0] > pixels[:, 2]).mean())


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_the_guide_sets_the_layout_and_the_known_region_the_pixels(levels):
    image = two_textures()
    hole = np.zeros(image.shape[:2], dtype=bool)
    hole[12:36, 20:44] = True  # straddles the red/blue edge
    # A guide that says the whole hole is red: the unguided fill continues both sides.
    guide = np.where(hole[..., None], np.array([190.0, 40.0, 40.0]), image.astype(np.float64))
    unguided = patchmatch_inpaint(image, hole, patch_size=3, levels=levels, vote="best")
    guided = patchmatch_inpaint(image, hole, patch_size=3, levels=levels, vote="best", guide=guide)
    assert 0.3 < red_share(unguided[hole]) < 0.7
    # Near the hole's blue side, patches that overlap the known blue pixels rightly stay blue.
    assert red_share(guided[hole]) > 0.85
    np.testing.assert_array_equal(guided[~hole], image[~hole])
    # Best-patch voting at the finest level: every filled pixel is a known pixel's value.
    known = {tuple(p) for p in image[~hole]}
    assert all(tuple(p) in known for p in guided[hole])


def test_guide_levels_are_the_pyramids_two_by_two_means():
    rng = np.random.default_rng(1)
    guide = rng.uniform(0, 255, (9, 14, 3))
    levels = guide_levels(guide, 3)
    assert [level.shape for level in levels] == [(9, 14, 3), (5, 7, 3), (3, 4, 3)]
    # Plain 2x2 block means, the last row and column repeated on odd sides.
    padded = np.pad(guide, ((0, 1), (0, 0), (0, 0)), mode="edge")
    np.testing.assert_allclose(
        levels[1], padded.reshape(5, 2, 7, 2, 3).mean(axis=(1, 3)), rtol=1e-5
    )
    np.testing.assert_allclose(levels[2], downsample(levels[1], np.zeros((5, 7), bool))[0])
    with pytest.raises(ValueError, match="guide must have the image's shape"):
        patchmatch_inpaint(guide.astype(np.uint8), np.eye(9, 14, dtype=bool), guide=guide[:8])


def test_guided_method_keeps_known_pixels_and_names_its_settings(tmp_path):
    image = two_textures(seed=2)
    hole = np.zeros(image.shape[:2], dtype=bool)
    hole[5:20, 40:60] = True
    images = image_to_tensor(np.stack([image, image[:, ::-1].copy()]))
    masks = mask_to_tensor(np.stack([hole, np.zeros_like(hole)]))
    method = GuidedPatchMatchMethod(MeanColorMethod(), levels=2, patch_size=3)
    out = method(images, masks)
    assert out.shape == images.shape
    filled = tensor_to_image(out)
    np.testing.assert_array_equal(filled[0][~hole], image[~hole])
    np.testing.assert_array_equal(filled[1], image[:, ::-1])  # no hole: the input
    assert not np.array_equal(
        filled[0][hole], tensor_to_image(MeanColorMethod()(images, masks))[0][hole]
    )
    # The same inputs and seed give the same fill.
    torch.testing.assert_close(method(images, masks), out, rtol=0, atol=0)

    save_generator(tmp_path / "tiny.safetensors", Generator(GeneratorConfig(channels=4)))
    network = DeepFillMethod(tmp_path / "tiny.safetensors", device="cpu", precision="fp32")
    guided = GuidedPatchMatchMethod(network)
    settings = guided.settings()
    assert settings["checkpoint_sha256"] == network.settings()["checkpoint_sha256"]
    assert settings["texture"] == "patchmatch" and settings["network"] == "deepfill"
    assert guided.name == "deepfill+patchmatch"
    filled, offsets = guided.fill_with_offsets(images[:, :, :32, :32], masks[:, :, :32, :32])
    assert offsets is not None and offsets.shape[:2] == (2, 2)
    with pytest.raises(ValueError, match="levels"):
        GuidedPatchMatchMethod(network, levels=0)


@pytest.mark.parametrize("texture", ["patchmatch", "transfer"])
def test_fill_and_evaluate_offer_the_guided_texture(tmp_path, invoke, texture):
    from PIL import Image

    from inpaintkit.evaluate import build_methods
    from inpaintkit.evaluate_options import EvaluateError

    checkpoint = tmp_path / "tiny.safetensors"
    save_generator(checkpoint, Generator(GeneratorConfig(channels=4)))
    image = two_textures(seed=3)
    hole = np.zeros(image.shape[:2], dtype=bool)
    hole[10:30, 24:40] = True
    Image.fromarray(image).save(tmp_path / "photo.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    result = invoke(
        "fill", tmp_path / "photo.png", "--masks", tmp_path / "mask.png",
        "-o", tmp_path / "out.png", "--checkpoint", checkpoint, "--texture", texture,
        "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    filled = np.asarray(Image.open(tmp_path / "out.png"))
    np.testing.assert_array_equal(filled[~hole], image[~hole])
    if texture == "patchmatch":  # the transfer adds copied detail to the network's low-pass
        known = {tuple(p) for p in image[~hole]}
        assert all(tuple(p) in known for p in filled[hole])  # copied, not predicted
    refused = invoke(
        "fill", tmp_path / "photo.png", "--masks", tmp_path / "mask.png",
        "-o", tmp_path / "pm.png", "--method", "patchmatch", "--texture", texture,
    )  # fmt: skip
    assert refused.exit_code == 2 and f"--texture {texture} needs a network" in refused.output

    rows = build_methods(
        [("tiny", checkpoint)], floors=False, device="cpu", textures=("network", texture)
    )
    assert list(rows) == ["tiny", f"tiny+{texture}"]
    assert rows[f"tiny+{texture}"].network is rows["tiny"]
    with pytest.raises(EvaluateError, match="textures must be some of"):
        build_methods([("tiny", checkpoint)], textures=("photo",))


def test_memory_budget_costs_a_guided_chain_by_its_largest_part():
    from inpaintkit.memory import fill_need

    size, work = (3000, 4000), (768, 1024)
    for network in ("deepfill", "deepfill-onnx"):
        assert fill_need(size, work, f"{network}+patchmatch") == fill_need(size, work, network)
    assert fill_need(size, work, "mean-color+patchmatch") == fill_need(size, work, "patchmatch")
    # The transfer has a measured cost of its own, not the unknown method's (DeepFill's).
    assert fill_need(size, work, "deepfill+transfer") == fill_need(size, work, "deepfill")
    assert fill_need(size, work, "mean-color+transfer") < fill_need(size, work, "deepfill")
