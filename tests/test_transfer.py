"""Texture transfer: the guide's low-pass kept, the photo's detail copied in above it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from test_texture import red_share, two_textures

from inpaintkit.checkpoint import save_generator
from inpaintkit.methods import DeepFillMethod
from inpaintkit.metrics import hole_tv
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.patchmatch import patchmatch_inpaint
from inpaintkit.patchmatch.transfer import copy_detail, low_pass, texture_transfer
from inpaintkit.tensors import image_to_tensor, mask_to_tensor, tensor_to_image
from inpaintkit.texture import TextureTransferMethod


def brick_with_hole() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """skimage's brick wall (96², RGB), a 32² hole, and its 4 px low-pass: a mean predictor's
    blur (the network's fills keep about 0.4 of the photo's hole TV, as this does)."""
    image = np.repeat(data.brick()[:96, :96, None], 3, axis=2)
    hole = np.zeros(image.shape[:2], dtype=bool)
    hole[32:64, 40:72] = True
    return image, hole, low_pass(image.astype(np.float32), 4.0)


def tv_ratio(filled: np.ndarray, image: np.ndarray, hole: np.ndarray) -> float:
    def tv(pixels):
        return hole_tv(torch.from_numpy(pixels / 255.0).permute(2, 0, 1)[None].float(), masks)

    masks = torch.from_numpy(hole)[None, None].float()
    return float(tv(filled) / tv(image))


def hole_psnr(filled: np.ndarray, image: np.ndarray, hole: np.ndarray) -> float:
    error = (filled[hole].astype(np.float64) - image[hole]) / 255.0
    return float(10 * np.log10(1 / np.mean(error**2)))


def test_transfer_restores_the_detail_a_blurry_guide_lost_and_keeps_its_layout():
    image, hole, blurred = brick_with_hole()
    guide = np.where(hole[..., None], blurred, image)
    out = texture_transfer(image, hole, guide)
    # Guided PatchMatch compares the blurry guide with sharp patches, so it picks the flattest
    # and loses even the guide's PSNR; the transfer matches on the low-pass and copies detail.
    guided = patchmatch_inpaint(image, hole, levels=2, vote="best", guide=guide)
    assert tv_ratio(guide, image, hole) < 0.45
    assert tv_ratio(out, image, hole) > 0.9
    assert tv_ratio(out, image, hole) > tv_ratio(guided, image, hole) + 0.4
    assert hole_psnr(out, image, hole) > hole_psnr(guide, image, hole)
    assert hole_psnr(out, image, hole) > hole_psnr(guided, image, hole) + 1.0
    # The layout is the guide's: below sigma the fill is the guide, up to the copies' leakage.
    inside = np.zeros_like(hole)
    inside[38:58, 46:66] = True
    structure = low_pass(guide.astype(np.float32), 2.0)
    assert np.abs(low_pass(out.astype(np.float32), 2.0) - structure)[inside].mean() < 4.0
    np.testing.assert_array_equal(out[~hole], image[~hole])


def test_the_guides_colour_picks_where_the_detail_comes_from():
    image = two_textures()
    hole = np.zeros(image.shape[:2], dtype=bool)
    hole[12:36, 20:44] = True  # straddles the red/blue edge
    guide = np.where(hole[..., None], np.array([190.0, 40.0, 40.0]), image.astype(np.float64))
    out = texture_transfer(image, hole, guide, patch_size=3)
    assert red_share(out[hole]) > 0.9
    # The noise is the photo's (std 12 per channel), not the guide's flat red.
    detail = out.astype(np.float32) - low_pass(out.astype(np.float32), 2.0)
    assert detail[hole][:, 0].std() > 6.0


def test_copied_detail_is_known_detail_and_the_fill_is_reproducible():
    image, hole, blurred = brick_with_hole()
    pixels = np.where(hole[..., None], blurred, image).astype(np.float32)
    structure = low_pass(pixels, 2.0)
    photo_detail = pixels - structure
    copies = copy_detail(photo_detail, hole, structure, 2, 0.5, 3, seed=0)
    known = {tuple(p) for p in photo_detail[~hole]}
    assert all(tuple(p) in known for p in copies[hole])
    np.testing.assert_array_equal(copies[~hole], photo_detail[~hole])
    first = texture_transfer(image, hole, pixels, seed=3)
    np.testing.assert_array_equal(texture_transfer(image, hole, pixels, seed=3), first)
    gray = texture_transfer(image[..., 0], hole, pixels[..., 0])
    assert gray.shape == image.shape[:2] and gray.dtype == np.uint8


def test_seams_between_copies_add_no_detail_the_photo_lacks():
    # Two textures of very different brightness and a hole across their edge: copying pixels
    # and then high-passing the mosaic turned each seam between a dark and a bright copy into
    # an edge stronger than any in the photo (the specks on faces); copied detail cannot.
    image = two_textures()
    hole = np.zeros(image.shape[:2], dtype=bool)
    hole[12:36, 20:44] = True
    guide = low_pass(image.astype(np.float32), 4.0)
    out = texture_transfer(image, hole, guide).astype(np.float32)
    first_guess = np.where(hole[..., None], guide, image).astype(np.float32)
    structure = low_pass(first_guess, 2.0)
    largest_known = np.abs(first_guess - structure)[~hole].max()
    assert np.abs(out - structure)[hole].max() <= largest_known + 0.5  # + uint8 rounding


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"guide": np.zeros((5, 5, 3))}, "guide must have the image's shape"),
        ({"mask": np.ones((96, 96), bool)}, "covers the whole image"),
        ({"patch_size": 4}, "patch_size must be a positive odd integer"),
        ({"sigma": 0.0}, "need sigma > 0"),
    ],
)
def test_bad_arguments_are_named(change, message):
    image, hole, blurred = brick_with_hole()
    arguments = {"image": image, "mask": hole, "guide": blurred, **change}
    with pytest.raises(ValueError, match=message):
        texture_transfer(**arguments)


def test_transfer_method_keeps_known_pixels_and_names_its_settings(tmp_path):
    checkpoint = tmp_path / "tiny.safetensors"
    save_generator(checkpoint, Generator(GeneratorConfig(channels=4)))
    network = DeepFillMethod(checkpoint, device="cpu", precision="fp32")
    method = TextureTransferMethod(network)
    assert method.name == "deepfill+transfer"
    settings = method.settings()
    assert settings["texture"] == "transfer" and settings["sigma"] == "2.0"
    assert settings["checkpoint_sha256"] == network.settings()["checkpoint_sha256"]

    image = two_textures(seed=3)
    hole = np.zeros(image.shape[:2], dtype=bool)
    hole[10:30, 24:40] = True
    filled, offsets = method.fill_with_offsets(
        image_to_tensor(image[None]), mask_to_tensor(hole[None])
    )
    assert offsets is not None
    np.testing.assert_array_equal(tensor_to_image(filled)[0][~hole], image[~hole])
