"""Benchmark: batched ContextualAttention vs a per-sample Python loop over the same layer.

Prints a Markdown section. Both variants run in the same process on the same inputs, with
the generator's settings (rate 2, stride 1, propagation on) and a 50 % × 50 % hole; the
per-sample loop is what a straightforward port of the released TensorFlow code does
(``for each sample: attention(f[i], b[i], mask[i])``).

    python benchmarks/bench_attention.py            # 256² and 512² images (64² and 128² features)
    python benchmarks/bench_attention.py --quick    # 64² features only, fewer repeats
    python benchmarks/bench_attention.py --device cuda
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch

from inpaintkit.model.attention import ContextualAttention


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(fn, repeats: int, device: torch.device) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64x64 features only, 1 repeat")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=128)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [64] if args.quick else [64, 128]
    repeats = 1 if args.quick else 3
    layer = ContextualAttention()

    rows = []
    for size in sizes:
        gen = torch.Generator().manual_seed(0)
        features = torch.randn(args.batch, args.channels, size, size, generator=gen).to(device)
        mask = torch.zeros(args.batch, 1, size, size, device=device)
        mask[:, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1

        def batched(features=features, mask=mask):
            return layer(features, features, mask)

        def per_sample(features=features, mask=mask):
            return torch.cat(
                [
                    layer(features[i : i + 1], features[i : i + 1], mask[i : i + 1])
                    for i in range(features.shape[0])
                ]
            )

        with torch.no_grad():
            difference = (batched() - per_sample()).abs().max().item()
            t_batched = statistics.median(timed(batched, repeats, device))
            t_loop = statistics.median(timed(per_sample, repeats, device))
        rows.append((size, t_batched, t_loop, difference))

    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu_name()}, {torch.get_num_threads()} threads"
    )
    print("## Contextual attention: batched vs per-sample loop\n")
    print(
        f"- machine: {device_name}; torch {torch.__version__}; Python {platform.python_version()}"
    )
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(
        f"- batch {args.batch}, C = {args.channels}, rate 2, stride 1, propagation on, "
        f"hole = centre 50 % × 50 %; median of {repeats} call(s) after a warm-up\n"
    )
    print(
        "| features (image) | batched s/call | per-sample loop s/call | loop / batched "
        "| batched ms per sample | max abs difference |"
    )
    print("|---|---|---|---|---|---|")
    for size, t_batched, t_loop, difference in rows:
        print(
            f"| {size}×{size} ({4 * size}×{4 * size}) | {t_batched:.3f} | {t_loop:.3f} "
            f"| {t_loop / t_batched:.2f}× | {1000 * t_batched / args.batch:.1f} | {difference:.1e} |"
        )


if __name__ == "__main__":
    main()
