"""Bad input for ``inpaintkit fill`` and ``inpaintkit prepare``: one clear line each, good files done.

One folder holds every kind of awkward file (see :func:`_awkward_folder`); both commands run
on it through the real CLI (in process). Also: an output path that cannot be a folder (works
as root, unlike a read-only folder) and a full disk (a 64 KiB tmpfs, skipped when mounting
is not permitted).
"""

from __future__ import annotations

import io as _bytes
import re
import struct
import subprocess
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import error_lines, files_below
from PIL import Image

from inpaintkit.fill import fill_files
from inpaintkit.fill_options import FillOptions
from inpaintkit.fill_plan import pair_files
from inpaintkit.io import is_temporary
from inpaintkit.methods import MeanColorMethod

UNICODE_NAME = "ünï 图 space [x].png"


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _hole(height: int, width: int) -> np.ndarray:
    hole = np.zeros((height, width), np.uint8)
    hole[height // 4 : height // 2 + 1, width // 4 : width // 2 + 1] = 255
    return hole


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 20000, pixels: bool = True) -> bytes:
    """A valid 1-bit ``side x side`` PNG of ~50 KB, or (``pixels=False``) one with most rows missing.

    Decoding it would take ``side**2`` bytes as an 8-bit image (400 MB at 20000); the variant
    without the pixels proves a refusal happens before decoding (decoding it would fail as
    truncated, with another message).
    """
    head = b"\x89PNG\r\n\x1a\n" + _png_chunk(
        b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    )
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    count = side // 1000 if pixels else 1  # header-only: 1000 rows of data, then the end
    rows = b"".join(packer.compress(row * 1000) for _ in range(count)) + packer.flush()
    return head + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


#: file name -> what fill must say about it (a regex), for the files that must fail.
FILL_FAILS = {
    "text [b].png": r"not a readable image",
    "zero.png": r"not a readable image",
    "truncated.png": r"not a readable image \(image file is truncated\)",
    "bomb.png": r"decompression bomb",
    "bomb_header.png": r"decompression bomb",
    "wrong_mask.png": r"mask .*wrong_mask.png is 16x16 but the image is 32x32 \(pass --resize-masks",
    "all_hole.png": r"whole image",  # PatchMatch has nothing to copy from; DeepFill would fill it
}
#: files prepare skips (the others it stores).
PREPARE_SKIPS = ("text [b].png", "zero.png", "truncated.png", "bomb.png", "bomb_header.png")


def _awkward_folder(root: Path) -> tuple[Path, Path]:
    """``root/img`` with every awkward kind of file and ``root/msk`` with a mask for each."""
    images, masks = root / "img", root / "msk"
    images.mkdir(parents=True)
    masks.mkdir()

    def put(name: str, content: Image.Image | bytes, mask: np.ndarray | None = None) -> None:
        if isinstance(content, bytes):
            (images / name).write_bytes(content)
            size = (32, 32)
        else:
            content.save(images / name)
            size = (content.height, content.width)
        Image.fromarray(_hole(*size) if mask is None else mask).save(
            masks / f"{Path(name).stem}.png"
        )

    png = _bytes.BytesIO()
    Image.fromarray(_noise(32, 32, 1)).save(png, "PNG")
    put("good.png", Image.fromarray(_noise(32, 32, 0)))
    put("png_named.jpg", png.getvalue())  # a PNG with a .jpg name: decoded by content
    put("text [b].png", b"hello, I am not an image\n")
    put("zero.png", b"")
    put("truncated.png", png.getvalue()[: len(png.getvalue()) // 2])
    put("one.png", Image.fromarray(_noise(1, 1, 2)), np.zeros((1, 1), np.uint8))
    put("odd.png", Image.fromarray(_noise(5, 7, 3)))
    put("gray16.png", Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 61).astype(np.uint16)))
    put("cmyk.jpg", Image.fromarray(_noise(32, 32, 4)).convert("CMYK"))
    put("bomb.png", bomb_png())
    put("bomb_header.png", bomb_png(pixels=False))
    put("wrong_mask.png", Image.fromarray(_noise(32, 32, 5)), _hole(16, 16))
    put("all_hole.png", Image.fromarray(_noise(32, 32, 6)), np.full((32, 32), 255, np.uint8))
    put("no_hole.png", Image.fromarray(_noise(32, 32, 7)), np.zeros((32, 32), np.uint8))
    grey = np.zeros((32, 32), np.uint8)
    grey[:, :16] = 100  # below the threshold: known
    grey[8:20, 16:28] = 200  # above: hole
    put("grey_mask.png", Image.fromarray(_noise(32, 32, 8)), grey)
    put(UNICODE_NAME, Image.fromarray(_noise(32, 32, 9)))
    return images, masks


@pytest.fixture(scope="module")
def awkward(tmp_path_factory) -> tuple[Path, Path]:
    return _awkward_folder(tmp_path_factory.mktemp("awkward"))


@pytest.fixture(scope="module")
def filled(awkward, tmp_path_factory):
    """One ``fill`` run over the awkward folder: (result, output folder)."""
    from click.testing import CliRunner

    from inpaintkit.cli import main

    images, masks = awkward
    out = tmp_path_factory.mktemp("filled") / "out"
    args = [
        "fill",
        str(images),
        "--masks",
        str(masks),
        "-o",
        str(out),
        "--method",
        "patchmatch",
        "--device",
        "cpu",
        "--workers",
        "1",
    ]
    return CliRunner().invoke(main, args, catch_exceptions=False), out


def _known_unchanged(source: Path, mask: Path, output: Path) -> bool:
    original = np.asarray(Image.open(source))
    result = np.asarray(Image.open(output))
    known = np.asarray(Image.open(mask)) <= 127
    return original.shape == result.shape and np.array_equal(original[known], result[known])


def test_fill_reports_each_bad_file_in_one_line_and_fills_the_rest(awkward, filled):
    images, masks = awkward
    result, out = filled
    assert result.exit_code == 1  # some files failed
    lines = error_lines(result.stderr)
    assert len(lines) == len(FILL_FAILS), result.stderr
    for name, reason in FILL_FAILS.items():
        (line,) = [line for line in lines if line.startswith(f"error: {images / name}:")]
        assert re.search(reason, line), line
    assert f"failed {len(FILL_FAILS)}" in result.stderr
    written = {p.name for p in files_below(out)}
    expected = {p.name for p in images.iterdir()} - set(FILL_FAILS)
    assert written == expected  # every good file, and no temporary file left behind
    for name in ("good.png", "odd.png", "no_hole.png", "grey_mask.png", "one.png", UNICODE_NAME):
        assert _known_unchanged(images / name, masks / name, out / name), name


def test_fill_file_details(awkward, filled):
    images, _ = awkward
    _, out = filled
    # A PNG named .jpg is read by its content and written as the suffix says (JPEG).
    assert Image.open(out / "png_named.jpg").format == "JPEG"
    # 16-bit grey comes out as 8-bit grey, scaled by the full 16-bit range.
    gray = Image.open(out / "gray16.png")
    assert gray.mode == "L"
    source = np.asarray(Image.open(images / "gray16.png"), dtype=np.float64)
    known = _hole(32, 32) == 0
    assert np.array_equal(
        np.asarray(gray)[known], np.round(source / 65535 * 255)[known].astype(np.uint8)
    )
    cmyk = Image.open(out / "cmyk.jpg")
    assert (cmyk.mode, cmyk.size) == ("RGB", (32, 32))
    assert Image.open(out / "odd.png").size == (7, 5)
    # No hole: the output is the input, bit for bit.
    assert np.array_equal(
        np.asarray(Image.open(out / "no_hole.png")), np.asarray(Image.open(images / "no_hole.png"))
    )
    # Non-binary mask: 100 (<= 127) is known, 200 is a hole that was filled.
    grey = np.asarray(Image.open(out / "grey_mask.png"))
    assert np.array_equal(grey[:, :16], np.asarray(Image.open(images / "grey_mask.png"))[:, :16])


def test_fill_all_hole_mask_through_the_library_with_a_method_that_can(tmp_path):
    """An all-hole mask is a method question: mean colour (like DeepFill) fills it with grey."""
    Image.fromarray(_noise(8, 8, 0)).save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "a_mask.png")
    jobs = pair_files(tmp_path / "a.png", tmp_path / "a_mask.png", tmp_path / "out.png")
    summary = fill_files(jobs, MeanColorMethod(), FillOptions(workers=1), progress=False)
    assert (summary.filled, summary.failed) == (1, 0)
    assert np.all(np.asarray(Image.open(tmp_path / "out.png")) == 128)  # 0 in [-1, 1]


def test_animated_gif_uses_its_first_frame(tmp_path, invoke):
    frames = [Image.fromarray(_noise(16, 16, 0)), Image.fromarray(_noise(16, 16, 1))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "none.png")
    # GIF cannot be written: one line says what to do.
    result = invoke(
        "fill",
        tmp_path / "anim.gif",
        "--masks",
        tmp_path / "none.png",
        "-o",
        tmp_path / "o.gif",
        "--method",
        "patchmatch",
    )
    assert result.exit_code == 1 and "pass --format png" in result.stderr
    result = invoke(
        "fill",
        tmp_path / "anim.gif",
        "--masks",
        tmp_path / "none.png",
        "-o",
        tmp_path / "o.png",
        "--method",
        "patchmatch",
    )
    assert result.exit_code == 0, result.stderr
    first = np.asarray(Image.open(tmp_path / "anim.gif").convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), first)


def test_prepare_skips_each_bad_file_in_one_line_and_stores_the_rest(awkward, tmp_path, invoke):
    images, _ = awkward
    out = tmp_path / "data.h5"
    result = invoke("prepare", images, out, "--size", "8", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == len(PREPARE_SKIPS), result.stderr
    for name in PREPARE_SKIPS:
        assert any(line.startswith(f"skipped {images / name}: ") for line in skipped), name
    assert any("decompression bomb" in line and "bomb_header.png" in line for line in skipped)
    with h5py.File(out) as f:
        keys = set(f["keys"].asstr()[:])
        assert f["images"].shape[1:] == (8, 8, 3)
    assert keys == {p.name for p in images.iterdir()} - set(PREPARE_SKIPS)
    assert UNICODE_NAME in keys
    assert (tmp_path / "data.train.txt").read_text(encoding="utf-8").count("\n") == len(keys)


def test_prepare_pixel_limit_is_checked_from_the_header(tmp_path, invoke):
    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(_noise(40, 40, 0)).save(folder / "big.png")
    Image.fromarray(_noise(20, 20, 1)).save(folder / "small.png")
    result = invoke(
        "prepare",
        folder,
        tmp_path / "d.h5",
        "--size",
        "8",
        "--workers",
        "1",
        "--max-pixels",
        "1000",
    )
    assert result.exit_code == 0, result.stderr
    assert "big.png: 40x40 image exceeds the 1000-pixel limit" in result.stderr
    with h5py.File(tmp_path / "d.h5") as f:
        assert list(f["keys"].asstr()[:]) == ["small.png"]


def test_prepare_with_no_readable_image_fails_and_writes_nothing(tmp_path, invoke):
    folder = tmp_path / "img"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    result = invoke("prepare", folder, tmp_path / "d.h5", "--workers", "1")
    assert result.exit_code == 1
    assert "no readable image" in result.stderr
    assert not (tmp_path / "d.h5").exists()


def test_output_below_a_regular_file(awkward, tmp_path, invoke):
    """Unwritable output that stays unwritable as root: its parent is a regular file."""
    images, masks = awkward
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    result = invoke(
        "fill",
        images / "good.png",
        "--masks",
        masks / "good.png",
        "-o",
        blocker / "x.png",
        "--method",
        "patchmatch",
    )
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    assert f"cannot write {blocker / 'x.png'}" in line
    result = invoke("prepare", images, blocker / "d.h5", "--size", "8", "--workers", "1")
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    assert f"cannot write {blocker / 'd.h5'}" in line
    assert blocker.read_text() == "a file, not a folder"


@pytest.fixture
def tiny_disk(tmp_path):
    """A mounted 64 KiB tmpfs folder; skips when mounting is not permitted (not root, container)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


# HDF5 also fails to flush the file object it drops after the error; that is reported, not raised.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_full_disk(tiny_disk, tmp_path, invoke):
    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(20):  # ~7 KB each as noise PNGs: about 140 KB of output for a 64 KB disk
        Image.fromarray(_noise(48, 48, i)).save(folder / f"{i:02d}.png")
    hole = _hole(48, 48)
    Image.fromarray(hole).save(tmp_path / "mask.png")
    result = invoke(
        "fill",
        folder,
        "--masks",
        tmp_path / "mask.png",
        "-o",
        tiny_disk / "out",
        "--method",
        "patchmatch",
        "--workers",
        "1",
    )
    assert result.exit_code == 1
    lines = error_lines(result.stderr)
    assert lines and all("No space left on device" in line for line in lines), result.stderr
    written = files_below(tiny_disk / "out")
    assert 0 < len(written) < 20 and len(written) + len(lines) == 20
    for path in written:  # complete files only, each opens and keeps its known pixels
        assert not is_temporary(path)
        assert _known_unchanged(folder / path.name, tmp_path / "mask.png", path)

    for path in written:
        path.unlink()
    result = invoke("prepare", folder, tiny_disk / "d.h5", "--size", "48", "--workers", "1")
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    assert f"cannot write {tiny_disk / '.d.h5.parts'}: No space left on device" in line
    assert not (tiny_disk / "d.h5").exists()  # only the documented .d.h5.parts may remain
    assert all(p.relative_to(tiny_disk).parts[0] == ".d.h5.parts" for p in files_below(tiny_disk))


def test_prepare_refuses_a_write_the_disk_has_no_room_for(tmp_path, invoke, monkeypatch):
    """Free space is checked before HDF5 writes (a failed HDF5 write can crash the interpreter
    at exit); the committed parts stay for --resume once space is freed. Runs without a tmpfs."""
    import shutil

    import inpaintkit.prepare_store as prepare_store

    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(_noise(16, 16, i)).save(folder / f"{i}.png")
    real = shutil.disk_usage
    monkeypatch.setattr(prepare_store.shutil, "disk_usage", lambda p: real(p)._replace(free=4096))
    out = tmp_path / "d.h5"
    result = invoke("prepare", folder, out, "--size", "16", "--workers", "1")
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    assert f"cannot write {tmp_path / '.d.h5.parts'}: No space left on device (4 KiB free" in line
    assert not out.exists()
    monkeypatch.setattr(prepare_store.shutil, "disk_usage", real)
    assert (
        invoke("prepare", folder, out, "--size", "16", "--workers", "1", "--resume").exit_code == 0
    )
    with h5py.File(out) as f:
        assert len(f["keys"]) == 3
