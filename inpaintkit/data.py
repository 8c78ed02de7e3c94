"""The training Dataset over a file written by ``inpaintkit prepare`` (docs/prepare.md).

The HDF5 file is opened lazily, once per process: h5py handles must not cross a ``fork``,
so a DataLoader worker (or a DDP rank) that receives this object opens its own handle on
first use. Reads are per image, so any sampler (shuffled, DistributedSampler) works.
"""

from __future__ import annotations

import io as _bytes_io
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from inpaintkit import io
from inpaintkit.tensors import image_to_tensor

SMALL_IMAGE_MODES = ("upscale", "reflect")
OUTPUT_DTYPES = ("float32", "uint8")


class InpaintingDataset(Dataset):
    """Images of one split as float ``(3, S, S)`` tensors in ``[-1, 1]``, ``S = crop_size``.

    * ``split="train"`` crops at a random position and flips horizontally with probability
      1/2 (each switchable); ``split="val"`` always takes the centre crop, unflipped.
    * Images smaller than ``crop_size`` on a side are ``small="upscale"``d (bicubic, shorter
      side to ``crop_size``, aspect kept) or ``"reflect"``-padded (mirrored at the bottom and
      right, like :func:`inpaintkit.tensors.pad_to_multiple`).
    * ``seed=None`` draws augmentation from torch's generator (distinct per DataLoader worker);
      with a ``seed``, sample ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``, so a
      resumed run sees exactly the crops it would have seen. Call :meth:`set_epoch` per epoch.
    * ``dtype="uint8"`` yields the same pixels as uint8 ``(3, S, S)`` in ``[0, 255]`` instead;
      convert batches with :func:`inpaintkit.tensors.uint8_to_signed` (on the GPU, after the copy). A float32 sample
      is 4x the bytes, and moving bytes between DataLoader workers and the trainer through
      shared memory is what limits float32 loading (docs/prepare.md, "Loading speed").
    """

    def __init__(
        self,
        h5_path: str | os.PathLike,
        split: str = "train",
        crop_size: int = 256,
        random_crop: bool = True,
        random_flip: bool = True,
        small: str = "upscale",
        seed: int | None = None,
        dtype: str = "float32",
    ) -> None:
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        if small not in SMALL_IMAGE_MODES:
            raise ValueError(f"small must be one of {', '.join(SMALL_IMAGE_MODES)}, got {small!r}")
        if dtype not in OUTPUT_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(OUTPUT_DTYPES)}, got {dtype!r}")
        self.h5_path = Path(h5_path)
        self.split = split
        self.crop_size = crop_size
        self.random_crop = random_crop and split == "train"
        self.random_flip = random_flip and split == "train"
        self.small = small
        self.seed = seed
        self.dtype = dtype
        self.epoch = 0
        try:
            with h5py.File(self.h5_path, "r") as f:
                self.layout = str(f.attrs["layout"])
                count = int(f.attrs["num_images"])
                self.rows = np.arange(count) if split == "all" else f[f"{split}_index"][:]
                self.sizes = f["sizes"][:]
        except (OSError, KeyError) as err:
            raise ValueError(
                f"{self.h5_path}: not a file written by inpaintkit prepare ({err})"
            ) from None
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of ``epoch`` (only matters with a ``seed``)."""
        self.epoch = epoch

    def __getstate__(self) -> dict:
        # Never pickle an open handle into a worker; it reopens its own.
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def _images(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.h5_path, "r")
            self._pid = os.getpid()
        return self._file["images"]

    def read_image(self, row: int) -> np.ndarray:
        """Stored image ``row`` (a row of the file, not of the split) as uint8 ``(H, W, 3)``."""
        images = self._images()
        if self.layout == "fixed":
            return images[row]
        if self.layout == "variable":
            height, width = self.sizes[row]
            return images[row].reshape(height, width, 3)
        with Image.open(_bytes_io.BytesIO(images[row].tobytes())) as image:
            image.load()
            return io.to_rgb8(ImageOps.exif_transpose(image))

    def __getitem__(self, index: int) -> torch.Tensor:
        """Sample ``index`` of the split -> float ``(3, S, S)`` in ``[-1, 1]`` (or uint8, see ``dtype``)."""
        crop = self._read_crop(int(self.rows[index]), self._rng(index))
        if self.dtype == "uint8":
            # Channels first while still uint8: a contiguous sample, copied once.
            return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        return image_to_tensor(crop)[0]

    def _read_crop(self, row: int, rng: np.random.Generator) -> np.ndarray:
        """The ``S x S`` window of image ``row`` this sample uses, flipped if drawn, uint8."""
        size = self.crop_size
        images = self._images()
        if self.layout == "fixed" and min(images.shape[1:3]) >= size:
            # Read only the window: HDF5 copies S*S pixels instead of the whole image.
            top, left = self._corner(rng, *images.shape[1:3])
            crop = images[row, top : top + size, left : left + size]
        else:
            image = self._fit(self.read_image(row))
            top, left = self._corner(rng, *image.shape[:2])
            crop = image[top : top + size, left : left + size]
        if self.random_flip and rng.uniform() < 0.5:
            crop = crop[:, ::-1]
        return crop

    def _corner(self, rng: np.random.Generator, height: int, width: int) -> tuple[int, int]:
        """Top-left corner of the crop in a ``height x width`` image (both >= ``crop_size``)."""
        size = self.crop_size
        if self.random_crop:
            return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        return (height - size) // 2, (width - size) // 2

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            # torch's generator is seeded differently in every DataLoader worker.
            return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """Make both sides at least ``crop_size`` (upscale or reflect-pad)."""
        height, width = image.shape[:2]
        size = self.crop_size
        if height >= size and width >= size:
            return image
        if self.small == "upscale":
            scale = size / min(height, width)
            target = (max(size, round(width * scale)), max(size, round(height * scale)))
            return np.asarray(Image.fromarray(image).resize(target, Image.Resampling.BICUBIC))
        pad = ((0, max(0, size - height)), (0, max(0, size - width)), (0, 0))
        # numpy mirrors repeatedly when the pad is larger than the side; a 1-pixel side repeats.
        return np.pad(image, pad, mode="reflect" if min(height, width) > 1 else "edge")
