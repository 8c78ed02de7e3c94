"""What an evaluation is asked to do, and the names of the files it leaves in a report folder.

:class:`EvaluateOptions` (the ``inpaintkit evaluate`` options), :class:`EvaluateError` (every
refusal, in one line) and :class:`EvaluateResult`: shared by the run (:mod:`inpaintkit.evaluate`),
its inputs (:mod:`inpaintkit.evaluate_samples`), its report folder
(:mod:`inpaintkit.evaluate_folder`) and the merging of shards (:mod:`inpaintkit.evaluate_shards`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inpaintkit.sharding import Shard

#: Generated mask kinds (``masks.MaskConfig.kind`` values that need no files).
GENERATED_MASK_KINDS = ("rect", "freeform", "mixed")

#: The split of a prepared HDF5 file evaluated when none is asked for (see :func:`choose_split`).
DEFAULT_SPLIT = "val"

#: Files of a report folder.
RESULTS_LOG = "results.jsonl"
RUN_FILE = "evaluation.json"
#: Each method's settings (:func:`method_settings`), so a re-run never mixes two versions.
METHODS_FILE = "methods.json"
MASKS_DIR = "masks"
SAMPLES_DIR = "samples"
#: Where the shards of a job array write their reports: ``REPORT_DIR/shards/K-of-N/``.
SHARDS_DIR = "shards"


class EvaluateError(ValueError):
    """The evaluation cannot run as asked; the message says why in one line."""


@dataclass
class EvaluateOptions:
    """What to evaluate on and where the report goes (the ``inpaintkit evaluate`` options).

    ``masks``: a folder of mask files (white = hole) paired with the images by name; when
    None, masks of ``mask_kind`` are generated from ``seed`` and the image's index.
    ``limit``: evaluate only the first N images. ``samples``: images in the comparison sheet.
    ``warmup``: run each method once, untimed, before its first timed image (CUDA start-up,
    numba compilation), so s/image is the steady-state cost. ``shard``: evaluate only the
    images this shard of a job array owns, into :attr:`folder`.
    """

    data: Path
    output: Path
    split: str = DEFAULT_SPLIT
    size: int = 256
    masks: Path | None = None
    mask_kind: str = "rect"
    seed: int = 0
    limit: int | None = None
    samples: int = 8
    warmup: bool = True
    shard: Shard | None = None

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)
        self.masks = None if self.masks is None else Path(self.masks)
        if self.mask_kind not in GENERATED_MASK_KINDS:
            raise EvaluateError(
                f"mask kind must be one of {', '.join(GENERATED_MASK_KINDS)}, got {self.mask_kind!r}"
            )
        if self.size < 11:
            raise EvaluateError(f"--size must be at least 11 (the SSIM window), got {self.size}")
        if self.limit is not None and self.limit < 1:
            raise EvaluateError(f"--limit must be at least 1, got {self.limit}")
        if self.samples < 0:
            raise EvaluateError(f"--samples must be >= 0, got {self.samples}")

    def identity(self) -> dict:
        """What makes two runs comparable: results of a different identity are never mixed."""
        masks = (
            {"masks": str(self.masks.resolve())}
            if self.masks is not None
            else {"mask_kind": self.mask_kind, "seed": self.seed}
        )
        return {"data": str(self.data.resolve()), "split": self.split, "size": self.size, **masks}

    @property
    def folder(self) -> Path:
        """Where this run's files go: ``output``, or ``output/shards/K-of-N`` for a shard."""
        if self.shard is None:
            return self.output
        return self.output / SHARDS_DIR / self.shard.name


@dataclass
class EvaluateResult:
    """What a run did: the summary per method, new results computed, images skipped."""

    summary: dict
    images: int
    computed: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, one-line reason)
