"""Training speed: iterations/s (one generator step + its critic steps), FLOPs, memory.

Prints a Markdown section. On CUDA: batch 16 at 256x256, fp32 vs bf16 vs bf16 + torch.compile,
FLOPs of one iteration (torch.utils.flop_counter), the fraction of a measured bf16 conv
throughput, peak memory and the largest batch that fits. On CPU it runs a reduced
configuration (tiny recipe) and says so. ``--quick`` shortens every measurement.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from inpaintkit.config import load_recipe
from inpaintkit.masks import MaskSampler
from inpaintkit.train import Trainer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def iteration(trainer: Trainer, batches: list) -> None:
    """Algorithm 1, one generator step with its critic steps, on pre-made batches."""
    for x, m in batches[:-1]:
        trainer.critic_step(x, m)
    trainer.generator_step(*batches[-1])


def make_batches(recipe, batch):
    """Loader-like batches: uint8 images (N, 3, S, S) and bool masks (N, 1, S, S), on the CPU."""
    size = recipe.data.image_size
    masks = MaskSampler(recipe.masks, size, size, 0)
    out = []
    for i in range(recipe.optimizer.critic_steps + 1):
        x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
        m = torch.stack([torch.from_numpy(masks(j))[None] for j in range(i * batch, (i + 1) * batch)])
        out.append((x, m))
    return out


def measure(recipe, device, batch, iters, warmup) -> float:
    torch.manual_seed(0)
    trainer = Trainer(recipe, device)
    batches = [trainer.prepare(x, m) for x, m in make_batches(recipe, batch)]
    for _ in range(warmup):
        iteration(trainer, batches)
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        iteration(trainer, batches)
    sync(device)
    return iters / (time.perf_counter() - start)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def conv_throughput(device, dtype, quick: bool) -> float:
    """Measured TFLOP/s of a large 3x3 conv (forward), the card's practical conv peak."""
    x = torch.randn(32, 128, 128, 128, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * 32 * 128 * 128 * 128 * 128 * 9
    for _ in range(3):
        torch.nn.functional.conv2d(x, w, padding=1)
    sync(device)
    n = 5 if quick else 50
    start = time.perf_counter()
    for _ in range(n):
        torch.nn.functional.conv2d(x, w, padding=1)
    sync(device)
    return flops * n / (time.perf_counter() - start) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    name = "places2" if cuda else "tiny"
    base = load_recipe(RECIPES / f"{name}.yaml")
    batch = base.data.batch_size
    iters, warmup = (3, 1) if args.quick else (20, 3)
    print("## Training speed (benchmarks/bench_train.py)\n")
    print(f"- machine: {platform.processor() or platform.machine()}, "
          f"{torch.cuda.get_device_name() if cuda else f'CPU, {torch.get_num_threads()} threads'}; torch {torch.__version__}")
    print(f"- command: `python benchmarks/bench_train.py{' --quick' if args.quick else ''}`")
    if not cuda:
        print("- **no CUDA device: reduced configuration** (tiny recipe, fp32 only); numbers are not the target's")
    size = base.data.image_size
    print(f"- recipe `{name}`: batch {batch}, {size}x{size}, {base.optimizer.critic_steps} critic steps per generator step\n")

    variants = [("fp32", ["performance.bf16=false"])]
    if cuda:
        variants += [("bf16", ["performance.bf16=true"]), ("bf16 + compile", ["performance.bf16=true", "performance.compile=true"])]
    rows = []
    for label, overrides in variants:
        recipe = load_recipe(RECIPES / f"{name}.yaml", overrides)
        rows.append((label, measure(recipe, device, batch, iters, warmup)))
    print("| variant | iterations/s | vs fp32 |")
    print("|---|---:|---:|")
    for label, rate in rows:
        print(f"| {label} | {rate:.3f} | {rate / rows[0][1]:.2f}x |")

    torch.manual_seed(0)
    trainer = Trainer(base if cuda else load_recipe(RECIPES / f"{name}.yaml"), device)
    batches = [trainer.prepare(x, m) for x, m in make_batches(trainer.recipe, batch)]
    # flop_counter cannot trace the gradient penalty's autograd.grad, so count the generator
    # step (generator fwd+bwd, critic fwd+bwd) plus the critic steps' generator forwards;
    # the critic steps' own critic work and the penalty's double backward are left out.
    x, m = batches[-1]
    with FlopCounterMode(display=False) as counter:
        trainer.generator_step(x, m)
    step_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        trainer.generator(x, m)
    flops = step_flops + trainer.recipe.optimizer.critic_steps * counter.get_total_flops()
    print(f"\n- FLOPs of one iteration (flop_counter; generator step + critic steps' generator forwards, "
          f"a lower bound without the critic updates): {flops / 1e12:.3f} TFLOP")
    if cuda:
        peak = conv_throughput(device, torch.bfloat16, args.quick)
        bf16 = dict(rows)["bf16"]
        print(f"- measured bf16 3x3-conv throughput: {peak:.1f} TFLOP/s; bf16 training reaches "
              f"{flops * bf16 / 1e12:.1f} TFLOP/s = {flops * bf16 / 1e12 / peak:.1%} of it")
        torch.cuda.reset_peak_memory_stats()
        measure(load_recipe(RECIPES / "places2.yaml"), device, batch, 1, 0)
        print(f"- peak memory at batch {batch} (bf16): {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        largest, trial = batch, batch
        while True:
            trial *= 2
            try:
                measure(load_recipe(RECIPES / "places2.yaml"), device, trial, 1, 0)
                largest = trial
            except torch.OutOfMemoryError:
                break
            finally:
                torch.cuda.empty_cache()
            if args.quick and trial >= 256:
                break
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        print(f"- largest power-of-two batch that fits in {total:.0f} GiB: {largest}")


if __name__ == "__main__":
    main()
