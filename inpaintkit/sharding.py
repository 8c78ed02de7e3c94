"""Who does which part of a ``fill`` or ``evaluate`` spread over many processes (docs/scale.md).

Two ways, which compose:

- **Job-array shards** (``--shard K/N``, or ``--shard auto`` inside a Slurm job array): no
  communication at all. Shard K owns the images whose key (the path relative to IMAGES, or
  the HDF5 key) hashes to K modulo N. The split depends on nothing but the key, so it is the
  same whenever a shard starts, whatever the other shards have done and whatever else is in
  the folder: shards never overlap, together they cover everything, and a re-run of a shard
  is the same shard (which then skips its finished outputs).
- **torchrun ranks** (:mod:`inpaintkit.distributed`): every rank plans the same work at the
  same moment, so the ranks can split what is *left* after the skip of finished outputs, a
  rank taking every ``world``-th item (:func:`interleave`): balanced on a resumed run too.
  :func:`all_gather_json` brings the per-rank counts back together.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from inpaintkit.distributed import Distributed

T = TypeVar("T")

#: Environment of a Slurm job array: this task's id, the number of tasks, the first id and
#: the step (``--array=1-8`` numbers the tasks 1..8; ``--array=0-30:10`` 0, 10, 20, 30).
SLURM_TASK_ID = "SLURM_ARRAY_TASK_ID"
SLURM_TASK_COUNT = "SLURM_ARRAY_TASK_COUNT"
SLURM_TASK_MIN = "SLURM_ARRAY_TASK_MIN"
SLURM_TASK_STEP = "SLURM_ARRAY_TASK_STEP"


class ShardError(ValueError):
    """A ``--shard`` value that names no shard; the message says what is expected."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``0 <= index < count``) of a job array."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ShardError(
                f"shard {self.index}/{self.count}: K/N needs N >= 1 and 0 <= K < N "
                "(K counts from 0, as SLURM_ARRAY_TASK_ID does with --array=0-(N-1))"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        """``"K-of-N"``: this shard's folder name (evaluate's per-shard report)."""
        return f"{self.index}-of-{self.count}"

    def owns(self, key: str) -> bool:
        """Whether this shard does the item named ``key`` (a relative POSIX path or HDF5 key)."""
        return shard_of(key, self.count) == self.index


def shard_of(key: str, count: int) -> int:
    """The shard (of ``count``) that owns the item named ``key``.

    SHA-256, not ``hash()``: Python salts string hashes per process, and every shard,
    whenever it runs, must compute the same split.
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str, environ: Mapping[str, str] = os.environ) -> Shard:
    """``"K/N"`` -> :class:`Shard` ``(K, N)``; ``"auto"`` reads the Slurm job array's variables.

    With ``auto`` the shard is the task's position in the array, ``(ID - MIN) / STEP`` of
    ``SLURM_ARRAY_TASK_COUNT``, so ``--array=1-8`` works as well as ``--array=0-7``.
    """
    if text.strip().lower() == "auto":
        if SLURM_TASK_ID not in environ or SLURM_TASK_COUNT not in environ:
            raise ShardError(
                f"--shard auto needs {SLURM_TASK_ID} and {SLURM_TASK_COUNT} (set inside a Slurm "
                "job array, sbatch --array); elsewhere pass --shard K/N"
            )
        try:
            task, count = int(environ[SLURM_TASK_ID]), int(environ[SLURM_TASK_COUNT])
            first = int(environ.get(SLURM_TASK_MIN, "0"))
            step = int(environ.get(SLURM_TASK_STEP, "1"))
        except ValueError:
            raise ShardError(
                f"--shard auto: {SLURM_TASK_ID}={environ[SLURM_TASK_ID]!r}, "
                f"{SLURM_TASK_COUNT}={environ[SLURM_TASK_COUNT]!r} are not integers"
            ) from None
        if step < 1 or (task - first) % step:
            raise ShardError(
                f"--shard auto: task {task} is not on the array's grid (min {first}, step "
                f"{step}); an array of listed ids (--array=1,4,9) needs --shard K/N"
            )
        return Shard((task - first) // step, count)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise ShardError(f"--shard {text!r}: expected K/N (e.g. 0/8) or auto")
    return Shard(int(match[1]), int(match[2]))


def interleave(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Rank ``rank``'s share of ``items``: every ``world``-th one from position ``rank``.

    Taken from an ordered plan (``fill`` orders its work by image size), each rank gets
    the same mix of sizes, so the ranks finish together.
    """
    return list(items[rank::world])


def all_gather_json(dist_info: Distributed, value: object) -> list:
    """Every rank's JSON-able ``value``, in rank order (collective when world > 1).

    Sent as UTF-8 JSON in a uint8 tensor padded with spaces to the longest rank's, rather
    than with ``all_gather_object``, which pickles. NCCL gathers CUDA tensors (on the device
    :func:`~inpaintkit.distributed.init_distributed` made current), gloo CPU ones.
    """
    if dist_info.world == 1:
        return [value]
    if dist.get_backend() == "nccl":
        comm = torch.device("cuda", torch.cuda.current_device())
    else:
        comm = torch.device("cpu")
    data = json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    longest = dist_info.largest(len(data), comm)
    mine = torch.frombuffer(bytearray(data.ljust(longest)), dtype=torch.uint8).to(comm)
    parts = [torch.empty_like(mine) for _ in range(dist_info.world)]
    dist.all_gather(parts, mine)
    return [json.loads(bytes(part.cpu().tolist()).decode("utf-8")) for part in parts]
