"""Image/mask reading and atomic writing (inpaintkit/io.py)."""

import numpy as np
import pytest
from PIL import Image

from inpaintkit.io import (
    ImageReadError,
    atomic_write,
    is_temporary,
    list_images,
    read_mask,
    read_rgb,
)


def test_atomic_write_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.png"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and is_temporary(tmp)
        Image.new("RGB", (4, 4)).save(tmp)
        assert not target.exists()
    assert target.exists()
    assert list(target.parent.iterdir()) == [target]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_read_rgb_converts_modes(tmp_path):
    gray = Image.fromarray(np.full((3, 5), 200, np.uint8), "L")
    gray.save(tmp_path / "g.png")
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))  # fully transparent -> white
    rgba.save(tmp_path / "a.png")
    sixteen = Image.fromarray(np.full((2, 2), 65535, np.uint16))
    sixteen.save(tmp_path / "s.png")
    cmyk = Image.new("CMYK", (2, 2), (0, 0, 0, 0))
    cmyk.save(tmp_path / "c.jpg")
    assert read_rgb(tmp_path / "g.png").shape == (3, 5, 3)
    assert (read_rgb(tmp_path / "g.png") == 200).all()
    assert (read_rgb(tmp_path / "a.png") == 255).all()
    assert (read_rgb(tmp_path / "s.png") == 255).all()
    assert read_rgb(tmp_path / "c.jpg").min() > 240


def test_read_rgb_applies_exif_orientation(tmp_path):
    image = Image.new("RGB", (4, 2))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert read_rgb(tmp_path / "r.jpg").shape == (4, 2, 3)


def test_read_rgb_refuses_bad_files_with_a_reason(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_bytes(b"not an image")
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:40])
    for name in ["empty.png", "text.jpg", "cut.png", "missing.png"]:
        with pytest.raises(ImageReadError):
            read_rgb(tmp_path / name)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_rgb(tmp_path / "ok.png", max_pixels=100)


def test_read_mask_thresholds_and_inverts(tmp_path):
    values = np.array([[0, 127], [128, 255]], np.uint8)
    Image.fromarray(values, "L").save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[False, False], [True, True]]
    assert read_mask(tmp_path / "m.png", invert=True).tolist() == [[True, True], [False, False]]


def test_list_images_skips_hidden_temporary_and_other_files(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ["a.JPG", "b/c.png", ".hidden.png", "notes.txt", "b/.x.tmp.png"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.JPG",
        "b/c.png",
    ]


def test_atomic_write_gives_normal_permissions(tmp_path):
    import os

    target = tmp_path / "out.bin"
    with atomic_write(target) as tmp:
        tmp.write_bytes(b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_sweeps_a_killed_writers_temporary(tmp_path):
    target = tmp_path / "a.png"
    stale = tmp_path / ".a.k1ll3dxx.tmp.png"  # what mkstemp leaves when the writer is SIGKILLed
    stale.write_bytes(b"half")
    # Other targets' temporaries (of "ab.png" and "a.b.png") are not touched.
    others = [".ab.k1ll3dxx.tmp.png", ".a.b.k1ll3dx.tmp.png"]
    for name in others:
        (tmp_path / name).write_bytes(b"x")
    with atomic_write(target) as tmp:
        tmp.write_bytes(b"done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, "a.png"])


def test_write_text_is_utf8_and_atomic(tmp_path):
    from inpaintkit.io import write_text

    target = tmp_path / "sub" / "t.txt"
    write_text(target, "naïve ✓\n")
    assert target.read_bytes() == "naïve ✓\n".encode()
    assert list(target.parent.iterdir()) == [target]
