"""HD strategies: crop's boxes against a brute-force merge, auto's rule, bit-exact fills per box."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data
from skimage.measure import label
from test_serve import BASE, TestClient, fill_and_wait, png, upload

from inpaintkit.checkpoint import save_generator
from inpaintkit.cli.fill import fill_command
from inpaintkit.fill import fill_files
from inpaintkit.fill_options import FillError, FillOptions
from inpaintkit.fill_plan import pair_files
from inpaintkit.hd_strategy import (
    AUTO_ORIGINAL_SIDE,
    CROP_SIDE,
    RESIZE_LIMIT,
    Box,
    StrategyError,
    context_boxes,
    crop_side,
    fill_box,
    fill_method_crops,
    plan_image,
    work_bound,
)
from inpaintkit.inpaint import inpaint
from inpaintkit.methods import DeepFillMethod, MeanColorMethod
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.serve import create_app
from inpaintkit.tensors import image_to_tensor, mask_to_tensor

# --------------------------------------------------------------------------- boxes


def boxes_reference(hole: np.ndarray, ratio: float, least: int, side: int) -> set[Box]:
    """The obvious way: grow each group's box, then merge any two that overlap or touch until none do."""
    height, width = hole.shape
    labels = label(hole, connectivity=2)
    boxes = []
    for group in range(1, labels.max() + 1):
        rows, cols = np.nonzero(labels == group)
        top, left, bottom, right = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
        margin = max(least, round(ratio * max(bottom - top, right - left)))
        top, bottom = top - margin, bottom + margin
        left, right = left - margin, right + margin
        # At least `side` a side, centred (the odd pixel after), then moved inside the image.
        grow = max(0, side - (bottom - top))
        top, bottom = top - grow // 2, bottom + grow - grow // 2
        grow = max(0, side - (right - left))
        left, right = left - grow // 2, right + grow - grow // 2
        if bottom - top >= height:
            top, bottom = 0, height
        else:
            shift = max(0, -top) - max(0, bottom - height)
            top, bottom = top + shift, bottom + shift
        if right - left >= width:
            left, right = 0, width
        else:
            shift = max(0, -left) - max(0, right - width)
            left, right = left + shift, right + shift
        boxes.append((top, left, bottom, right))
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                # Overlapping or sharing an edge or a corner (8-connected on a canvas).
                if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                    boxes[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return {Box(*map(int, b)) for b in boxes}


def check_partition(hole: np.ndarray, boxes: list[Box]) -> None:
    """Every hole pixel in exactly one box; boxes inside the image."""
    count = np.zeros(hole.shape, int)
    for box in boxes:
        assert 0 <= box.top < box.bottom <= hole.shape[0]
        assert 0 <= box.left < box.right <= hole.shape[1]
        count[box.slices] += 1
    assert count.max() <= 1 and (count[hole] == 1).all()


@pytest.mark.parametrize("seed", range(6))
def test_context_boxes_match_a_brute_force_merge_on_random_holes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hole = np.zeros((int(rng.integers(20, 90)), int(rng.integers(20, 90))), bool)
    for _ in range(int(rng.integers(1, 12))):
        y, x = rng.integers(0, hole.shape[0]), rng.integers(0, hole.shape[1])
        hole[y : y + int(rng.integers(1, 9)), x : x + int(rng.integers(1, 9))] = True
    ratio, least = float(rng.choice([0.0, 0.5, 1.0])), int(rng.integers(0, 8))
    side = int(rng.choice([0, 9, 24, 200]))
    boxes = context_boxes(hole, ratio, least, side)
    assert set(boxes) == boxes_reference(hole, ratio, least, side)
    check_partition(hole, boxes)


def test_near_holes_share_a_box_far_ones_do_not_and_borders_shift_boxes_inside() -> None:
    hole = np.zeros((200, 300), bool)
    hole[10:20, 10:20] = hole[10:20, 30:40] = True  # 10 px apart: the margins overlap
    hole[10:20, 57:67] = True  # 17 px further: one column between the two margins of 8 px
    hole[150:160, 250:300] = True  # far away, on the right border: its box moves inside
    boxes = context_boxes(hole, 0.5, 8, min_side=0)
    assert boxes == [Box(2, 2, 28, 48), Box(2, 49, 28, 75), Box(125, 200, 185, 300)]
    hole[26:30, 50:54] = True  # a hole whose box overlaps both: all three become one
    assert context_boxes(hole, 0.5, 8, min_side=0)[0] == Box(2, 2, 38, 75)
    # A least side of 100: moved inside the image at the border, not clipped.
    assert context_boxes(hole, 0.5, 8, min_side=100)[-1] == Box(100, 200, 200, 300)


def test_many_holes_and_a_hole_over_most_of_the_image() -> None:
    rng = np.random.default_rng(0)
    hole = rng.random((600, 800)) < 0.0005  # ~240 single-pixel holes
    boxes = context_boxes(hole, 0.5, 4, min_side=0)
    check_partition(hole, boxes)
    assert 50 < len(boxes) < 240  # neighbours merged, far ones apart
    most = np.ones((600, 800), bool)
    most[:20] = False
    assert context_boxes(most) == [Box(0, 0, 600, 800)]
    assert context_boxes(np.zeros((5, 5), bool)) == []


# --------------------------------------------------------------------------- plans


def test_auto_fills_small_images_whole_and_large_ones_by_box_or_resized() -> None:
    small = np.zeros((AUTO_ORIGINAL_SIDE, 600), bool)
    small[100:200, 100:200] = True
    assert plan_image("auto", small).strategy == "original"
    large = np.zeros((1500, 2000), bool)
    large[100:356, 900:1156] = True
    plan = plan_image("auto", large)
    # The 512 x 512 neighbourhood (a margin of half the hole's side), inside the photo, at
    # 256 x 256: the hole at the training's 128 x 128. A 100 px hole's box: at its own size.
    assert plan.strategy == "crop" and plan.boxes == (Box(0, 772, 512, 1284),)
    assert plan.sides == (256,) and plan.work_pixels(large.shape) == 256 * 256
    small_hole = np.zeros((1500, 2000), bool)
    small_hole[700:800, 20:120] = True
    plan = plan_image("crop", small_hole)
    assert plan.boxes == (Box(494, 0, 1006, 512),) and plan.sides == (512,)
    large[:1200] = True  # a hole over most of the photo: the photo, resized
    plan = plan_image("auto", large)
    assert (plan.strategy, plan.limit) == ("resize", RESIZE_LIMIT)
    assert plan.work_pixels(large.shape) == 768 * 1024
    assert plan_image("auto", large, max_size=300).limit == 300
    assert plan_image("auto", np.zeros((3000, 4000), bool)).strategy == "original"  # no hole
    assert (
        plan_image("original", large).limit is None
        and plan_image("resize", large).limit == RESIZE_LIMIT
    )


def test_max_size_is_resize_s_limit_and_an_error_with_original_or_crop() -> None:
    hole = np.ones((10, 10), bool)
    for strategy in ("original", "crop"):
        with pytest.raises(StrategyError, match="--max-size is resize's limit"):
            plan_image(strategy, hole, max_size=64)
        with pytest.raises(FillError, match="--max-size is resize's limit"):
            FillOptions(hd_strategy=strategy, max_size=64)
    with pytest.raises(StrategyError, match="unknown HD strategy 'tiles'"):
        plan_image("tiles", hole)
    # What the memory check may assume before reading the mask.
    assert work_bound((3000, 4000), "crop", None) == (768, CROP_SIDE)
    assert work_bound((3000, 4000), "auto", None) == (768, 1024)
    assert work_bound((3000, 4000), "original", None) == (3000, 4000)
    assert work_bound((500, 800), "auto", None) == (500, 800)


# --------------------------------------------------------------------------- filling


def mean_fill(image: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    return [MeanColorMethod()(image, mask)]


def test_fill_box_downscales_with_the_hole_covering_and_never_enlarges() -> None:
    image = image_to_tensor(data.astronaut()[:300, :200])
    mask = torch.zeros(1, 1, 300, 200)
    mask[..., 100:102, 51:52] = 1  # two pixels under one working pixel, which is a hole
    seen = []

    def fill(x: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        seen.append((tuple(x.shape), int(m.sum())))
        return [torch.full_like(x, 0.5)]

    (out,) = fill_box(fill, image, mask, 100)
    assert seen == [((1, 3, 100, 67), 1)]
    assert torch.equal(out[mask.expand_as(out) == 0], image[mask.expand_as(image) == 0])
    assert fill_box(fill, image, mask, 1000) and seen[-1] == ((1, 3, 300, 200), 2)


@pytest.mark.parametrize("shape", [(1200, 1400), (6, 7)])
def test_crop_fills_each_box_from_its_own_context_and_keeps_known_pixels(shape) -> None:
    height, width = shape
    # Left half dark, right half bright: a box's mean colour says which half it saw.
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, width // 2 :] = 200
    pixels[..., 1] = np.arange(width, dtype=np.uint8)[None] % 7  # some texture, kept bit-exact
    hole = np.zeros(shape, bool)
    if height > 100:
        hole[0:50, 0:60] = True  # at the top-left corner
        hole[600:640, 1300:1400] = True  # on the right border
        hole[1100:1200, 100:280] = True  # on the bottom border
    else:
        hole[2:4, 3:5] = True
    boxes = context_boxes(hole)
    filled, attention = fill_method_crops(MeanColorMethod(), pixels, hole, boxes)
    assert attention is None
    np.testing.assert_array_equal(filled[~hole], pixels[~hole])
    for box in boxes:
        part, part_hole = pixels[box.slices], hole[box.slices]
        expected = np.round(part[~part_hole].astype(float).mean(axis=0))
        if crop_side(box, hole) == max(box.size):  # at its own size: exactly its mean colour
            assert (np.abs(filled[box.slices][part_hole] - expected) <= 1).all()
    if height > 100:
        assert filled[10, 10, 0] < 20 and filled[620, 1380, 0] > 180
        # The bottom hole is 200 px thick (it runs into the border): scaled down; the others not.
        assert [crop_side(b, hole) < max(b.size) for b in boxes] == [False, False, True]


def test_fill_files_crop_keeps_mode_alpha_icc_and_known_pixels(tmp_path: Path) -> None:
    rgb = np.concatenate([data.astronaut()[:200], data.coffee()[:200]], axis=1)  # 200 x 1112
    alpha = np.full((200, 1112), 180, np.uint8)
    alpha[:, :30] = 0
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "a.png", icc_profile=b"icc!")
    hole = np.zeros((200, 1112), bool)
    hole[10:40, 20:50] = hole[150:190, 900:950] = True  # boxes of 200 x 512, apart
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "a_mask.png")
    summary = fill_files(
        pair_files(tmp_path / "a.png", tmp_path / "a_mask.png", tmp_path / "out"),
        MeanColorMethod(),
        FillOptions(hd_strategy="crop"),
        progress=False,
    )
    assert summary.filled == 1
    with Image.open(tmp_path / "out" / "a.png") as result:
        assert result.mode == "RGBA" and result.info.get("icc_profile") == b"icc!"
        out = np.asarray(result)
    np.testing.assert_array_equal(out[..., 3], alpha)
    np.testing.assert_array_equal(out[..., :3][~hole], rgb[~hole])
    # Two boxes, two mean colours: neither hole got the whole image's.
    assert not np.array_equal(out[20, 30, :3], out[170, 920, :3])


def test_fill_command_auto_crops_a_wide_photo_and_refuses_max_size_with_crop(
    tmp_path: Path,
) -> None:
    width = AUTO_ORIGINAL_SIDE + 200
    pixels = np.zeros((64, width, 3), np.uint8)
    pixels[:, width // 2 :] = 250
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    hole = np.zeros((64, width), bool)
    hole[20:40, 20:40] = True
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    args = [
        str(tmp_path / "wide.png"),
        "--masks",
        str(tmp_path / "mask.png"),
        "--method",
        "patchmatch",
    ]
    result = CliRunner().invoke(fill_command, [*args, "-o", str(tmp_path / "out.png"), "--quiet"])
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "out.png"))
    np.testing.assert_array_equal(out[~hole], pixels[~hole])
    assert out[hole].max() == 0  # its box holds dark pixels only; the whole photo is half bright
    result = CliRunner().invoke(
        fill_command,
        [*args, "-o", str(tmp_path / "x.png"), "--hd-strategy", "crop", "--max-size", "64"],
    )
    assert result.exit_code != 0 and "--max-size is resize's limit" in result.output


# --------------------------------------------------------------------------- the library and serve


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(GeneratorConfig(channels=4)).eval()


def test_inpaint_by_strategy_keeps_known_pixels_and_original_is_the_default(generator) -> None:
    image = image_to_tensor(np.stack([data.astronaut()[:64, :96], data.coffee()[:64, :96]]))
    hole = np.zeros((2, 64, 96), bool)
    hole[0, 10:30, 10:30] = hole[1, 40:60, 60:90] = True
    mask = mask_to_tensor(hole)
    plain = inpaint(generator, image, mask)
    assert torch.equal(inpaint(generator, image, mask, hd_strategy="original").image, plain.image)
    known = mask.expand_as(image) == 0
    for strategy, max_size in (("crop", None), ("resize", 48), ("auto", None)):
        result = inpaint(generator, image, mask, hd_strategy=strategy, max_size=max_size)
        for x in (result.image, result.coarse):
            assert x.shape == image.shape and torch.equal(x[known], image[known])
        assert result.offsets is None
    # Under crop each sample sees its box only: not the whole image's fill.
    crop = inpaint(generator, image, mask, hd_strategy="crop").image
    assert not torch.equal(crop, plain.image)
    with pytest.raises(ValueError, match="attention offsets need a sample filled whole"):
        inpaint(generator, image, mask, return_offsets=True, hd_strategy="crop")


def test_serve_takes_hd_strategy_per_fill_and_lists_the_choices(generator, tmp_path: Path) -> None:
    save_generator(tmp_path / "tiny.safetensors", generator)
    app = create_app(
        checkpoint=tmp_path / "tiny.safetensors", device="cpu", port=8000, hd_strategy="crop"
    )
    with TestClient(app, base_url=BASE) as client:
        info = client.get("/api/info").json()
        assert info["hd_strategies"] == ["auto", "original", "resize", "crop"]
        assert info["hd_strategy"] == "crop"
        pixels = np.ascontiguousarray(data.astronaut()[:120, :160])
        hole = np.zeros((120, 160), bool)
        hole[10:20, 10:20] = True
        image = upload(client, pixels)
        job = fill_and_wait(client, image["id"], hole, method="patchmatch")
        served = np.asarray(
            Image.open(
                io.BytesIO(client.get(f"/api/images/{job['result']['id']}/image.png").content)
            )
        )
        np.testing.assert_array_equal(served[~hole], pixels[~hole])
        # The page's Size without a strategy is resize, even on a crop server; with crop, an error.
        job = fill_and_wait(client, image["id"], hole, method="patchmatch", extra="&max_size=64")
        assert job["state"] == "done", job
        answer = client.post(
            f"/api/fill?image={image['id']}&max_size=64&hd_strategy=crop", content=png(hole)
        )
        assert answer.status_code == 400 and "max_size is resize's limit" in answer.json()["error"]
        answer = client.post(f"/api/fill?image={image['id']}&hd_strategy=tiles", content=png(hole))
        assert answer.status_code == 400 and "unknown HD strategy" in answer.json()["error"]
        job = fill_and_wait(client, image["id"], hole, extra="&hd_strategy=original")
        assert job["result"]["attention"] is not None  # whole-image fills keep their attention


def test_attention_pictures_under_crop_are_the_largest_box_s(generator, tmp_path: Path) -> None:
    save_generator(tmp_path / "tiny.safetensors", generator)
    pixels = np.concatenate([data.astronaut()[:200], data.coffee()[:200]], axis=1)  # 200 x 1112
    Image.fromarray(pixels).save(tmp_path / "a.png")
    hole = np.zeros((200, 1112), bool)
    hole[20:40, 20:40] = True  # a box of 200 x 512 at its own size
    hole[100:190, 850:950] = True  # 90 px thick: a box of 200 x 512 too, apart
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "a_mask.png")
    method = DeepFillMethod(tmp_path / "tiny.safetensors", device="cpu", blend="none")
    summary = fill_files(
        pair_files(tmp_path / "a.png", tmp_path / "a_mask.png", tmp_path / "out"),
        method,
        FillOptions(hd_strategy="crop", attention_dir=tmp_path / "attention"),
        progress=False,
    )
    assert summary.filled == 1
    out = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    np.testing.assert_array_equal(out[~hole], pixels[~hole])
    for name in ("a_attention.png", "a_overlay.png"):  # at the box's working size
        assert Image.open(tmp_path / "attention" / name).size == (512, 200)
    _, attention = fill_method_crops(method, pixels, hole, context_boxes(hole), attention=True)
    # Both boxes have as many working pixels: the first one filled is kept.
    assert attention.box == context_boxes(hole)[0] and attention.work_hole.sum() == 400
