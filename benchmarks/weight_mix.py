"""Blends of two generators' weights, scored on a run's validation set.

A run's weight average (``RUN/generator.safetensors``) and its raw weights (``default_model.py
raw``) trade PSNR for detail in the adversarial phase: the average fills more accurately, the
raw weights with more detail and less colour (docs/model-card.md, "Stint 23"). A blend
``w`` · FIRST + (1 − ``w``) · SECOND of the weights, parameter by parameter, lies between
them; this scores each ``--weights`` blend with the training run's own validation
(``train_log.validate``: the recipe's first ``schedule.val_images`` validation photos and
fixed masks), so that the blend is chosen on validation, not on the evaluation sets.

    python benchmarks/weight_mix.py RAW.safetensors AVERAGE.safetensors \\
        --data ~/.cache/inpaintkit/data/train.h5 --weights 0,0.25,0.5,0.75,1
    python benchmarks/weight_mix.py RAW.safetensors AVERAGE.safetensors \\
        --data ~/.cache/inpaintkit/data/train.h5 --weights 0.5 --out BLEND.safetensors

Both checkpoints must be one architecture; validation uses FIRST's recipe (its metadata).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import yaml

from inpaintkit.checkpoint import load_generator, read_metadata, save_generator
from inpaintkit.config import recipe_from_dict
from inpaintkit.model.generator import Generator
from inpaintkit.train_log import fixed_validation_set, validate

#: validation's keys, and the columns they print as.
COLUMNS = {
    "hole_psnr": "hole PSNR (dB)",
    "hole_l1": "hole ℓ1 (%)",
    "hole_tv_ratio": "TV / truth",
    "hole_detail_excess": "detail excess",
    "hole_chroma_excess": "colour excess",
    "hole_alternation": "alternation",
}

#: What a blend keeps of FIRST's metadata (``weights`` says what it is instead).
KEPT_METADATA = ("recipe", "step", "samples", "train_seconds")


def blend(first: Generator, second: Generator, weight: float) -> Generator:
    """A new generator whose every floating-point tensor of its state is ``weight`` · first's +
    (1 − ``weight``) · second's; ``weight`` 1 is ``first``, 0 ``second``."""
    mixed = copy.deepcopy(first)
    theirs = second.state_dict()
    mixed.load_state_dict(
        {
            name: torch.lerp(theirs[name], value, weight) if value.is_floating_point() else value
            for name, value in first.state_dict().items()
        }
    )
    return mixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="weight w (e.g. the raw weights)")
    parser.add_argument("second", type=Path, help="weight 1 - w (e.g. the weight average)")
    parser.add_argument("--data", type=Path, required=True, help="the run's HDF5 dataset")
    parser.add_argument("--weights", default="0,0.25,0.5,0.75,1", help="w, comma-separated")
    parser.add_argument("--out", type=Path, default=None, help="write the (single) blend here")
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    if args.out is not None and len(weights) != 1:
        raise SystemExit("--out writes one blend: give one --weights value")
    if not all(0.0 <= w <= 1.0 for w in weights):
        raise SystemExit(f"--weights: each in [0, 1], got {args.weights}")
    first, second = load_generator(args.first), load_generator(args.second)
    if first.config != second.config:
        raise SystemExit(f"{args.first}, {args.second}: not one architecture")
    meta = read_metadata(args.first)
    recipe = recipe_from_dict(yaml.safe_load(meta["recipe"]))
    found = fixed_validation_set(recipe, args.data, torch.device("cpu"))
    if found is None:
        raise SystemExit(f"{args.data}: no validation split")
    print(
        f"w · {args.first.name} + (1 − w) · {args.second.name}, {len(found[0])} validation photos"
    )
    print("\n| w | " + " | ".join(COLUMNS.values()) + " |")
    print("|---:|" + "---:|" * len(COLUMNS))
    for weight in weights:
        mixed = blend(first, second, weight)
        with torch.inference_mode():
            means, _ = validate(mixed, *found, recipe.data.batch_size)
        print(f"| {weight:g} | " + " | ".join(f"{means[key]:.4g}" for key in COLUMNS) + " |")
    if args.out is not None:
        metadata = {key: meta[key] for key in KEPT_METADATA if key in meta}
        metadata["weights"] = (
            f"{weights[0]:g} x {args.first.name} ({meta.get('weights', 'average')}) + "
            f"{1 - weights[0]:g} x {args.second.name} "
            f"({read_metadata(args.second).get('weights', 'average')})"
        )
        save_generator(args.out, mixed, metadata=metadata)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
