"""inpaintkit prepare: layout, splits, determinism, robustness, resume after SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data as skdata

from inpaintkit.cli import main
from inpaintkit.data import InpaintingDataset
from inpaintkit.prepare import prepare_dataset, split_list_path
from inpaintkit.prepare_options import PrepareError, PrepareOptions
from inpaintkit.prepare_store import partial_path, parts_path


def _photos(folder, count=6, size=(90, 70)):
    """Distinct RGB PNGs cut from scikit-image's astronaut; returns their arrays by name."""
    folder.mkdir(parents=True, exist_ok=True)
    base = skdata.astronaut()
    arrays = {}
    for i in range(count):
        crop = np.ascontiguousarray(base[i * 7 : i * 7 + size[0], i * 11 : i * 11 + size[1]])
        name = f"img{i:03d}.png"
        Image.fromarray(crop).save(folder / name)
        arrays[name] = crop
    return arrays


def _content(path):
    with h5py.File(path, "r") as f:
        return {
            name: f[name][:] if f[name].dtype.kind != "O" else [bytes(x) for x in f[name][:]]
            for name in f
        }


def test_shorter_side_matches_plain_pillow(tmp_path):
    _photos(tmp_path / "src", count=3, size=(90, 70))
    out = tmp_path / "out" / "d.h5"
    prepare_dataset(tmp_path / "src", out, PrepareOptions(size=32), workers=1)
    with h5py.File(out, "r") as f:
        images, keys = f["images"][:], list(f["keys"].asstr()[:])
        assert f["original_sizes"][0].tolist() == [90, 70] and f["sizes"][0].tolist() == [32, 32]
    for key, stored in zip(keys, images, strict=True):
        src = Image.open(tmp_path / "src" / key)
        resized = src.resize((32, round(90 * 32 / 70)), Image.Resampling.LANCZOS)
        top = (resized.height - 32) // 2
        np.testing.assert_array_equal(stored, np.asarray(resized)[top : top + 32])


def test_splits_deterministic_disjoint_and_byte_identical(tmp_path):
    _photos(tmp_path / "src", count=10)
    opts = PrepareOptions(size=16, val_fraction=0.3, seed=7)
    prepare_dataset(tmp_path / "src", tmp_path / "a" / "d.h5", opts, workers=2)
    prepare_dataset(tmp_path / "src", tmp_path / "b" / "d.h5", opts, workers=1)
    assert (tmp_path / "a" / "d.h5").read_bytes() == (tmp_path / "b" / "d.h5").read_bytes()
    train = (tmp_path / "a" / "d.train.txt").read_text().split()
    val = (tmp_path / "a" / "d.val.txt").read_text().split()
    assert len(val) == 3 and len(train) == 7 and not set(train) & set(val)
    assert sorted(train + val) == [f"img{i:03d}.png" for i in range(10)]
    with h5py.File(tmp_path / "a" / "d.h5", "r") as f:
        keys = f["keys"].asstr()[:]
        assert [keys[i] for i in f["val_index"][:]] == val
    prepare_dataset(
        tmp_path / "src",
        tmp_path / "c" / "d.h5",
        PrepareOptions(size=16, val_fraction=0.3, seed=8),
        workers=1,
    )
    assert (tmp_path / "c" / "d.val.txt").read_text().split() != val


def test_given_lists_and_flist(tmp_path):
    _photos(tmp_path / "src", count=4)
    paths = sorted((tmp_path / "src").glob("*.png"))
    (tmp_path / "train.flist").write_text("".join(f"{p}\n" for p in paths[:3]))
    (tmp_path / "val.flist").write_text(f"{paths[3]}\n")
    opts = PrepareOptions(
        size=16, train_list=str(tmp_path / "train.flist"), val_list=str(tmp_path / "val.flist")
    )
    summary = prepare_dataset(None, tmp_path / "out" / "d.h5", opts, workers=1)
    assert (summary.train, summary.val) == (3, 1)
    assert (tmp_path / "out" / "d.val.txt").read_text() == "img003.png\n"
    summary = prepare_dataset(
        tmp_path / "train.flist", tmp_path / "o2" / "d.h5", PrepareOptions(size=16), workers=1
    )
    assert summary.written == 3


def test_corrupt_duplicate_and_formats_via_cli(tmp_path):
    src = tmp_path / "src"
    arrays = _photos(src, count=2)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    truncated = (src / "img000.png").read_bytes()
    (src / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    (src / "zcopy.png").write_bytes((src / "img001.png").read_bytes())
    rgb = arrays["img000.png"]
    Image.fromarray(rgb[..., 0]).save(src / "gray.bmp")
    Image.fromarray(rgb).convert("P").save(src / "palette.tif")
    Image.fromarray(rgb).convert("CMYK").save(src / "cmyk.jpg")
    Image.fromarray(rgb).save(src / "lossless.webp", lossless=True)
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(src / "deep.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(src / "alpha.png")
    out = tmp_path / "out" / "d.h5"
    result = CliRunner().invoke(
        main, ["prepare", str(src), str(out), "--size", "16", "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "broken.jpg" in result.output and "truncated.png" in result.output
    assert "duplicate" in result.output and "2 unreadable" in result.output
    with h5py.File(out, "r") as f:
        keys = set(f["keys"].asstr()[:])
        assert f.attrs["num_unreadable"] == 2 and f.attrs["num_duplicates"] == 1
        assert f.attrs["inpaintkit_version"] and f["images"].shape[1:] == (16, 16, 3)
    assert keys == {
        "img000.png",
        "img001.png",
        "gray.bmp",
        "palette.tif",
        "cmyk.jpg",
        "lossless.webp",
        "deep.png",
        "alpha.png",
    }
    info = CliRunner().invoke(main, ["prepare", "--info", str(out)])
    assert info.exit_code == 0 and "unreadable" in info.output and "16x16" in info.output


def test_nothing_readable_fails_and_bombs_refused(tmp_path):
    src = tmp_path / "src"
    _photos(src, count=1, size=(60, 60))
    result = CliRunner().invoke(
        main,
        [
            "prepare",
            str(src),
            str(tmp_path / "d.h5"),
            "--size",
            "8",
            "--max-pixels",
            "1000",
            "--workers",
            "1",
        ],
    )
    assert (
        result.exit_code == 1
        and "pixel limit" in result.output
        and "no readable image" in result.output
    )
    assert not (tmp_path / "d.h5").exists()


def test_option_errors():
    with pytest.raises(PrepareError, match="drop --size"):
        PrepareOptions(size=64, resize="none")
    with pytest.raises(PrepareError, match="--resize-to"):
        PrepareOptions(size=None, resize="fixed")
    result = CliRunner().invoke(
        main, ["prepare", "a", "b", "--resize", "fixed", "--resize-to", "big"]
    )
    assert result.exit_code != 0 and "HxW" in result.output


def test_celeba_geometry_and_variable_sizes(tmp_path):
    _photos(tmp_path / "src", count=2, size=(109, 89))
    out = tmp_path / "celeba" / "d.h5"
    result = CliRunner().invoke(
        main, ["prepare", str(tmp_path / "src"), str(out), "--resize", "celeba", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert f["images"].shape == (2, 315, 256, 3)
    Image.fromarray(skdata.camera()[:50, :80]).save(tmp_path / "src" / "small.png")
    out = tmp_path / "none" / "d.h5"
    prepare_dataset(tmp_path / "src", out, PrepareOptions(size=None, resize="none"), workers=1)
    with h5py.File(out, "r") as f:
        assert f.attrs["layout"] == "variable"
        assert sorted(map(tuple, f["sizes"][:].tolist())) == [(50, 80), (109, 89), (109, 89)]


def _kill_at_a_fifo(tmp_path, store, count=100, stop=80):
    """Start the real CLI in a child on a list whose entry ``stop`` is a FIFO (the child blocks
    reading it, with every part before it committed), SIGKILL it there, then put a PNG in its
    place. Returns ``(CLI arguments without OUT, OUT)``."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        name = src / f"n{i:03d}.png"
        if i == stop:
            os.mkfifo(name)
        else:
            Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(name)
        names.append(f"{name.name}\n")
    (src / "list.txt").write_text("".join(names))
    args = [str(src / "list.txt"), "--size", "16", "--store", store, "--val-count", "9"]
    args += ["--workers", "1"]
    out = tmp_path / "killed" / "d.h5"
    cmd = [sys.executable, "-c", "from inpaintkit.cli import main; main()", "prepare"]
    proc = subprocess.Popen([*cmd, args[0], str(out), *args[1:]], stderr=subprocess.DEVNULL)
    first_part = parts_path(out) / "part-000000.h5"
    deadline = time.time() + 60
    while time.time() < deadline and not first_part.exists() and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first_part.exists() and not out.exists()
    os.unlink(src / f"n{stop:03d}.png")
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(
        src / f"n{stop:03d}.png"
    )
    return args, out


@pytest.mark.parametrize("store", ["raw", pytest.param("encoded", marks=pytest.mark.slow)])
def test_sigkill_then_resume_keeps_the_committed_rows_and_matches_a_fresh_run(tmp_path, store):
    args, out = _kill_at_a_fifo(tmp_path, store)
    other = CliRunner().invoke(main, ["prepare", args[0], str(out), "--size", "8", "--resume"])
    assert other.exit_code == 1
    assert f"{parts_path(out)}: was started with other options; rerun without --resume" in (
        other.output
    )
    (parts_path(out) / "part-000005.h5").write_bytes(b"not from this run")  # after a gap: ignored
    result = CliRunner().invoke(main, ["prepare", args[0], str(out), *args[1:], "--resume"])
    assert result.exit_code == 0, result.output
    # The 64 rows of the committed part were kept, not redone.
    assert "100 images (91 train, 9 val), 64 from the interrupted run" in result.output
    assert not parts_path(out).exists() and not partial_path(out).exists()
    reference = tmp_path / "clean" / "d.h5"
    fresh = CliRunner().invoke(main, ["prepare", args[0], str(reference), *args[1:]])
    assert fresh.exit_code == 0, fresh.output
    assert out.read_bytes() == reference.read_bytes()  # the whole file, byte for byte
    assert (out.parent / "d.val.txt").read_text() == (reference.parent / "d.val.txt").read_text()


def test_an_existing_output_is_kept_unless_overwrite(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i, image in enumerate([skdata.astronaut(), skdata.coffee()]):
        Image.fromarray(image[:64, :64]).save(src / f"{i}.png")
    out = tmp_path / "d.h5"
    args = ["prepare", str(src), str(out), "--size", "16", "--workers", "1"]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = out.read_bytes()
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "already exists; pass --overwrite" in refused.output
    assert out.read_bytes() == before
    finished = CliRunner().invoke(main, [*args, "--resume"])  # nothing left to resume
    assert finished.exit_code == 0 and "is complete: 2 images" in finished.output
    assert out.read_bytes() == before
    replaced = CliRunner().invoke(main, [*args[:3], "--size", "8", "--workers", "1", "--overwrite"])
    assert replaced.exit_code == 0
    with h5py.File(out) as f:
        assert f["images"].shape[1:3] == (8, 8)


def test_two_datasets_in_one_folder_keep_their_own_key_lists(tmp_path):
    _photos(tmp_path / "a", count=4)
    _photos(tmp_path / "b", count=6)
    prepare_dataset(
        tmp_path / "a",
        tmp_path / "out" / "photos.h5",
        PrepareOptions(size=16, val_count=1),
        workers=1,
    )
    prepare_dataset(
        tmp_path / "b",
        tmp_path / "out" / "more.h5",
        PrepareOptions(size=16, val_count=2),
        workers=1,
    )
    assert (
        split_list_path(tmp_path / "out" / "photos.h5", "val")
        == tmp_path / "out" / "photos.val.txt"
    )
    lists = {p.name: len(p.read_text().split()) for p in (tmp_path / "out").glob("*.txt")}
    assert lists == {
        "photos.train.txt": 3,
        "photos.val.txt": 1,
        "more.train.txt": 4,
        "more.val.txt": 2,
    }


def test_empty_input_leaves_nothing_and_refusals_come_before_any_progress(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    _photos(tmp_path / "src", count=2)
    out = tmp_path / "out" / "d.h5"
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich then draws its bar as on a terminal
    args = ["prepare", str(tmp_path / "src"), str(out), "--size", "8", "--workers", "1"]
    drawn = CliRunner().invoke(main, args)
    assert drawn.exit_code == 0 and "prepare" in drawn.stderr.splitlines()[0]  # the bar, first
    quiet = CliRunner().invoke(main, [*args[:2], str(tmp_path / "q.h5"), *args[3:], "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr.startswith("wrote ")
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1
    assert refused.stderr == f"Error: {out} already exists; pass --overwrite to replace it\n"
    empty = CliRunner().invoke(
        main, ["prepare", str(tmp_path / "empty"), str(tmp_path / "e" / "e.h5")]
    )
    assert empty.exit_code == 1
    (line,) = empty.stderr.splitlines()
    assert line.startswith(f"Error: {tmp_path / 'empty'}: no images found")
    assert not (tmp_path / "e").exists() or not list((tmp_path / "e").iterdir())
    # Inputs that are all unreadable: no partial file either.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"not a png")
    bad = CliRunner().invoke(
        main, ["prepare", str(tmp_path / "bad"), str(tmp_path / "b" / "b.h5"), "--workers", "1"]
    )
    assert bad.exit_code == 1 and "no readable image" in bad.stderr
    assert list((tmp_path / "b").iterdir()) == []


def _jpeg(path, array, **kwargs):
    Image.fromarray(array).save(path, quality=90, **kwargs)
    return path.read_bytes()


def test_encoded_keeps_unchanged_jpeg_bytes_and_encodes_the_rest_as_asked(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    base = skdata.astronaut()
    kept = _jpeg(src / "a_kept.jpg", base[:32, :32])
    _jpeg(src / "b_resized.jpg", base[40:88, 40:80])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    _jpeg(src / "c_rotated.jpg", base[100:132, 100:132], exif=exif.tobytes())
    _jpeg(src / "d_gray.jpg", base[200:232, 200:232, 0])
    args = ["prepare", str(src), "--size", "32", "--workers", "1"]
    assert CliRunner().invoke(main, [*args[:2], str(tmp_path / "raw.h5"), *args[2:]]).exit_code == 0
    raw = InpaintingDataset(tmp_path / "raw.h5", split="all", crop_size=32)
    signatures = {
        "png": b"\x89PNG",
        "webp": b"RIFF",
        "jpeg:80": b"\xff\xd8\xff",
        "webp:80": b"RIFF",
    }
    for encode, signature in signatures.items():
        out = tmp_path / encode.replace(":", "_") / "d.h5"
        result = CliRunner().invoke(
            main, [*args[:2], str(out), *args[2:], "--store", "encoded", "--encode", encode]
        )
        assert result.exit_code == 0, result.output
        assert f"1 of 4 as their own file bytes, 3 encoded as {encode}" in result.stderr
        assert re.search(
            r"stored [\d.]+ kB for [\d.]+ kB of source files \([\d.]+x the source size",
            result.stderr,
        )
        with h5py.File(out) as f:
            stored = {key: bytes(f["images"][i]) for i, key in enumerate(f["keys"].asstr()[:])}
        assert stored.pop("a_kept.jpg") == kept
        assert all(data.startswith(signature) for data in stored.values()), encode
        loaded = InpaintingDataset(out, split="all", crop_size=32)
        for i in range(4):
            error = np.abs(loaded.read_image(i).astype(int) - raw.read_image(i).astype(int)).mean()
            assert error == 0 if ":" not in encode else error < 6, (encode, i, error)
    # Deterministic, whatever the worker count; the old --encode jpeg --quality Q still works.
    again = tmp_path / "again" / "d.h5"
    result = CliRunner().invoke(
        main,
        [
            *args[:2],
            str(again),
            "--size",
            "32",
            "--workers",
            "2",
            "--store",
            "encoded",
            "--encode",
            "jpeg",
            "--quality",
            "80",
        ],
    )
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == (tmp_path / "jpeg_80" / "d.h5").read_bytes()
    for bad in ("gif", "png:50", "jpeg:0", "webp:high"):
        result = CliRunner().invoke(main, [*args[:2], str(tmp_path / "x.h5"), "--encode", bad])
        assert result.exit_code == 2 and f"--encode {bad!r}" in result.output, result.output
