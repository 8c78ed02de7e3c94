"""Hostile input files: a 20 KB PNG of 169 M pixels, palette transparency, symbolic link loops.

The files are generated here. ``fill`` must refuse the huge 1-bit PNG from its header, before
decoding it, with one line naming its size, the estimate, a working size that fits and the
option that raises the budget (inpaintkit.memory); a palette PNG's transparent colour must
come out as alpha, as RGBA's does; every symbolic link loop in an input folder is named in
one line by ``prepare`` and ``fill``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from inpaintkit.cli import main
from inpaintkit.io import list_images
from inpaintkit.memory import (
    BUDGET_ENV,
    MemoryBudgetError,
    check_fill,
    default_budget,
    fill_need,
    parse_bytes,
)


def _bomb(path, side=13000):
    """A 1-bit PNG of ``side``² pixels, a few lines on white: ~30 KB on disk."""
    image = Image.new("1", (side, side), 1)
    ImageDraw.Draw(image).line([(0, 0), (side - 1, side - 1)], fill=0, width=3)
    image.save(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_fill_refuses_a_13000_square_1bit_png_from_its_header(tmp_path):
    _bomb(tmp_path / "big.png")
    hole = Image.new("1", (13000, 13000), 0)
    ImageDraw.Draw(hole).rectangle([6500, 6500, 6509, 6509], fill=1)
    hole.save(tmp_path / "mask.png")
    assert (tmp_path / "big.png").stat().st_size < 100_000
    for method, fits in (("patchmatch", "--max-size 4856"), ("deepfill", "--max-size 1880")):
        start = time.perf_counter()
        result = CliRunner().invoke(
            main,
            ["fill", str(tmp_path / "big.png"), "--masks", str(tmp_path / "mask.png"), "-o",
             str(tmp_path / "out.png"), "--method", method, "--memory-budget", "8G", "--quiet",
             # The whole image at full size: the default (auto) would crop the tiny hole's box
             # out of it, which fits the budget.
             "--hd-strategy", "original"],
        )  # fmt: skip
        assert result.exit_code == 1
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert line.startswith(
            f"error: {tmp_path / 'big.png'}: 13000x13000 image: filling it with {method} needs "
            "about "
        )
        assert f"over the 8.6 GB memory budget; pass {fits} (a working size) or raise the " in line
        assert f"(--memory-budget SIZE or {BUDGET_ENV})" in line
        assert time.perf_counter() - start < 20  # nothing decoded (decoding alone takes longer)
        assert not (tmp_path / "out.png").exists()


def test_budget_estimates_parsing_and_default(monkeypatch):
    assert parse_bytes("8G") == 8 * 1024**3 and parse_bytes("512m") == 512 * 1024**2
    assert parse_bytes("1.5GiB") == 3 * 1024**3 // 2 and parse_bytes("300000") == 300000
    for bad in ("", "8X", "-1G", "¹²G", "0", "nan"):
        with pytest.raises(MemoryBudgetError):
            parse_bytes(bad)
    monkeypatch.setenv(BUDGET_ENV, "3G")
    assert default_budget() == 3 * 1024**3
    monkeypatch.delenv(BUDGET_ENV)
    assert 0 < default_budget()
    # The estimate grows with the working size, and the working size it proposes fits.
    size = (13000, 13000)
    assert fill_need(size, (1024, 1024), "patchmatch") < fill_need(size, size, "patchmatch")
    with pytest.raises(MemoryBudgetError, match="pass --max-size 4856 ") as refused:
        check_fill(size, size, "patchmatch", 8 * 1024**3)
    check_fill(size, (4856, 4856), "patchmatch", 8 * 1024**3)
    assert "\n" not in str(refused.value)
    # On a GPU the activations are not host memory: a 12 MP photo fits there, not on the CPU.
    photo = (3000, 4000)
    check_fill(photo, photo, "deepfill", 8 * 1024**3, device="cuda:0")
    with pytest.raises(MemoryBudgetError, match="filling it with deepfill needs about 15.6 GB"):
        check_fill(photo, photo, "deepfill", 8 * 1024**3, device="cpu")
    # Too large even to decode within the budget: no working size is proposed.
    with pytest.raises(MemoryBudgetError) as hopeless:
        check_fill(size, (512, 512), "patchmatch", 1024**3)
    assert "--max-size" not in str(hopeless.value)


def test_palette_transparency_is_kept_as_alpha_like_rgba(tmp_path):
    palette = Image.new("P", (12, 10))
    palette.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * 759)
    pixels = np.zeros((10, 12), np.uint8)
    pixels[:, 6:] = 1
    pixels[0:3, 0:3] = 2  # the transparent colour (green)
    palette.putdata(pixels.ravel().tolist())
    palette.save(tmp_path / "p.png", transparency=2)
    hole = np.zeros((10, 12), np.uint8)
    hole[6:9, 2:9] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    result = CliRunner().invoke(
        main,
        ["fill", str(tmp_path / "p.png"), "--masks", str(tmp_path / "mask.png"), "-o",
         str(tmp_path / "out.png"), "--method", "patchmatch", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "RGBA"
    rgba = np.asarray(out)
    expected = np.asarray(Image.open(tmp_path / "p.png").convert("RGBA"))
    known = hole == 0
    assert (rgba[known] == expected[known]).all()  # colours and alpha, bit for bit
    assert (rgba[0:3, 0:3, 3] == 0).all() and (rgba[3:, :, 3] == 255).all()


@pytest.fixture
def looped(tmp_path):
    """A folder with two images and three symbolic link loops."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        Image.fromarray(np.full((16, 16, 3), len(name) * 20, np.uint8)).save(folder / name)
    os.symlink("self.png", folder / "self.png")  # a link to itself
    os.symlink("two.png", folder / "one.png")  # a chain back to its start
    os.symlink("one.png", folder / "two.png")
    os.symlink("..", folder / "sub" / "up")  # a folder link to a folder it is in
    return folder


def test_symbolic_link_loops_are_named_one_line_each(looped, tmp_path):
    problems = []
    images = list_images(looped, on_problem=lambda path, why: problems.append((path, why)))
    assert [p.relative_to(looped).as_posix() for p in images] == ["a.png", "sub/b.png"]
    loops = {"self.png", "one.png", "two.png", "sub/up"}
    assert {p.relative_to(looped).as_posix() for p, _ in problems} == loops
    assert all(why.startswith("symbolic link loop") for _, why in problems)

    result = CliRunner().invoke(
        main, ["prepare", str(looped), str(tmp_path / "d.h5"), "--size", "8", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "symbolic link loop" in line]
    assert sorted(line.split(": ")[0] for line in lines) == sorted(
        f"skipped {looped / name}" for name in loops
    )

    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    result = CliRunner().invoke(
        main,
        ["fill", str(looped), "--masks", str(tmp_path / "mask.png"), "-o", str(tmp_path / "out"),
         "--method", "patchmatch", "--quiet"],
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if "symbolic link loop" in line]
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines)
    assert (tmp_path / "out" / "a.png").exists() and (tmp_path / "out" / "sub" / "b.png").exists()
