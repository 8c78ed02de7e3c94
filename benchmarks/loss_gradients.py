"""How hard each term of the generator's loss pulls on its fills, at a run's saved state.

For a trained state (generator and critics), on the run's fixed validation set in batches of
the recipe's size, the RMS over hole pixels of the gradient each term puts on the refined
output: the reconstruction ℓ1 terms, the weighted adversarial term, and at weight 1 the
lattice loss (losses.lattice_loss, periods ``loss.lattice_periods``, above the photos' own with
``loss.lattice_above_photo``), the critics' feature matching (losses.feature_matching_loss)
and the fills' autocorrelation above the photos' (losses.periodicity_loss; and two-sided,
below them too). Beside each
pull, how periodic the gradient itself is (inpaintkit.periodicity, the measure validation logs
for the fills): a term whose gradient repeats every few pixels prints that pattern on the fills.
The ratio adversarial / lattice is the lattice weight at which the two pull equally on fills
as gridded as the run's; docs/model.md ("A loss against the lattice") chose
``loss.lattice_alpha`` from it, and ``loss.feature_matching_alpha`` alike.

    python benchmarks/loss_gradients.py --data ~/.cache/inpaintkit/data/train.h5 \\
        --recipe default-adversarial-bilinear --run ~/.cache/inpaintkit/runs/adversarial-bilinear
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from inpaintkit import losses
from inpaintkit.config import load_recipe
from inpaintkit.periodicity import periodicity, repetition
from inpaintkit.tensors import composite
from inpaintkit.train_log import fixed_validation_set
from inpaintkit.trainer import Trainer
from inpaintkit.training_state import load_training_state


def hole_rms(gradient: torch.Tensor, mask: torch.Tensor) -> float:
    """RMS of ``gradient (N, 3, H, W)`` over the hole pixels of ``mask (N, 1, H, W)``."""
    hole = mask.expand_as(gradient) > 0.5
    return float(gradient[hole].pow(2).mean().sqrt())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared HDF5 (its val split)")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--run", type=Path, required=True, help="run folder with a saved state")
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    recipe = load_recipe(args.recipe)
    device = torch.device("cpu")
    trainer = Trainer(recipe, device)
    tensors, meta = load_training_state(args.run)
    trainer.load_state(tensors, meta)
    images, masks = fixed_validation_set(recipe, args.data, device)
    cfg, n = recipe.loss, recipe.data.batch_size
    pulls: dict[str, list[float]] = {
        "reconstruction": [],
        "adversarial": [],
        "feature matching (weight 1)": [],
        "periodicity (weight 1)": [],
        "two-sided periodicity (weight 1)": [],
        "lattice (weight 1)": [],
    }
    # How periodic each term's gradient is inside the holes (per image), and the fills' and
    # the photos' own periodicity to read it against.
    gradient_periodicity: dict[str, list[torch.Tensor]] = {name: [] for name in pulls}
    # (periodicity, alternation) of the fills and of the photos, per batch.
    fill_measures: list[tuple[torch.Tensor, torch.Tensor]] = []
    photo_measures: list[tuple[torch.Tensor, torch.Tensor]] = []
    lattices, truths = [], []  # the lattice loss of the fills, and of the photos themselves
    for start in range(0, min(len(images), args.batches * n), n):
        real, mask = images[start : start + n], masks[start : start + n]  # [-1, 1], {0, 1}
        refined = trainer.forward(real, mask, grad=False).refined.float().requires_grad_(True)
        coarse = refined.detach()  # the coarse stage's own terms do not reach the refined output
        critic_terms = trainer.critics.generator_losses(real, mask, refined, feature_matching=True)
        fills = composite(real, refined, mask)
        terms = {
            "reconstruction": trainer.reconstruction_loss(real, coarse, refined, mask).total,
            "adversarial": cfg.gan_loss_alpha
            * (cfg.global_wgan_loss_alpha * critic_terms.global_wgan + critic_terms.local_wgan),
            "feature matching (weight 1)": critic_terms.feature_matching,
            "periodicity (weight 1)": losses.periodicity_loss(fills, real, mask),
            "two-sided periodicity (weight 1)": losses.periodicity_loss(
                fills, real, mask, two_sided=True
            ),
            "lattice (weight 1)": losses.lattice_loss(
                fills,
                mask,
                cfg.lattice_periods,
                photos=real if cfg.lattice_above_photo else None,
            ),
        }
        lattices.append(float(terms["lattice (weight 1)"].detach()))
        truths.append(float(losses.lattice_loss(real, mask, cfg.lattice_periods)))
        for name, term in terms.items():
            (gradient,) = torch.autograd.grad(term, refined, retain_graph=True)
            pulls[name].append(hole_rms(gradient, mask))
            gradient_periodicity[name].append(periodicity(gradient, mask))
        for pair, image in ((fill_measures, fills.detach()), (photo_measures, real)):
            pair.append(repetition(image, mask))
    print(f"state at step {meta['step']} of {args.run}; {len(lattices)} batches of {n}")
    print(
        f"lattice loss: fills {sum(lattices) / len(lattices):.4f}, "
        f"the photos themselves {sum(truths) / len(truths):.4f} (its floor at this batch size)"
    )
    for index, measure in enumerate(("periodicity", "alternation")):
        fills_mean, photos_mean = (
            float(torch.cat([batch[index] for batch in measures]).nanmean())
            for measures in (fill_measures, photo_measures)
        )
        print(f"{measure}: fills {fills_mean:.3f}, the photos themselves {photos_mean:.3f}")
    mean = {name: sum(values) / len(values) for name, values in pulls.items()}
    for name, value in mean.items():
        repeats = float(torch.cat(gradient_periodicity[name]).nanmean())
        print(f"{name:>28}: RMS gradient over the holes {value:.3e}, its periodicity {repeats:.3f}")
    for name in ("lattice", "feature matching", "periodicity", "two-sided periodicity"):
        ratio = mean["adversarial"] / mean[f"{name} (weight 1)"]
        print(f"adversarial / {name}: {ratio:.3g} (the {name} weight that pulls as hard)")


if __name__ == "__main__":
    main()
