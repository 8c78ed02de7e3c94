"""Training speed: iterations/s (one generator step + its critic steps), FLOPs, memory.

Prints a Markdown section. On CUDA: batch 16 at 256x256, fp32 vs bf16 vs bf16 + torch.compile,
FLOPs of one iteration (torch.utils.flop_counter), the fraction of a measured bf16 conv
throughput, peak memory and the largest batch that fits. On CPU it runs a reduced
configuration (tiny recipe) and says so. ``--quick`` shortens every measurement.

``--cpu-levers`` instead measures, side by side on this CPU, what the default model's recipe
(recipes/default.yaml, full-width generator) can pull: fp32 against bf16 autocast, NCHW
against channels_last, a reconstruction-only warm-up step against a full Algorithm 1
iteration, and 128² against 256² crops, as seconds per generator step and samples/s.
``--bf16-quality STEPS --data TRAIN.h5`` trains the same warm-up twice from the same seed,
fp32 and bf16, and compares their validation hole PSNR after STEPS steps.
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
        m = torch.stack(
            [torch.from_numpy(masks(j))[None] for j in range(i * batch, (i + 1) * batch)]
        )
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
    x = torch.randn(32, 128, 128, 128, device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last
    )
    w = torch.randn(128, 128, 3, 3, device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last
    )
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


def warmup_rate(recipe, batch: int, steps: int, device=None) -> float:
    """Seconds per reconstruction-only generator step (the warm-up phase), after one untimed step."""
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    trainer = Trainer(recipe, device)
    x, m = trainer.prepare(*make_batches(recipe, batch)[0])
    trainer.generator_step(x, m, adversarial=False)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.generator_step(x, m, adversarial=False)
    sync(device)
    return (time.perf_counter() - start) / steps


def cpu_levers(quick: bool) -> None:
    """The CPU training levers of the default recipe, each measured in this one run."""
    from inpaintkit.devices import has_native_bf16

    default = RECIPES / "default.yaml"
    steps = 2 if quick else 6
    print("## CPU training levers (benchmarks/bench_train.py --cpu-levers)\n")
    print(
        f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"native bf16: {has_native_bf16(torch.device('cpu'))}; torch {torch.__version__}"
    )
    print(
        f"- command: `python benchmarks/bench_train.py --cpu-levers{' --quick' if quick else ''}`"
    )
    print(
        f"- recipe `default` (full-width generator, both critics); synthetic batches; mean of {steps} steps after one untimed\n"
    )
    print(
        "| phase | size | batch | precision | layout | s / generator step | samples/s | vs fp32 NCHW same phase+size |"
    )
    print("|---|---|---:|---|---|---:|---:|---:|")
    cases = [
        ("warm-up", 128, 8),
        ("warm-up", 256, 2),
        ("Algorithm 1", 128, 8),
        ("Algorithm 1", 256, 2),
    ]
    for phase, size, batch in cases:
        base_rate = None
        for bf16, layout in ((False, False), (False, True), (True, True)):
            if phase == "Algorithm 1" and not layout:
                continue  # NCHW vs channels_last is the same question in both phases
            overrides = [
                f"data.image_size={size}",
                f"data.batch_size={batch}",
                f"performance.bf16={bf16}",
                f"performance.channels_last={layout}",
                f"critics.local_size={min(128, size)}",
            ]
            recipe = load_recipe(default, overrides)
            if phase == "warm-up":
                seconds = warmup_rate(recipe, batch, steps)
            else:
                seconds = 1.0 / measure(recipe, torch.device("cpu"), batch, max(1, steps // 3), 1)
            draws = 1 if phase == "warm-up" else recipe.optimizer.critic_steps + 1
            base_rate = base_rate or seconds
            print(
                f"| {phase} | {size}² | {batch} | {'bf16' if bf16 else 'fp32'} | {'channels_last' if layout else 'NCHW'} "
                f"| {seconds:.2f} | {batch * draws / seconds:.1f} | {base_rate / seconds:.2f}x |",
                flush=True,
            )


def bf16_quality(data: Path, steps: int) -> None:
    """Validation hole PSNR after ``steps`` warm-up steps, fp32 vs bf16, same seed and data."""
    import json
    import tempfile

    from inpaintkit.train import VALIDATION_LOG, train

    print(
        f"## bf16 against fp32 after {steps} warm-up steps (benchmarks/bench_train.py --bf16-quality {steps})\n"
    )
    print(
        f"- data: {data} (val split: validation set of the run); recipe `default`, 128², batch 8, seed 0\n"
    )
    print("| precision | wall s | validation hole PSNR (dB) | hole ℓ1 (%) |")
    print("|---|---:|---:|---:|")
    results = {}
    for bf16 in (False, True):
        overrides = [
            f"schedule.steps={steps}",
            f"schedule.warmup_steps={steps}",
            f"schedule.val_every={steps}",
            f"schedule.image_every={steps}",
            f"schedule.checkpoint_every={steps}",
            "schedule.keep_every=0",
            f"performance.bf16={bf16}",
        ]
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            train(
                load_recipe(RECIPES / "default.yaml", overrides),
                data,
                Path(tmp) / "run",
                device="cpu",
                progress=False,
            )
            wall = time.perf_counter() - start
            last = json.loads((Path(tmp) / "run" / VALIDATION_LOG).read_text().splitlines()[-1])
        results[bf16] = last["hole_psnr"]
        print(
            f"| {'bf16' if bf16 else 'fp32'} | {wall:.0f} | {last['hole_psnr']:.3f} | {last['hole_l1']:.3f} |",
            flush=True,
        )
    print(f"\n- bf16 - fp32: {results[True] - results[False]:+.3f} dB hole PSNR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--cpu-levers", action="store_true", help="the default recipe's CPU levers (see above)"
    )
    parser.add_argument(
        "--bf16-quality",
        type=int,
        metavar="STEPS",
        help="fp32 vs bf16 validation after STEPS warm-up steps",
    )
    parser.add_argument(
        "--data", type=Path, help="HDF5 with train and val splits, for --bf16-quality"
    )
    args = parser.parse_args()
    if args.cpu_levers:
        cpu_levers(args.quick)
        return
    if args.bf16_quality:
        if args.data is None:
            parser.error("--bf16-quality needs --data TRAIN.h5")
        bf16_quality(args.data, args.bf16_quality)
        return
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    name = "places2" if cuda else "tiny"
    base = load_recipe(RECIPES / f"{name}.yaml")
    batch = base.data.batch_size
    iters, warmup = (3, 1) if args.quick else (20, 3)
    print("## Training speed (benchmarks/bench_train.py)\n")
    print(
        f"- machine: {platform.processor() or platform.machine()}, "
        f"{torch.cuda.get_device_name() if cuda else f'CPU, {torch.get_num_threads()} threads'}; torch {torch.__version__}"
    )
    print(f"- command: `python benchmarks/bench_train.py{' --quick' if args.quick else ''}`")
    if not cuda:
        print(
            "- **no CUDA device: reduced configuration** (tiny recipe, fp32 only); numbers are not the target's"
        )
    size = base.data.image_size
    print(
        f"- recipe `{name}`: batch {batch}, {size}x{size}, {base.optimizer.critic_steps} critic steps per generator step\n"
    )

    variants = [("fp32", ["performance.bf16=false"])]
    if cuda:
        variants += [
            ("bf16", ["performance.bf16=true"]),
            ("bf16 + compile", ["performance.bf16=true", "performance.compile=true"]),
        ]
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
    print(
        f"\n- FLOPs of one iteration (flop_counter; generator step + critic steps' generator forwards, "
        f"a lower bound without the critic updates): {flops / 1e12:.3f} TFLOP"
    )
    if cuda:
        peak = conv_throughput(device, torch.bfloat16, args.quick)
        bf16 = dict(rows)["bf16"]
        print(
            f"- measured bf16 3x3-conv throughput: {peak:.1f} TFLOP/s; bf16 training reaches "
            f"{flops * bf16 / 1e12:.1f} TFLOP/s = {flops * bf16 / 1e12 / peak:.1%} of it"
        )
        torch.cuda.reset_peak_memory_stats()
        measure(load_recipe(RECIPES / "places2.yaml"), device, batch, 1, 0)
        print(
            f"- peak memory at batch {batch} (bf16): {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        )
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
