"""Padding under bf16 autocast on the CPU: F.pad as autocast runs it against ``pad_exactly``.

CPU autocast keeps reflection and replication padding on its fp32 list, so ``F.pad`` on a bf16
activation casts it up to fp32, pads, and the next conv casts it back, forward and backward,
around every one of the generator's mirror-padded convs. ``layers.pad_exactly`` pads in the
activation's own dtype instead. This measures, side by side in one run, a reconstruction-only
training step of the default recipe (the default model's phase: 256² × 4, bf16 autocast,
channels_last) both ways, alternating the two so that load on the machine hits both alike,
and how far each step's weight gradients are from an fp32 step's:

    python benchmarks/bench_pad.py [--repeats 4] [--size 256] [--batch 4]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch
import torch.nn.functional as F
from bench_train import RECIPES, make_batches

from inpaintkit.config import load_recipe
from inpaintkit.model import attention, layers, stride1
from inpaintkit.train import Trainer

#: The modules that call pad_exactly (each imported the name, so each is patched).
CALLERS = (layers, attention, stride1)


def autocast_pad(x: torch.Tensor, pads: tuple[int, ...], mode: str) -> torch.Tensor:
    """What the generator did before pad_exactly: F.pad, cast to fp32 under CPU autocast."""
    return F.pad(x, pads, mode=mode)


@contextlib.contextmanager
def padding(function):
    """Make every generator pad go through ``function`` for the duration."""
    saved = [module.pad_exactly for module in CALLERS]
    for module in CALLERS:
        module.pad_exactly = function
    try:
        yield
    finally:
        for module, original in zip(CALLERS, saved, strict=True):
            module.pad_exactly = original


def weight_gradients(trainer: Trainer, x: torch.Tensor, m: torch.Tensor, bf16: bool) -> list:
    """The generator's weight gradients of its two outputs' sum, fp32 or under bf16 autocast."""
    trainer.generator.zero_grad(set_to_none=True)
    with trainer.autocast() if bf16 else contextlib.nullcontext():
        out = trainer.generator(x, m)
    (out.coarse.float().sum() + out.refined.float().sum()).backward()
    return [p.grad.clone() for p in trainer.generator.parameters()]


def relative_error(grads: list, reference: list) -> float:
    """‖grads − reference‖ / ‖reference‖ over all weights together."""
    num = sum(((g - r) ** 2).sum() for g, r in zip(grads, reference, strict=True))
    return (num / sum((r**2).sum() for r in reference)).sqrt().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    recipe = load_recipe(RECIPES / "default.yaml", [f"data.image_size={args.size}"])
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    if trainer.autocast_dtype is None:
        raise SystemExit("this CPU has no native bf16: autocast is off, nothing to compare")
    x, m = trainer.prepare(*make_batches(recipe, args.batch)[0])
    variants = {"F.pad under autocast (fp32 pads)": autocast_pad, "pad_exactly": layers.pad_exactly}

    reference = weight_gradients(trainer, x, m, bf16=False)
    errors = {}
    for name, function in variants.items():
        with padding(function):
            errors[name] = relative_error(weight_gradients(trainer, x, m, True), reference)

    # Alternate the variants (one untimed step each first) so drifting load hits both.
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats + 1):
        for name, function in variants.items():
            with padding(function):
                start = time.perf_counter()
                trainer.generator_step(x, m, adversarial=False)
                if repeat:
                    times[name].append(time.perf_counter() - start)

    base = min(times[next(iter(variants))])
    print(
        f"- command: `python benchmarks/bench_pad.py --repeats {args.repeats} --size {args.size} --batch {args.batch}`"
    )
    print(
        f"- {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"- reconstruction-only step of recipes/default.yaml at {args.size}² × {args.batch}, bf16 autocast, channels_last; best and median of {args.repeats}\n"
    )
    print("| padding | s / step, best | median | speed vs F.pad | weight-gradient error vs fp32 |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        best, median = min(values), sorted(values)[len(values) // 2]
        print(
            f"| {name} | {best:.2f} | {median:.2f} | {base / best:.2f}x | {100 * errors[name]:.3f} % |"
        )


if __name__ == "__main__":
    main()
