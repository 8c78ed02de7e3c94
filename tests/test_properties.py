"""Property-based tests (hypothesis): mask pairing, padding round trips, the compositing invariant.

Each property is checked against a plain reference written here, on small random cases;
example counts are bounded and deadlines off (the machine is shared and slow).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inpaintkit.fill import fill_files
from inpaintkit.fill_options import FillOptions
from inpaintkit.fill_plan import pair_files
from inpaintkit.inpaint import inpaint
from inpaintkit.methods import MeanColorMethod
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.pairing import MASK_SUFFIX
from inpaintkit.tensors import crop_to, pad_to_multiple

# derandomize: the same examples on every run (no flaky CI); database=None: nothing written to disk.
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- pairing

_stems = st.sampled_from(["a", "b", "c", "a_mask", "x y", "ü"])
_folders = st.sampled_from(["", "sub", "sub/deeper"])
#: Per image: which mask files exist beside it ("plain" = STEM.png, "suffixed" = STEM_mask.png).
_mask_kinds = st.sampled_from(
    [(), ("plain",), ("suffixed",), ("plain", "suffixed"), ("plain_jpg", "plain")]
)


def _expected_pairing(images: dict[Path, tuple[str, ...]], masks_root: Path) -> dict[Path, object]:
    """Plain reference: relative image path -> its one mask path, or "problem"."""
    existing = set()
    for relative, kinds in images.items():
        stem = relative.with_suffix("")
        for kind in kinds:
            name = {
                "plain": f"{stem.name}.png",
                "suffixed": f"{stem.name}{MASK_SUFFIX}.png",
                "plain_jpg": f"{stem.name}.jpg",
            }[kind]
            existing.add(stem.parent / name)
    expected = {}
    for relative in images:
        stem = relative.with_suffix("")
        candidates = [
            m
            for m in sorted(existing)
            if m.parent == stem.parent and m.stem in (stem.name, stem.name + MASK_SUFFIX)
        ]
        expected[relative] = masks_root / candidates[0] if len(candidates) == 1 else "problem"
    return expected


@SETTINGS
@given(st.dictionaries(st.tuples(_folders, _stems), _mask_kinds, min_size=1, max_size=6))
def test_pair_files_matches_the_plain_rule(layout):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images_root, masks_root = root / "images", root / "masks"
        pixel = Image.new("RGB", (2, 2))
        images = {}
        for (folder, stem), kinds in layout.items():
            relative = Path(folder) / f"{stem}.png"
            (images_root / folder).mkdir(parents=True, exist_ok=True)
            (masks_root / folder).mkdir(parents=True, exist_ok=True)
            pixel.save(images_root / relative)
            images[relative] = kinds
            for kind in kinds:
                name = {
                    "plain": f"{stem}.png",
                    "suffixed": f"{stem}{MASK_SUFFIX}.png",
                    "plain_jpg": f"{stem}.jpg",
                }[kind]
                Image.new("L", (2, 2)).save(masks_root / folder / name)
        jobs = pair_files(images_root, masks_root, root / "out")
        expected = _expected_pairing(images, masks_root)
        assert {job.relative for job in jobs} == set(expected)
        for job in jobs:
            if expected[job.relative] == "problem":
                assert job.mask is None and job.problem
            else:
                assert job.problem is None and job.mask == expected[job.relative]
            assert job.output == root / "out" / job.relative


# --------------------------------------------------------------------------- padding


def _reference_pad(x: np.ndarray, multiple: int) -> np.ndarray:
    """Bottom/right padding to a multiple: mirror without repeating the edge, or repeat it."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    mode = "reflect" if pad_h < height and pad_w < width else "edge"
    return np.pad(x, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode=mode)


@SETTINGS
@given(
    st.integers(1, 2),
    st.integers(1, 3),
    st.integers(1, 21),
    st.integers(1, 21),
    st.integers(1, 16),
    st.integers(0, 9),
)
def test_pad_then_crop_is_the_identity(n, channels, height, width, multiple, seed):
    x = torch.from_numpy(
        np.random.default_rng(seed).standard_normal((n, channels, height, width)).astype(np.float32)
    )
    padded, size = pad_to_multiple(x, multiple)
    assert size == (height, width)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert (
        height <= padded.shape[-2] < height + multiple
        and width <= padded.shape[-1] < width + multiple
    )
    assert np.array_equal(padded.numpy(), _reference_pad(x.numpy(), multiple))
    assert torch.equal(crop_to(padded, size), x)


# --------------------------------------------------------------------------- compositing


def _random_case(
    draw_seed: int, height: int, width: int, hole_share: float
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(draw_seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    hole = rng.random((height, width)) < hole_share
    return image, hole


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 40), st.floats(0.0, 1.0), st.integers(0, 2**16))
def test_fill_keeps_every_known_pixel_with_mean_color(height, width, hole_share, seed):
    image, hole = _random_case(seed, height, width, hole_share)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        Image.fromarray(image).save(root / "img.png")
        Image.fromarray(hole.astype(np.uint8) * 255).save(root / "img_mask.png")
        jobs = pair_files(root / "img.png", root / "img_mask.png", root / "out.png")
        summary = fill_files(jobs, MeanColorMethod(), FillOptions(workers=1), progress=False)
        assert (summary.filled, summary.failed) == (1, 0)
        result = np.asarray(Image.open(root / "out.png"))
    assert result.shape == image.shape
    assert np.array_equal(result[~hole], image[~hole])
    if hole.any():
        # Reference: the mean of the known pixels in [-1, 1], back to 8 bits (grey if none known).
        known = image[~hole].astype(np.float64) / 127.5 - 1.0
        mean = known.mean(axis=0) if len(known) else np.zeros(3)
        expected = np.round((mean + 1.0) * 127.5)
        # At most 1: float32 sums vs float64.
        assert np.abs(result[hole].astype(np.float64) - expected).max() <= 1


@settings(SETTINGS, max_examples=12)
@given(st.integers(1, 37), st.integers(1, 37), st.floats(0.0, 1.0), st.integers(0, 2**16))
def test_inpaint_keeps_every_known_pixel_with_a_random_generator(height, width, hole_share, seed):
    torch.manual_seed(seed)
    generator = Generator(GeneratorConfig(channels=4)).eval()
    image, hole = _random_case(seed, height, width, hole_share)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    mask = torch.from_numpy(hole)[None, None].float()
    result = inpaint(generator, x, mask).image
    assert result.shape == x.shape
    known = ~torch.from_numpy(hole).expand(1, 3, height, width)
    assert torch.equal(result[known], x[known])  # bit for bit
    assert torch.isfinite(result).all() and result.abs().max() <= 1.0
