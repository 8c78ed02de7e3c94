"""Where the adversarial phase's grid comes from: the lattice of the fills and of the critics' gradients.

On the fixed validation set that training validates on (the first ``schedule.val_images`` of
the val split, centre-cropped, with the recipe's fixed masks), this prints two Markdown tables:

1. the lattice spread (:class:`inpaintkit.metrics.LatticeProfile`) of each generator's fills
   (composited, as validation scores them) at periods 2, 4, 8 and 16 px, beside the ground
   truth's: a photo's detail does not care where a pixel lies on the lattice;
2. the same spread of each critic's gradient magnitude ``|∂D/∂x|`` over the holes, for the
   critics of each run's latest state (``--run``) and for freshly initialised ones: the
   pattern the adversarial loss pushes into the generator. The global critic sees the whole
   image, so its stride-2 lattice is anchored at the image's origin, as the generator's is;
   the local critic sees each hole's box, which starts anywhere.

    python benchmarks/lattice_sources.py --data ~/.cache/inpaintkit/data/train.h5 \\
        --checkpoint inpaintkit/weights/deepfill_v1.safetensors \\
        --checkpoint ~/.cache/inpaintkit/runs/adversarial/generator-00000400.safetensors \\
        --run ~/.cache/inpaintkit/runs/adversarial
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from inpaintkit.checkpoint import load_generator
from inpaintkit.config import load_recipe
from inpaintkit.metrics import LatticeProfile
from inpaintkit.model.critics import GlobalCritic, LocalCritic, crop_hole_boxes
from inpaintkit.tensors import composite, signed_to_unit
from inpaintkit.train_log import fixed_validation_set
from inpaintkit.training_state import load_training_state

PERIODS = (2, 4, 8, 16)


def spreads(add) -> list[float]:
    """The spread at each of :data:`PERIODS`, ``add(profile)`` filling each profile."""
    values = []
    for period in PERIODS:
        profile = LatticeProfile(period)
        add(profile)
        values.append(profile.spread)
    return values


def row(label: str, values: list[float]) -> str:
    return f"| {label} | " + " | ".join(f"{v:.1f}" for v in values) + " |"


def critics_of(run: Path | None, recipe) -> tuple[GlobalCritic, LocalCritic]:
    """The critics of ``run``'s latest saved state, or fresh ones (seeded) for ``None``."""
    torch.manual_seed(recipe.schedule.seed)
    options = recipe.critics
    critics = (
        GlobalCritic(recipe.data.image_size, options.channels, options.antialias),
        LocalCritic(options.local_size, options.channels, options.antialias),
    )
    if run is not None:
        tensors, _ = load_training_state(run)
        for critic, prefix in zip(critics, ("global_critic.", "local_critic."), strict=True):
            critic.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
    return critics


def gradient_magnitude(critic, images: torch.Tensor, view) -> torch.Tensor:
    """``|∂ Σ D(view(x)) / ∂x|``, channel-averaged: ``(N, H, W)``."""
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(view(x)).sum(), x)
    return grad.abs().mean(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the packed training set")
    parser.add_argument("--recipe", default="default-adversarial")
    parser.add_argument("--checkpoint", type=Path, action="append", default=[])
    parser.add_argument("--run", type=Path, action="append", default=[])
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    found = fixed_validation_set(recipe, args.data, torch.device("cpu"))
    if found is None:
        raise SystemExit(f"{args.data}: no validation split")
    images, masks = found
    header = "| " + " | ".join(f"{p} px" for p in PERIODS) + " |"
    print(f"\n{len(images)} validation images; lattice spread of the fills' hole detail (%)\n")
    print("| output " + header + "\n|---|" + "---:|" * len(PERIODS))
    truth = signed_to_unit(images)
    print(row("ground truth", spreads(lambda p: p.add(truth, masks))))
    batch = recipe.data.batch_size
    for path in args.checkpoint:
        generator = load_generator(path).eval()
        with torch.no_grad():
            filled = torch.cat(
                [
                    composite(x, generator(x, m).refined.float(), m)
                    for x, m in zip(images.split(batch), masks.split(batch), strict=True)
                ]
            )
        fills = signed_to_unit(filled)
        print(row(f"{path.parent.name}/{path.name}", spreads(lambda p, f=fills: p.add(f, masks))))
    print("\nThe critics' gradient magnitude over the holes, real photos (%)\n")
    print("| critics | critic " + header + "\n|---|---|" + "---:|" * len(PERIODS))
    hole = masks[:, 0] > 0.5
    local_size = recipe.critics.local_size
    for run in [None, *args.run]:
        global_critic, local_critic = critics_of(run, recipe)
        name = "fresh" if run is None else run.name
        views = (
            ("global", global_critic, lambda x: x),
            ("local", local_critic, lambda x: crop_hole_boxes(x, masks, local_size)),
        )
        for label, critic, view in views:
            magnitude = gradient_magnitude(critic, images, view)
            values = spreads(lambda p, g=magnitude: p.add_values(g, hole))
            print(row(f"{name} | {label}", values))


if __name__ == "__main__":
    main()
