"""Has contextual attention learned to *choose*? The sharpness of its softmax, per checkpoint.

For every hole position of the attention layer's matching grid, the layer spreads weight over
the valid background patches (docs/model.md). If it has learned to borrow from particular
places, that distribution is peaked; if not, it stays close to uniform and the attention
branch rebuilds the hole from a blur of the whole background. Measured here on eval images,
per checkpoint (fp32, CPU):

- normalised entropy ``H / log(valid patches)``: 1 = uniform, 0 = one patch;
- the effective number of patches attended, ``exp(H)``;
- the largest weight of the row (uniform would be ``1 / valid patches``).

A freshly initialised generator (``untrained:``) is the reference for "learned nothing".

    python benchmarks/attention_entropy.py \
        init=untrained:inpaintkit/weights/deepfill_v1.safetensors \
        step1000=~/.cache/inpaintkit/runs/default/generator-00001000.safetensors \
        shipped=inpaintkit/weights/deepfill_v1.safetensors --set rect256 --set free256 --limit 64
"""

from __future__ import annotations

import argparse
import math
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from inpaintkit.checkpoint import load_generator
from inpaintkit.inpaint import inpaint
from inpaintkit.io import list_images, read_mask, read_rgb
from inpaintkit.model.attention import AttentionMap, ContextualAttention
from inpaintkit.model.generator import Generator
from inpaintkit.tensors import image_to_tensor, mask_to_tensor

EVAL = Path("/work/shared/data/eval")


def row_statistics(attended: AttentionMap, rate: int) -> list[tuple[float, float, float]]:
    """``(normalised entropy, effective patches, peak weight)`` per hole row of every sample.

    A row is a foreground block of the attention window; it counts when the block's
    representative pixel (``rate * p``) is a hole pixel and some background patch is valid.
    """
    window = attended.window
    hole_blocks = attended.hole[:, 0, ::rate, ::rate][
        :, window.top : window.bottom, window.left : window.right
    ]
    rows_in_hole = hole_blocks.flatten(1) > 0.5  # (N, Lf)
    out = []
    for n in range(attended.weights.shape[0]):
        valid = int(attended.valid[n].sum())
        if valid < 2:
            continue
        weights = attended.weights[n][rows_in_hole[n]].double()  # (R, Lb)
        entropy = -(weights * torch.log(weights.clamp_min(1e-300))).sum(dim=1)
        for h, peak in zip(entropy.tolist(), weights.max(dim=1).values.tolist(), strict=True):
            out.append((h / math.log(valid), math.exp(h), peak))
    return out


def checkpoint_statistics(
    generator: Generator, images: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, float]:
    layer = next(m for m in generator.modules() if isinstance(m, ContextualAttention))
    rows: list[tuple[float, float, float]] = []
    valid_counts: list[int] = []

    def hook(module: ContextualAttention, args: tuple, _output) -> None:
        attended = module.attention_map(*args[:3])
        if attended is not None:
            rows.extend(row_statistics(attended, module.rate))
            valid_counts.extend(int(v) for v in attended.valid.sum(dim=(1, 2)))

    handle = layer.register_forward_hook(hook)
    try:
        for image, hole in images:
            inpaint(generator, image_to_tensor(image), mask_to_tensor(hole))
    finally:
        handle.remove()
    stats = np.array(rows)
    return {
        "rows": len(rows),
        "entropy": float(stats[:, 0].mean()),
        "effective": float(np.median(stats[:, 1])),
        "peak": float(stats[:, 2].mean()),
        "uniform_peak": float(np.mean([1.0 / v for v in valid_counts])),
    }


def load(spec: str) -> tuple[str, Generator]:
    """``label=path`` (a generator checkpoint) or ``label=untrained:path`` (that checkpoint's
    architecture, freshly initialised from seed 0 as ``inpaintkit train`` does)."""
    label, _, path = spec.partition("=")
    untrained = path.startswith("untrained:")
    generator = load_generator(Path(path.removeprefix("untrained:")).expanduser())
    if untrained:
        torch.manual_seed(0)
        generator = Generator(generator.config).eval()
    return label, generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="label=path, or label=untrained:path")
    parser.add_argument("--set", dest="sets", action="append", help="eval folder (repeatable)")
    parser.add_argument("--limit", type=int, default=64, help="first N images per set")
    args = parser.parse_args()
    sets = args.sets or ["rect256"]
    torch.set_grad_enabled(False)

    print(
        f"`python {' '.join(shlex.quote(a) for a in sys.argv)}` on {platform.machine()}, "
        f"{torch.get_num_threads()} threads.\n"
    )
    print(
        "| checkpoint | set | hole rows | normalised entropy | effective patches (median) "
        "| peak weight | uniform peak |"
    )
    print("|---|---|---|---|---|---|---|")
    for spec in args.checkpoints:
        label, generator = load(spec)
        for name in sets:
            paths = list_images(EVAL / name / "images")[: args.limit]
            images = [(read_rgb(p), read_mask(EVAL / name / "masks" / p.name)) for p in paths]
            s = checkpoint_statistics(generator, images)
            print(
                f"| {label} | {name} ({len(images)}) | {s['rows']} | {s['entropy']:.3f} | "
                f"{s['effective']:.1f} | {s['peak']:.4f} | {s['uniform_peak']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
