"""The shipped default model: packaged, small, loadable by default, and better than a floor on real photos.

These tests read the real weights in ``inpaintkit/weights/`` (docs/model-card.md) and the
example photos that ship in ``examples/`` (scikit-image's sample photos with hand-drawn masks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from inpaintkit.checkpoint import DEFAULT_CHECKPOINT, load_generator, read_metadata
from inpaintkit.cli import main
from inpaintkit.io import read_mask, read_rgb
from inpaintkit.methods import DeepFillMethod, MeanColorMethod
from inpaintkit.tensors import image_to_tensor, mask_to_tensor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_weights_ship_in_the_package_as_fp16():
    assert DEFAULT_CHECKPOINT.is_file(), "the default model is missing from inpaintkit/weights/"
    assert DEFAULT_CHECKPOINT.stat().st_size <= 12 * 2**20
    with safe_open(str(DEFAULT_CHECKPOINT), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    meta = read_metadata(DEFAULT_CHECKPOINT)
    assert "name: default" in meta["recipe"]
    assert int(meta["step"]) > 0 and int(meta["samples"]) > 0 and float(meta["train_seconds"]) > 0
    generator = load_generator()  # no path: the packaged model
    assert generator.config.contextual_attention
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in generator.parameters())


def _hole_l1(filled: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    return float(((filled - truth).abs() * mask).sum() / (3 * mask.sum()))


def test_default_model_beats_the_mean_colour_floor_on_the_examples():
    """Mean hole ℓ1 over the four example photos (their masks over the original pixels)."""
    model, floor = DeepFillMethod(device="cpu"), MeanColorMethod()
    ours, theirs = [], []
    for image_path in sorted((EXAMPLES / "images").iterdir()):
        truth = image_to_tensor(read_rgb(image_path))
        mask = mask_to_tensor(read_mask(EXAMPLES / "masks" / f"{image_path.stem}.png"))
        erased = truth * (1 - mask)
        ours.append(_hole_l1(model(erased, mask), truth, mask))
        theirs.append(_hole_l1(floor(erased, mask), truth, mask))
    assert np.mean(ours) < 0.8 * np.mean(theirs), (ours, theirs)


def test_readme_fill_command_uses_the_default_model(tmp_path):
    """README's first command, minus the install: no --method, no --checkpoint."""
    out = tmp_path / "filled"
    result = CliRunner().invoke(
        main,
        [
            "fill",
            str(EXAMPLES / "images"),
            "--masks",
            str(EXAMPLES / "masks"),
            "-o",
            str(out),
            "--format",
            "png",
        ],
    )
    assert result.exit_code == 0, result.output
    for image_path in sorted((EXAMPLES / "images").iterdir()):
        filled = read_rgb(out / f"{image_path.stem}.png")
        original = read_rgb(image_path)
        hole = read_mask(EXAMPLES / "masks" / f"{image_path.stem}.png")
        assert filled.shape == original.shape
        assert np.array_equal(filled[~hole], original[~hole])  # known pixels untouched
        # The holes were filled by the model.
        assert not np.array_equal(filled[hole], original[hole])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_default_model_runs_in_both_cpu_precisions(precision):
    image = image_to_tensor(read_rgb(EXAMPLES / "images" / "chelsea.jpg"))
    mask = mask_to_tensor(read_mask(EXAMPLES / "masks" / "chelsea.png"))
    filled = DeepFillMethod(device="cpu", precision=precision)(image * (1 - mask), mask)
    assert filled.shape == image.shape and torch.isfinite(filled).all()
