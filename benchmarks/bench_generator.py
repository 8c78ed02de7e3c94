"""Generator forward speed vs this machine's plain conv throughput; contextual attention's share.

Prints a Markdown section. For each size (256², 512², a 128×128 hole, batch 1) and device
(CPU with ``--threads`` threads; CUDA fp32 and bf16 autocast when available) it measures:

* the forward time (median of ``--repeats`` after a warm-up) of the full generator;
* its FLOPs, counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix
  products; element-wise ops are not counted);
* achieved GFLOP/s as a fraction of a plain fp32 3×3 conv (128 → 128 channels, 128×128,
  batch 1) timed in the same run on the same device — the reference for "how close to the
  machine's conv speed does the whole network get";
* the contextual attention layer's share of the forward time, timed in place with forward
  hooks (synchronising CUDA in the hooks).

Usage: ``python benchmarks/bench_generator.py [--quick] [--threads 2] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_attention import cpu_name  # sibling script (its folder is on sys.path): one machine line
from torch.utils.flop_counter import FlopCounterMode

from inpaintkit.model.attention import ContextualAttention
from inpaintkit.model.generator import Generator, GeneratorConfig


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(
    fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1
) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv_throughput(device: torch.device, repeats: int) -> float:
    """GFLOP/s of a plain fp32 3×3 conv, 128 → 128 channels on 128×128, batch 1."""
    x = torch.randn(1, 128, 128, 128, device=device)
    weight = torch.randn(128, 128, 3, 3, device=device) * 0.01
    flops = 2 * 128 * 128 * 9 * 128 * 128
    with torch.no_grad():
        seconds = median_time(lambda: F.conv2d(x, weight, padding=1), device, repeats * 4, warmup=3)
    return flops / seconds / 1e9


class AttentionTimer:
    """Accumulates the wall time spent inside every ContextualAttention forward."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.device = device
        self.total = 0.0
        self._start = 0.0
        self.handles = []
        for module in model.modules():
            if isinstance(module, ContextualAttention):
                self.handles.append(module.register_forward_pre_hook(self._before))
                self.handles.append(module.register_forward_hook(self._after))

    def _before(self, *_: object) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def _after(self, *_: object) -> None:
        synchronize(self.device)
        self.total += time.perf_counter() - self._start

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def inputs(
    size: int, device: torch.device, layout: torch.memory_format
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = (torch.rand(1, 3, size, size, generator=generator) * 2 - 1).to(device)
    mask = torch.zeros(1, 1, size, size, device=device)
    top = (size - 128) // 2
    mask[..., top : top + 128, top : top + 128] = 1
    return image.contiguous(memory_format=layout), mask.contiguous(memory_format=layout)


def measure(
    model: Generator,
    size: int,
    device: torch.device,
    dtype: torch.dtype | None,
    layout: torch.memory_format,
    repeats: int,
) -> dict[str, float]:
    image, mask = inputs(size, device, layout)

    def forward() -> object:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return model(image, mask)

    counter = FlopCounterMode(display=False)
    with counter:
        forward()
    seconds = median_time(forward, device, repeats)
    timer = AttentionTimer(model, device)
    timed = median_time(forward, device, repeats, warmup=0)
    attention = timer.total / repeats
    timer.remove()
    return {
        "seconds": seconds,
        "gflop": counter.get_total_flops() / 1e9,
        "attention_share": attention / timed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256² only, fewer repeats")
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats
    sizes = [256] if args.quick else [256, 512]

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    nchw, nhwc = torch.contiguous_format, torch.channels_last
    # The last field is ContextualAttention's foreground mode: "all" (the released layer) is
    # timed beside the default "hole" so the attention share can be compared in one run.
    runs: list[tuple[str, torch.device, torch.dtype | None, torch.memory_format, str]] = [
        ("cpu fp32", cpu, None, nchw, "all"),
        ("cpu fp32", cpu, None, nchw, "hole"),
        ("cpu fp32 channels_last", cpu, None, nhwc, "hole"),
    ]
    if torch.cuda.is_available():
        runs += [
            ("cuda fp32", cuda, None, nchw, "all"),
            ("cuda fp32", cuda, None, nchw, "hole"),
            ("cuda bf16 channels_last", cuda, torch.bfloat16, nhwc, "hole"),
        ]

    print("## Generator forward (bench_generator.py)\n")
    print(f"- machine: {cpu_name()}, {args.threads} torch threads; torch {torch.__version__}")
    if torch.cuda.is_available():
        print(f"- GPU: {torch.cuda.get_device_name()}")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(
        "- model: full generator (contextual attention on), channels 32, batch 1, a centred 128×128 hole"
    )
    print(
        "- reference: plain fp32 3×3 conv, 128→128 channels, 128×128, batch 1, same device, same run\n"
    )
    print(
        "| device | attention foreground | size | forward (s) | GFLOP | GFLOP/s | conv ref GFLOP/s "
        "| fraction of ref | attention share |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    references: dict[torch.device, float] = {}
    for label, device, dtype, layout, foreground in runs:
        if device not in references:
            references[device] = conv_throughput(device, repeats)
        reference = references[device]
        config = GeneratorConfig(attention_foreground=foreground)
        model = Generator(config).to(device, memory_format=layout).eval()
        for size in sizes:
            r = measure(model, size, device, dtype, layout, repeats)
            rate = r["gflop"] / r["seconds"]
            print(
                f"| {label} | {foreground} | {size}² | {r['seconds']:.3f} | {r['gflop']:.1f} | {rate:.1f} | "
                f"{reference:.1f} | {rate / reference:.0%} | {r['attention_share']:.1%} |"
            )
    print(
        "\nFLOPs count convolutions and matrix products (FlopCounterMode); the fraction is the "
        "forward's GFLOP/s over the reference conv's (NCHW fp32, measured once per device); the "
        "attention share is the time inside ContextualAttention.forward over the whole forward. "
        "channels_last rows convert weights and inputs to NHWC, which oneDNN/cuDNN convolve "
        'without reordering. Attention foreground "hole" (the default) matches only a window '
        'around the hole; "all" is the released code\'s layer (every position).'
    )


if __name__ == "__main__":
    main()
