"""Hostile model files given to ``inpaintkit fill --checkpoint`` and ``evaluate --checkpoint``.

Each is refused before any image is touched, in one line naming the file, with a non-zero
exit; a pickle whose unpickling would create a marker file never gets to create it.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import files_below
from PIL import Image
from safetensors.torch import save_file

from inpaintkit.checkpoint import save_generator
from inpaintkit.model.generator import Generator, GeneratorConfig

CONFIG = GeneratorConfig(channels=4)


class _Payload:
    """Unpickling this calls ``Path(marker).touch()``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _header(config: dict | None = None, **extra: str) -> dict[str, str]:
    return {
        "format": "inpaintkit.generator",
        "format_version": "1",
        "config": json.dumps(dataclasses.asdict(CONFIG) if config is None else config),
        **extra,
    }


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.detach().clone().contiguous() for k, v in Generator(CONFIG).state_dict().items()}


def _pickle(path: Path, marker: Path, protocol: int) -> None:
    path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=protocol))


def _torch_style_zip(path: Path, marker: Path) -> None:
    # The layout of torch.save: a zip whose data.pkl is the pickle.
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_Payload(marker), protocol=2))
        archive.writestr("archive/version", "3\n")


def _truncated(path: Path, marker: Path) -> None:
    good = path.with_name("good.safetensors")
    save_generator(good, Generator(CONFIG))
    data = good.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    good.unlink()


def _header_only(path: Path, marker: Path) -> None:
    # Only the 8-byte header length survived, and it claims a header larger than the file.
    path.write_bytes(struct.pack("<Q", 1 << 40))


def _wrong_shape(path: Path, marker: Path) -> None:
    state = _state()
    name = next(k for k, v in state.items() if v.ndim == 4)
    state[name] = torch.zeros(*state[name].shape[:-1], state[name].shape[-1] + 2)
    save_file(state, str(path), metadata=_header())


def _config_unknown_key(path: Path, marker: Path) -> None:
    config = {**dataclasses.asdict(CONFIG), "exec": "__import__('os').system('touch marker')"}
    save_file(_state(), str(path), metadata=_header(config))


def _foreign_format(path: Path, marker: Path) -> None:
    save_file(_state(), str(path), metadata={"format": "pt", "code": "import os"})


def _extra_tensor(path: Path, marker: Path) -> None:
    save_file({**_state(), "payload": torch.zeros(3)}, str(path), metadata=_header())


def _future_version(path: Path, marker: Path) -> None:
    save_file(_state(), str(path), metadata={**_header(), "format_version": "99"})


HOSTILE = {
    "pickle_protocol_4": (lambda p, m: _pickle(p, m, 4), "pickle"),
    "pickle_protocol_0": (lambda p, m: _pickle(p, m, 0), "not a readable safetensors"),
    "torch_save_zip": (_torch_style_zip, "zip archive"),
    "truncated": (_truncated, "safetensors|corrupt"),
    "header_only": (_header_only, "safetensors"),
    "wrong_shape": (_wrong_shape, "has shape"),
    "config_unknown_key": (_config_unknown_key, "unknown key"),
    "foreign_format": (_foreign_format, "not an inpaintkit generator"),
    "extra_tensor": (_extra_tensor, "unexpected tensors"),
    "future_version": (_future_version, "format_version"),
}


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> tuple[Path, Path]:
    """A 24x32 image and its mask (as files)."""
    folder = tmp_path_factory.mktemp("picture")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    hole = np.zeros((24, 32), np.uint8)
    hole[6:14, 8:20] = 255
    Image.fromarray(hole).save(folder / "a_mask.png")
    return folder / "a.png", folder / "a_mask.png"


@pytest.mark.parametrize("command", ["fill", "evaluate"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_checkpoint_is_refused_in_one_line(kind, command, picture, tmp_path, invoke):
    make, reason = HOSTILE[kind]
    marker = tmp_path / "MARKER"
    model = tmp_path / "model.safetensors"
    make(model, marker)
    out = tmp_path / "out"
    image, mask = picture
    if command == "fill":
        args = [
            "fill",
            image,
            "--masks",
            mask,
            "-o",
            out / "a.png",
            "--checkpoint",
            model,
            "--device",
            "cpu",
        ]
    else:
        args = [
            "evaluate",
            image.parent,
            "--checkpoint",
            model,
            "-o",
            out,
            "--size",
            "16",
            "--no-floors",
            "--quiet",
            "--device",
            "cpu",
        ]
    result = invoke(*args)
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(model) in lines[0] and lines[0].startswith("Error:")
    assert re.search(reason, lines[0]), lines[0]
    assert not marker.exists(), "unpickling ran code"
    # Nothing was written: the checkpoint is checked before any image is read.
    assert not out.exists() or not [p for p in files_below(out) if p.suffix == ".png"]


def test_pickle_payload_is_live(tmp_path):
    """The hostile pickles above really would run code if someone unpickled them."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "model.pkl"
    _pickle(path, marker, 4)
    pickle.loads(path.read_bytes())  # the one deliberate unpickling, of our own file
    assert marker.exists()


def test_good_checkpoint_with_extra_metadata_entries_still_works(picture, tmp_path, invoke):
    """Extra top-level metadata entries are plain strings (e.g. the training step): allowed."""
    model = tmp_path / "model.safetensors"
    save_generator(model, Generator(CONFIG), metadata={"step": "7", "note": "__import__('os')"})
    image, mask = picture
    result = invoke(
        "fill",
        image,
        "--masks",
        mask,
        "-o",
        tmp_path / "out.png",
        "--checkpoint",
        model,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.stderr
    original, filled = np.asarray(Image.open(image)), np.asarray(Image.open(tmp_path / "out.png"))
    known = np.asarray(Image.open(mask)) == 0
    assert np.array_equal(filled[known], original[known])
