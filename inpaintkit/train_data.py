"""The training data stream: endless, deterministic batches of images and masks for one rank.

:class:`SampleStream` yields ``(image index, position)`` pairs that restart at any position;
:class:`TrainingSamples` turns a pair into a uint8 crop and its mask, each drawn from the
recipe seed and the position alone (so ``--resume`` continues bit for bit, whichever worker
loads a sample); :func:`open_images` opens the train split and :func:`batch_stream` runs the
DataLoader whose batches :mod:`inpaintkit.train` feeds to the :class:`~inpaintkit.trainer.Trainer`.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from inpaintkit.config import Recipe
from inpaintkit.data import InpaintingDataset
from inpaintkit.distributed import Distributed
from inpaintkit.masks import MaskSampler
from inpaintkit.trainer import Trainer, TrainingError


class SampleStream(Sampler):
    """Endless ``(image index, position)`` pairs of one rank, starting at ``start``.

    Position ``p`` lies in epoch ``p // per_rank`` where the order is that epoch's
    :class:`DistributedSampler` permutation, so the stream can restart at any position.
    """

    def __init__(self, length: int, seed: int, rank: int, world: int, start: int = 0) -> None:
        self.epochs = DistributedSampler(
            range(length), num_replicas=world, rank=rank, shuffle=True, seed=seed
        )
        self.per_rank = len(self.epochs)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        while True:
            epoch, offset = divmod(position, self.per_rank)
            self.epochs.set_epoch(epoch)
            for index in list(self.epochs)[offset:]:
                yield index, position
                position += 1


class TrainingSamples(Dataset):
    """``(index, position)`` -> ``(image uint8 (3, S, S) in [0, 255], mask bool (1, S, S), True = hole)``.

    Samples stay uint8/bool until :meth:`Trainer.prepare` has moved them to the device:
    they cross the DataLoader's process boundary through shared memory, where float32 is 4x
    the bytes and was measured to cap loading on a small machine (docs/prepare.md, "Loading speed").
    ``images`` is an ``InpaintingDataset(..., dtype="uint8")``.

    The image's random crop and flip draw from torch's generator, reseeded from
    ``(seed, position, rank)`` inside a fork: they do not depend on which worker loads the
    sample (nor on epochs), and the caller's generator is left untouched.
    """

    def __init__(
        self, images: Dataset, masks: MaskSampler, seed: int, rank: int, world: int
    ) -> None:
        self.images = images
        self.masks = masks
        self.seed = seed
        self.rank = rank
        self.world = world

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, position = item
        sample_seed = int(
            np.random.SeedSequence([self.seed, position, self.rank]).generate_state(1)[0]
        )
        # InpaintingDataset (seed=None) draws its crop and flip from torch's generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            image = self.images[index]
        mask = torch.from_numpy(self.masks(position * self.world + self.rank))[None]
        return image, mask


def open_images(recipe: Recipe, data: Path) -> InpaintingDataset:
    """The train split of ``data`` as uint8 crops of ``data.image_size`` (a :class:`TrainingError` if unusable)."""
    try:
        images = InpaintingDataset(
            data,
            split="train",
            crop_size=recipe.data.image_size,
            random_crop=recipe.data.random_crop,
            random_flip=recipe.data.random_flip,
            dtype="uint8",
        )
    except (ValueError, OSError) as err:
        message = str(err)
        raise TrainingError(message if str(data) in message else f"{data}: {message}") from None
    if len(images) == 0:
        raise TrainingError(f"{data}: the train split is empty")
    return images


def batch_stream(
    trainer: Trainer, images: InpaintingDataset, dist_info: Distributed, start: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's endless training batches from its sample ``start`` on, on the device.

    Each item is :meth:`Trainer.prepare`'s ``(image, mask)``. The DataLoader's workers start
    here, before the caller starts any thread of its own (e.g. TensorBoard's writer).
    """
    recipe = trainer.recipe
    seed, size, workers = recipe.schedule.seed, recipe.data.image_size, recipe.data.num_workers
    samples = TrainingSamples(
        images, MaskSampler(recipe.masks, size, size, seed), seed, dist_info.rank, dist_info.world
    )
    loader = DataLoader(
        samples,
        batch_size=recipe.data.batch_size,
        sampler=SampleStream(len(images), seed, dist_info.rank, dist_info.world, start=start),
        num_workers=workers,
        pin_memory=trainer.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # Its own generator, so creating the iterator does not draw from the global one.
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_ignore_stop_signals,
    )
    batches = iter(loader)
    return (trainer.prepare(image, mask) for image, mask in batches)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGINT/SIGTERM: the main process stops the run.

    Ctrl-C in a terminal (and schedulers such as SLURM) signal the whole process group. A
    worker killed that way takes the batches the current step still needs with it, and the
    run would crash instead of finishing the step and saving. The main process shuts the
    workers down itself when it returns.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
