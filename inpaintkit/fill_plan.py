"""Which images a ``fill`` run fills, into which files, and in what order.

:func:`pair_files` pairs each image with its mask (:mod:`inpaintkit.pairing`) and names its
output; :func:`shard_jobs` keeps a job array's share; :func:`plan_fill` sorts the jobs into
failures, skips and work, ordered by working size from the file headers alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from inpaintkit.fill_images import header_size
from inpaintkit.fill_options import FillError, FillJob, FillOptions
from inpaintkit.hd_strategy import work_bound
from inpaintkit.io import IMAGE_SUFFIXES
from inpaintkit.pairing import PairingError, pair_masks
from inpaintkit.sharding import Shard, interleave

# --------------------------------------------------------------------------- pairing


def output_path(relative: Path, output: Path, format: str | None, single_file: bool) -> Path:
    """Where the image at ``relative`` (under IMAGES) is written.

    With a single input file, an ``output`` that has an image suffix is the output file itself;
    otherwise ``output`` is a folder mirroring IMAGES. ``format`` replaces the suffix.
    """
    if single_file and output.suffix.lower() in IMAGE_SUFFIXES:
        target = output
    else:
        target = output / relative
    return target.with_suffix(f".{format.lower()}") if format else target


def pair_files(
    images: str | os.PathLike,
    masks: str | os.PathLike,
    output: str | os.PathLike,
    format: str | None = None,
    attention_dir: str | os.PathLike | None = None,
) -> list[FillJob]:
    """Pair every image below ``images`` (or the one file) with its mask: one job each.

    The pairing is :func:`inpaintkit.pairing.pair_masks`: ``masks`` is either one file used
    for every image, or a folder searched at the image's relative sub-folder for ``<stem>.*``
    and ``<stem>_mask.*``; exactly one candidate must exist, none or several make a job with a
    ``problem``. Files inside ``output`` or ``attention_dir`` are not inputs (so a re-run does
    not fill its own outputs), and when images and masks share a folder, files serving as
    masks are not filled themselves.
    """
    images, output = Path(images), Path(output)
    try:
        pairs = pair_masks(
            images, masks, exclude=(output if output.is_dir() else None, attention_dir)
        )
    except PairingError as err:
        raise FillError(str(err)) from None
    single = images.is_file()
    return [
        FillJob(
            pair.image,
            pair.mask,
            output_path(pair.relative, output, format, single),
            pair.relative,
            pair.problem,
        )
        for pair in pairs
    ]


def shard_jobs(jobs: list[FillJob], shard: Shard | None) -> list[FillJob]:
    """The jobs of ``shard`` of a job array (every job without one), in order.

    A job belongs to the shard that owns its image's relative path (:meth:`Shard.owns`), so
    the split does not depend on which outputs exist: a re-run of a shard is the same shard.
    """
    return jobs if shard is None else [j for j in jobs if shard.owns(j.relative.as_posix())]


# --------------------------------------------------------------------------- planning


@dataclass
class FillPlan:
    """What a run will do with its jobs, decided before any image is decoded."""

    failed: list[tuple[FillJob, str]]  # jobs pairing could not serve, with its reason, in job order
    skipped: list[FillJob]  # outputs that exist already (and are not to be overwritten)
    # To fill: same working sizes together (from the file headers), then by path.
    todo: list[FillJob]

    def __len__(self) -> int:
        return len(self.failed) + len(self.skipped) + len(self.todo)

    def part(self, rank: int, world: int) -> FillPlan:
        """Rank ``rank``'s share of every list (:func:`inpaintkit.sharding.interleave`).

        The failures and skips are shared out too, so the ranks' summaries add up to the
        single process's.
        """
        return FillPlan(
            *(interleave(items, rank, world) for items in (self.failed, self.skipped, self.todo))
        )


def plan_fill(jobs: list[FillJob], options: FillOptions) -> FillPlan:
    """Sort ``jobs`` into failures, skips and work, and order the work (reads file headers only).

    Header sizes only order the work so that same-size images arrive together; the batches
    themselves are formed from the decoded sizes.
    """
    plan = FillPlan(failed=[], skipped=[], todo=[])
    for job in jobs:
        if job.problem is not None:
            plan.failed.append((job, job.problem))
        elif job.output.exists() and not options.overwrite:
            plan.skipped.append(job)
        else:
            plan.todo.append(job)

    def order(job: FillJob) -> tuple[tuple[int, int], str]:
        size = header_size(job.image) or (0, 0)
        return work_bound(size, options.hd_strategy, options.max_size), str(job.relative)

    plan.todo.sort(key=order)
    return plan
