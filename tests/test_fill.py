"""Tests for inpaintkit.fill and ``inpaintkit fill``, on tiny crops of scikit-image's photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data

import inpaintkit.checkpoint
import inpaintkit.methods
from inpaintkit.checkpoint import NO_DEFAULT_MODEL, save_generator
from inpaintkit.cli.fill import fill_command
from inpaintkit.fill import fill_arrays, fill_files
from inpaintkit.fill_images import DecodedImage, dilate_mask, merge_fill
from inpaintkit.fill_options import FillJob, FillOptions
from inpaintkit.fill_plan import pair_files
from inpaintkit.hd_strategy import working_size
from inpaintkit.io import is_temporary, open_image
from inpaintkit.methods import DeepFillMethod, MeanColorMethod
from inpaintkit.model.generator import Generator, GeneratorConfig


def photo(h: int, w: int, which: str = "astronaut", y: int = 100, x: int = 150) -> np.ndarray:
    """A real uint8 RGB crop of ``(h, w)``."""
    return np.ascontiguousarray(getattr(data, which)()[y : y + h, x : x + w])


def hole_mask(h: int, w: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """bool (h, w) with one rectangular hole (y0, y1, x0, x1), by default in the middle."""
    y0, y1, x0, x1 = box or (h // 4, h // 2 + 2, w // 3, w // 3 + w // 4 + 1)
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def save_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def save(path: Path, image: Image.Image, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temporary(p)]


# --------------------------------------------------------------------------- helpers


def dilate_reference(hole: np.ndarray, radius: int) -> np.ndarray:
    out = hole.copy()
    holes = list(zip(*np.nonzero(hole), strict=True))
    for y in range(hole.shape[0]):
        for x in range(hole.shape[1]):
            out[y, x] = any((y - hy) ** 2 + (x - hx) ** 2 <= radius**2 for hy, hx in holes)
    return out


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_dilate_mask_matches_a_brute_force_disk(radius: int) -> None:
    hole = np.random.default_rng(radius).random((13, 11)) < 0.06
    hole[0, 5] = True  # a hole on the border
    np.testing.assert_array_equal(dilate_mask(hole, radius), dilate_reference(hole, radius))
    assert not dilate_mask(np.zeros((4, 4), bool), 2).any()


def test_working_size_keeps_aspect_and_never_enlarges() -> None:
    assert working_size(300, 451, None) == (300, 451)
    assert working_size(300, 451, 1000) == (300, 451)
    assert working_size(300, 451, 200) == (133, 200)
    assert working_size(451, 300, 200) == (200, 133)
    assert working_size(3, 1000, 100) == (1, 100)


def test_pair_files_by_stem_mask_suffix_subfolders_and_one_mask(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    for rel in ["a.jpg", "sub/b.png", "c.png", "d.png"]:
        save(images / rel, Image.new("RGB", (4, 4)))
    save_mask(masks / "a.png", np.ones((4, 4), bool))
    save_mask(masks / "sub/b_mask.png", np.ones((4, 4), bool))
    save_mask(masks / "d.png", np.ones((4, 4), bool))
    save_mask(masks / "d_mask.png", np.ones((4, 4), bool))
    save(out / "old.png", Image.new("RGB", (4, 4)))  # an earlier output is not an input
    jobs = {job.relative.as_posix(): job for job in pair_files(images, masks, out, "png")}
    assert sorted(jobs) == ["a.jpg", "c.png", "d.png", "sub/b.png"]
    assert jobs["a.jpg"].mask == masks / "a.png" and jobs["a.jpg"].output == out / "a.png"
    assert jobs["sub/b.png"].mask == masks / "sub/b_mask.png"
    assert jobs["sub/b.png"].output == out / "sub/b.png"
    assert "no mask found" in jobs["c.png"].problem and jobs["c.png"].mask is None
    assert "several masks match" in jobs["d.png"].problem

    # Images and masks in one folder (IOPaint): the _mask files are masks, not inputs.
    both = tmp_path / "both"
    save(both / "x.png", Image.new("RGB", (4, 4)))
    save_mask(both / "x_mask.png", np.ones((4, 4), bool))
    (job,) = pair_files(both, both, both / "filled")
    assert job.image == both / "x.png" and job.mask == both / "x_mask.png"

    # One image file and one mask file; an output name with an image suffix is the file itself.
    (job,) = pair_files(images / "a.jpg", masks / "a.png", tmp_path / "result.png")
    assert job.output == tmp_path / "result.png" and job.mask == masks / "a.png"
    (job,) = pair_files(images / "a.jpg", masks / "a.png", tmp_path / "folder", "webp")
    assert job.output == tmp_path / "folder" / "a.webp"


# --------------------------------------------------------------------------- the command


def make_mixed_folder(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Good files of several sizes and modes, and three bad ones. Returns name -> (pixels, hole)."""
    images, masks = root / "images", root / "masks"
    good: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    rgb = photo(29, 37)  # odd size
    save(images / "rgb.png", Image.fromarray(rgb))
    good["rgb.png"] = (rgb, hole_mask(29, 37, (0, 6, 20, 37)))  # touches the top-right corner

    gray = photo(24, 32, "camera")
    save(images / "sub" / "gray.png", Image.fromarray(gray))
    good["sub/gray.png"] = (gray, hole_mask(24, 32))

    rgba = np.dstack(
        [photo(24, 32, "coffee"), np.linspace(0, 255, 24 * 32).reshape(24, 32).astype(np.uint8)]
    )
    save(images / "rgba.png", Image.fromarray(rgba, "RGBA"))
    good["rgba.png"] = (rgba, hole_mask(24, 32))

    jpeg = photo(32, 32, "chelsea")
    save(images / "photo.jpg", Image.fromarray(jpeg), quality=90)
    good["photo.jpg"] = (np.asarray(Image.open(images / "photo.jpg")), hole_mask(32, 32))

    for name, (_, hole) in good.items():
        save_mask(masks / Path(name).with_suffix(".png"), hole)

    save(images / "nomask.png", Image.fromarray(photo(24, 32)))
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    save_mask(masks / "corrupt.png", hole_mask(24, 32))
    save(images / "wrongsize.png", Image.fromarray(photo(24, 32)))
    save_mask(masks / "wrongsize.png", hole_mask(20, 30))
    return good


def check_outputs(out: Path, good: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for name, (pixels, hole) in good.items():
        result = Image.open(out / name)
        original = Image.open(out.parent / "images" / name)
        assert result.mode == original.mode and result.size == original.size, name
        array = np.asarray(result)
        if name.endswith(".jpg"):
            continue  # lossy: only mode and size can be compared
        np.testing.assert_array_equal(array[~hole], pixels[~hole], err_msg=name)
        assert (array[hole] != pixels[hole]).any(), f"{name}: the hole was not filled"
        if result.mode == "RGBA":
            np.testing.assert_array_equal(array[..., 3], pixels[..., 3])


def test_fill_folder_with_bad_files_then_resume(tmp_path: Path) -> None:
    good = make_mixed_folder(tmp_path)
    out = tmp_path / "out"
    args = [
        str(tmp_path / "images"),
        "--masks",
        str(tmp_path / "masks"),
        "-o",
        str(out),
        "--method",
        "patchmatch",
        "--batch-size",
        "2",
    ]
    result = CliRunner().invoke(fill_command, args)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    for bad, reason in [
        ("nomask.png", "no mask found"),
        ("corrupt.png", "not a readable image"),
        ("wrongsize.png", "is 30x20 but the image is 32x24"),
    ]:
        (line,) = [line for line in lines if bad in line]
        assert line.startswith("error: ") and reason in line, line
    assert "filled 4, skipped 0 (already done), failed 3" in result.output
    check_outputs(out, good)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        good
    )
    assert not temporaries(tmp_path)

    # An interrupted run is finished by running again: done outputs are skipped, untouched.
    (out / "rgb.png").unlink()
    stamps = {name: (out / name).stat().st_mtime_ns for name in good if name != "rgb.png"}
    result = CliRunner().invoke(fill_command, args)
    assert result.exit_code == 1
    assert "filled 1, skipped 3 (already done), failed 3" in result.output
    assert stamps == {name: (out / name).stat().st_mtime_ns for name in stamps}
    check_outputs(out, good)


def test_single_file_single_mask_format_and_invert(tmp_path: Path) -> None:
    pixels, hole = photo(24, 40, "rocket"), hole_mask(24, 40)
    save(tmp_path / "in.jpg", Image.fromarray(pixels), quality=95)
    save_mask(tmp_path / "hole.png", ~hole)  # black = hole
    result = CliRunner().invoke(
        fill_command,
        [
            str(tmp_path / "in.jpg"),
            "--masks",
            str(tmp_path / "hole.png"),
            "-o",
            str(tmp_path / "out"),
            "--format",
            "png",
            "--invert-masks",
            "--method",
            "patchmatch",
        ],
    )
    assert result.exit_code == 0, result.output
    decoded = np.asarray(Image.open(tmp_path / "in.jpg"))
    filled = np.asarray(Image.open(tmp_path / "out" / "in.png"))
    np.testing.assert_array_equal(filled[~hole], decoded[~hole])
    assert (filled[hole] != decoded[hole]).any()


def test_exif_orientation_resize_masks_and_alpha_in_jpeg(tmp_path: Path) -> None:
    # Stored sideways with EXIF orientation 6 (rotate 90° clockwise to view): 20 wide, 30 tall.
    upright = photo(30, 20)
    exif = Image.Exif()
    exif[0x0112] = 6
    save(
        tmp_path / "images" / "turned.png",
        Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90),
        exif=exif,
    )
    save_mask(tmp_path / "masks" / "turned.png", hole_mask(15, 10))  # half size: resized
    save(
        tmp_path / "images" / "clear.png",
        Image.fromarray(np.dstack([upright, upright[..., 0]]), "RGBA"),
    )
    save_mask(tmp_path / "masks" / "clear.png", hole_mask(30, 20))
    out = tmp_path / "out"
    options = FillOptions(resize_masks=True, format="jpg")
    summary = fill_files(
        pair_files(tmp_path / "images", tmp_path / "masks", out, "jpg"),
        MeanColorMethod(),
        options,
        progress=False,
    )
    assert summary.filled == 1 and summary.failed == 1
    assert "JPEG cannot keep the alpha channel" in summary.failures[0][1]
    with Image.open(out / "turned.jpg") as result:
        assert result.size == (20, 30) and 0x0112 not in result.getexif()
    np.testing.assert_array_equal(open_image(tmp_path / "images" / "turned.png"), upright)


def test_max_size_composites_an_upsampled_fill_into_the_original(tmp_path: Path) -> None:
    pixels, hole = photo(60, 90, "coffee"), hole_mask(60, 90)
    save(tmp_path / "a.png", Image.fromarray(pixels))
    save_mask(tmp_path / "a_mask.png", hole)
    seen = []

    def method(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape))
        return MeanColorMethod()(images, masks)

    method.name = "recording"
    summary = fill_files(
        pair_files(tmp_path / "a.png", tmp_path / "a_mask.png", tmp_path / "out"),
        method,
        FillOptions(max_size=30, dilate=1),
        progress=False,
    )
    assert summary.filled == 1 and seen == [(1, 3, 20, 30)]
    result = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    grown = dilate_mask(hole, 1)
    np.testing.assert_array_equal(result[~grown], pixels[~grown])
    # The fill is (upsampled) mean colour: flat inside the hole, away from its edges.
    inner = result[20:28, 35:48].reshape(-1, 3).astype(int)
    assert np.ptp(inner, axis=0).max() <= 2


def test_batches_group_same_sizes_and_one_bad_image_does_not_sink_its_batch(tmp_path: Path) -> None:
    sizes = {"a": (16, 24), "b": (16, 24), "c": (20, 20), "d": (16, 24), "e": (16, 24)}
    for name, (h, w) in sizes.items():
        save(tmp_path / "images" / f"{name}.png", Image.fromarray(photo(h, w)))
        save_mask(
            tmp_path / "masks" / f"{name}.png",
            np.ones((h, w), bool) if name == "e" else hole_mask(h, w),
        )
    batches = []

    def method(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        batches.append(tuple(images.shape))
        if (masks.flatten(1).min(dim=1).values == 1).any():
            raise ValueError("the mask covers the whole image")
        return MeanColorMethod()(images, masks)

    method.name = "picky"
    jobs = pair_files(tmp_path / "images", tmp_path / "masks", tmp_path / "out")
    summary = fill_files(jobs, method, FillOptions(batch_size=3), progress=False)
    assert summary.filled == 4 and summary.failed == 1
    assert (
        summary.failures[0][0].endswith("e.png")
        and "covers the whole image" in summary.failures[0][1]
    )
    # 16x24 images come together (a, b, d), then e alone (failing, then retried alone), then c.
    assert batches == [(3, 3, 16, 24), (1, 3, 16, 24), (1, 3, 20, 20)]


def test_merge_fill_grey_keeps_known_values_and_alpha() -> None:
    gray = photo(6, 5, "camera")
    alpha = np.arange(30, dtype=np.uint8).reshape(6, 5)
    hole = hole_mask(6, 5, (1, 3, 1, 4))
    decoded = DecodedImage(
        FillJob(Path("x"), None, Path("y"), Path("x")),
        np.repeat(gray[..., None], 3, 2),
        alpha,
        "LA",
        hole,
        np.repeat(gray[..., None], 3, 2),
        hole,
        None,
    )
    filled = np.zeros((6, 5, 3), np.uint8)
    filled[..., 0], filled[..., 1], filled[..., 2] = 200, 100, 50
    out = np.asarray(merge_fill(decoded, filled))
    expected_gray = np.where(hole, round(200 * 0.299 + 100 * 0.587 + 50 * 0.114), gray)
    np.testing.assert_allclose(out[..., 0], expected_gray, atol=1)
    np.testing.assert_array_equal(out[..., 0][~hole], gray[~hole])
    np.testing.assert_array_equal(out[..., 1], alpha)


# --------------------------------------------------------------------------- DeepFill


def test_deepfill_checkpoint_and_attention_pictures(tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_generator(tmp_path / "tiny.safetensors", Generator(GeneratorConfig(channels=4)))
    pixels, hole = photo(27, 35, "chelsea"), hole_mask(27, 35)
    save(tmp_path / "images" / "sub" / "cat.png", Image.fromarray(pixels))
    save_mask(tmp_path / "masks" / "sub" / "cat_mask.png", hole)
    result = CliRunner().invoke(
        fill_command,
        [
            str(tmp_path / "images"),
            "--masks",
            str(tmp_path / "masks"),
            "-o",
            str(tmp_path / "out"),
            "--checkpoint",
            str(tmp_path / "tiny.safetensors"),
            "--device",
            "cpu",
            "--attention",
            str(tmp_path / "attention"),
        ],
    )
    assert result.exit_code == 0, result.output
    filled = np.asarray(Image.open(tmp_path / "out" / "sub" / "cat.png"))
    np.testing.assert_array_equal(filled[~hole], pixels[~hole])
    for name in ["cat_attention.png", "cat_overlay.png"]:
        with Image.open(tmp_path / "attention" / "sub" / name) as picture:
            assert picture.format == "PNG" and picture.size == (35, 27) and picture.mode == "RGB"
    assert not temporaries(tmp_path)
    # --blend none pastes the prediction as the paper does: the library's plain composite.
    pasted = CliRunner().invoke(
        fill_command,
        [
            str(tmp_path / "images"),
            "--masks",
            str(tmp_path / "masks"),
            "-o",
            str(tmp_path / "pasted"),
            "--checkpoint",
            str(tmp_path / "tiny.safetensors"),
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--blend",
            "none",
        ],
    )
    assert pasted.exit_code == 0, pasted.output
    method = DeepFillMethod(
        tmp_path / "tiny.safetensors", device="cpu", precision="fp32", blend="none"
    )
    expected = fill_arrays(method, [pixels], [hole])[0][0]
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "pasted" / "sub" / "cat.png")), expected
    )
    blended = DeepFillMethod(tmp_path / "tiny.safetensors", device="cpu", precision="fp32")
    assert np.abs(fill_arrays(blended, [pixels], [hole])[0][0].astype(int) - expected).max() > 2


def test_no_default_model_and_attention_without_deepfill_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inpaintkit.checkpoint, "default_checkpoint", lambda: None)
    save(tmp_path / "a.png", Image.fromarray(photo(8, 8)))
    save_mask(tmp_path / "m.png", hole_mask(8, 8))
    base = [
        str(tmp_path / "a.png"),
        "--masks",
        str(tmp_path / "m.png"),
        "-o",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(fill_command, base)
    assert result.exit_code == 1 and NO_DEFAULT_MODEL in result.output
    result = CliRunner().invoke(fill_command, [*base, "--checkpoint", "sharpest"])
    assert result.exit_code == 2
    assert "sharpest: no such file, and not a bundled model (smooth)" in result.output
    result = CliRunner().invoke(
        fill_command, [*base, "--method", "patchmatch", "--attention", str(tmp_path / "att")]
    )
    assert result.exit_code == 2 and "--attention needs --method deepfill" in result.output
    assert not (tmp_path / "out").exists()


def test_patch_size_reaches_patchmatch_and_must_be_odd(tmp_path, monkeypatch) -> None:
    save(tmp_path / "a.png", Image.fromarray(photo(24, 24)))
    save_mask(tmp_path / "m.png", hole_mask(24, 24))
    base = [str(tmp_path / "a.png"), "--masks", str(tmp_path / "m.png"), "--method", "patchmatch"]
    result = CliRunner().invoke(
        fill_command, [*base, "-o", str(tmp_path / "x.png"), "--patch-size", "4"]
    )
    assert result.exit_code == 2 and "4 is even" in result.output
    seen = []
    original = inpaintkit.methods.patchmatch_inpaint
    monkeypatch.setattr(
        inpaintkit.methods,
        "patchmatch_inpaint",
        lambda *a, **k: seen.append(k.get("patch_size")) or original(*a, **k),
    )
    result = CliRunner().invoke(
        fill_command, [*base, "-o", str(tmp_path / "y.png"), "--patch-size", "3"]
    )
    assert result.exit_code == 0, result.output
    assert seen == [3] and (tmp_path / "y.png").is_file()


def test_attention_with_a_baseline_checkpoint_is_refused(tmp_path):
    from click.testing import CliRunner

    from inpaintkit.checkpoint import save_generator
    from inpaintkit.cli import main
    from inpaintkit.model.generator import Generator, GeneratorConfig

    checkpoint = tmp_path / "baseline.safetensors"
    save_generator(checkpoint, Generator(GeneratorConfig(channels=4, contextual_attention=False)))
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    Image.new("L", (16, 16), 255).save(tmp_path / "m.png")
    result = CliRunner().invoke(
        main,
        [
            "fill",
            str(tmp_path / "a.png"),
            "--masks",
            str(tmp_path / "m.png"),
            "-o",
            str(tmp_path / "out"),
            "--checkpoint",
            str(checkpoint),
            "--attention",
            str(tmp_path / "att"),
        ],
    )
    assert result.exit_code == 2 and "without contextual attention" in result.output
    assert not (tmp_path / "out").exists()


def test_keyboard_interrupt_stops_with_the_finished_outputs_counted(tmp_path: Path) -> None:
    for name in "abcdef":
        save(tmp_path / "images" / f"{name}.png", Image.fromarray(photo(16, 16)))
    save_mask(tmp_path / "mask.png", hole_mask(16, 16))
    calls = []

    def method(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        if len(calls) == 4:
            raise KeyboardInterrupt  # what SIGINT raises in the main thread
        return MeanColorMethod()(images, masks)

    method.name = "interrupted"
    jobs = pair_files(tmp_path / "images", tmp_path / "mask.png", tmp_path / "out")
    summary = fill_files(jobs, method, FillOptions(batch_size=1, workers=1), progress=False)
    assert summary.interrupted and (summary.filled, summary.done, summary.failed) == (3, 3, 0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


def test_sigint_exits_130_saying_how_much_is_done_and_a_rerun_continues(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    count = 40
    for i in range(count):
        save(tmp_path / "images" / f"{i:02d}.png", Image.fromarray(photo(64, 64, y=3 * i, x=5 * i)))
    save_mask(tmp_path / "mask.png", hole_mask(64, 64))
    out = tmp_path / "out"
    args = [
        str(tmp_path / "images"),
        "--masks",
        str(tmp_path / "mask.png"),
        "-o",
        str(out),
        "--method",
        "patchmatch",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--batch-size",
        "1",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from inpaintkit.cli import main; main()", "fill", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"},
        # A test run started in the background by a non-interactive shell inherits SIGINT
        # ignored, and Python then never raises KeyboardInterrupt: give the child Ctrl-C back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while (
        not (out.is_dir() and any(out.glob("*.png")))
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, output
    written = sorted(p for p in out.iterdir() if not is_temporary(p))
    assert 0 < len(written) < count, "the run finished before the signal; give it more images"
    assert (
        f"Interrupted: {len(written)} of {count} done; re-run the same command to continue"
        in output
    )
    assert "Aborted" not in output and not temporaries(out)
    for path in written:  # complete files
        assert np.asarray(Image.open(path)).shape == (64, 64, 3)
    result = CliRunner().invoke(fill_command, args)
    assert result.exit_code == 0, result.output
    assert (
        f"filled {count - len(written)}, skipped {len(written)} (already done), failed 0"
        in result.output
    )
