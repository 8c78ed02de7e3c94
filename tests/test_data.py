"""InpaintingDataset: pixel-exact round trips, crops, flips, small images, workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torch.utils.data import DataLoader

from inpaintkit.data import InpaintingDataset
from inpaintkit.prepare import prepare_dataset
from inpaintkit.prepare_options import PrepareOptions
from inpaintkit.tensors import image_to_tensor, tensor_to_image, uint8_to_signed


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    arrays = {
        "coffee.png": skdata.coffee()[:70, :90],
        "chelsea.png": skdata.chelsea()[:64, :80],
        "astronaut.jpg": skdata.astronaut()[:72, :72],
    }
    for name, array in arrays.items():
        Image.fromarray(array).save(folder / name)
    # What a reader decodes from each file (the JPEG is lossy).
    return folder, {name: np.asarray(Image.open(folder / name).convert("RGB")) for name in arrays}


@pytest.mark.parametrize("store", ["raw", "encoded"])
def test_round_trip_pixel_exact(tmp_path, sources, store):
    folder, decoded = sources
    out = tmp_path / "d.h5"
    prepare_dataset(folder, out, PrepareOptions(size=None, resize="none", store=store), workers=1)
    dataset = InpaintingDataset(
        out, split="all", crop_size=60, random_crop=False, random_flip=False
    )
    keys = sorted(decoded)
    assert len(dataset) == 3
    for i, key in enumerate(keys):
        original = decoded[key]
        np.testing.assert_array_equal(dataset.read_image(i), original)
        top, left = (original.shape[0] - 60) // 2, (original.shape[1] - 60) // 2
        sample = dataset[i]
        assert sample.shape == (3, 60, 60) and sample.dtype == torch.float32
        assert -1 <= sample.min() and sample.max() <= 1
        np.testing.assert_array_equal(
            tensor_to_image(sample[None])[0], original[top : top + 60, left : left + 60]
        )


def test_encoded_png_equals_raw_after_resize(tmp_path, sources):
    folder, _ = sources
    raw, enc = tmp_path / "r" / "d.h5", tmp_path / "e" / "d.h5"
    prepare_dataset(folder, raw, PrepareOptions(size=48), workers=1)
    prepare_dataset(folder, enc, PrepareOptions(size=48, store="encoded"), workers=1)
    a = InpaintingDataset(raw, split="all", crop_size=48)
    b = InpaintingDataset(enc, split="all", crop_size=48)
    for i in range(3):
        np.testing.assert_array_equal(a.read_image(i), b.read_image(i))
    assert enc.stat().st_size < raw.stat().st_size * 3


def test_random_crop_flip_and_seeded_epochs(tmp_path, sources):
    folder, _ = sources
    out = tmp_path / "d.h5"
    prepare_dataset(folder, out, PrepareOptions(size=None, resize="none"), workers=1)
    dataset = InpaintingDataset(out, split="train", crop_size=32, seed=3)
    flips = 0
    for index in range(len(dataset)):
        image = dataset.read_image(int(dataset.rows[index]))
        for epoch in range(8):
            dataset.set_epoch(epoch)
            crop = tensor_to_image(dataset[index][None])[0]
            again = tensor_to_image(dataset[index][None])[0]
            np.testing.assert_array_equal(crop, again)
            # Brute force: the sample is some 32x32 window of the image, maybe mirrored.
            matches = [
                (flip, y, x)
                for flip in (False, True)
                for y in range(image.shape[0] - 31)
                for x in range(image.shape[1] - 31)
                if np.array_equal(
                    image[y : y + 32, x : x + 32][:, ::-1]
                    if flip
                    else image[y : y + 32, x : x + 32],
                    crop,
                )
            ]
            assert matches
            flips += matches[0][0]
    assert 0 < flips < 24
    dataset.set_epoch(0)
    first = dataset[0]
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0])


def _reflect_reference(image, size):
    """Mirror (without repeating the edge) at the bottom/right until both sides reach ``size``."""

    def mirror(i, n):
        period = 2 * (n - 1)
        i %= period
        return i if i < n else period - i

    h, w = image.shape[:2]
    out = np.empty((max(h, size), max(w, size), 3), image.dtype)
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            out[y, x] = image[mirror(y, h), mirror(x, w)]
    return out


def test_small_images_reflect_and_upscale(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    small = np.random.default_rng(0).integers(0, 256, (10, 24, 3), dtype=np.uint8)
    Image.fromarray(small).save(folder / "s.png")
    out = tmp_path / "d.h5"
    prepare_dataset(folder, out, PrepareOptions(size=None, resize="none"), workers=1)
    padded = InpaintingDataset(
        out, split="all", crop_size=32, random_crop=False, random_flip=False, small="reflect"
    )
    expected = _reflect_reference(small, 32)
    np.testing.assert_array_equal(tensor_to_image(padded[0][None])[0], expected)
    upscaled = InpaintingDataset(
        out, split="all", crop_size=32, random_crop=False, random_flip=False
    )
    reference = np.asarray(Image.fromarray(small).resize((77, 32), Image.Resampling.BICUBIC))
    left = (77 - 32) // 2
    np.testing.assert_array_equal(
        tensor_to_image(upscaled[0][None])[0], reference[:, left : left + 32]
    )


def test_val_split_and_dataloader_workers(tmp_path, sources):
    folder, _ = sources
    out = tmp_path / "d.h5"
    prepare_dataset(folder, out, PrepareOptions(size=40, val_count=1), workers=1)
    val = InpaintingDataset(out, split="val", crop_size=32)
    assert len(val) == 1 and not val.random_crop and not val.random_flip
    train = InpaintingDataset(out, split="train", crop_size=32, seed=1)
    single = torch.stack([train[i] for i in range(len(train))])
    train._images()  # a handle opened in the parent must not travel to the workers
    loader = DataLoader(train, batch_size=2, num_workers=2, multiprocessing_context="fork")
    batched = torch.cat(list(loader))
    assert torch.equal(single, batched)
    with pytest.raises(ValueError, match="not a file written by inpaintkit prepare"):
        InpaintingDataset(tmp_path / "missing.h5")


@pytest.mark.parametrize(
    "options",
    [
        PrepareOptions(size=None, resize="fixed", resize_to=(40, 48)),  # window read from HDF5
        PrepareOptions(size=None, resize="none"),
        PrepareOptions(size=None, resize="none", store="encoded"),
    ],
    ids=["fixed", "variable", "encoded"],
)
def test_samples_match_plain_crop_reference(tmp_path, sources, options):
    folder, _ = sources
    out = tmp_path / "d.h5"
    prepare_dataset(folder, out, options, workers=1)
    seed, size = 5, 32
    dataset = InpaintingDataset(out, split="train", crop_size=size, seed=seed)
    as_bytes = InpaintingDataset(out, split="train", crop_size=size, seed=seed, dtype="uint8")
    flips = 0
    for epoch in range(6):
        dataset.set_epoch(epoch)
        as_bytes.set_epoch(epoch)
        for index in range(len(dataset)):
            # The plain way: whole image, the seeded draws in order (top, left, flip), slice.
            image = dataset.read_image(int(dataset.rows[index]))
            rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))
            top = rng.integers(0, image.shape[0] - size + 1)
            left = rng.integers(0, image.shape[1] - size + 1)
            expected = image[top : top + size, left : left + size]
            if rng.uniform() < 0.5:
                expected = expected[:, ::-1]
                flips += 1
            np.testing.assert_array_equal(tensor_to_image(dataset[index][None])[0], expected)
            raw = as_bytes[index]
            assert raw.dtype == torch.uint8 and raw.shape == (3, size, size)
            assert raw.is_contiguous()
            np.testing.assert_array_equal(raw.permute(1, 2, 0).numpy(), expected)
    assert 0 < flips < 18


def test_uint8_to_signed_equals_image_to_tensor():
    pixels = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    converted = uint8_to_signed(batch, "cpu")
    assert converted.dtype == torch.float32
    assert torch.equal(converted, image_to_tensor(pixels))
    assert converted.min() >= -1 and converted.max() <= 1
    with pytest.raises(TypeError, match="uint8"):
        uint8_to_signed(converted)
    with pytest.raises(ValueError, match="dtype must be one of"):
        InpaintingDataset("unused.h5", dtype="float16")
