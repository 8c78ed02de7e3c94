"""Benchmark: ContextualAttention's foreground modes, batched vs per-sample loops, paste windows.

Prints three Markdown sections, each timed in one process on the same inputs, with the
generator's settings (rate 2, stride 1, propagation on):

1. ``foreground="hole"`` (the default: attention only for a window around the hole) vs
   ``foreground="all"`` (every position, the released layer) with a centred 32×32-feature hole
   (128×128 image pixels) at 64×64 and 128×128 features (256² and 512² images), batch 1 and
   ``--batch``; plus their largest difference inside the hole.
2. With ``foreground="all"`` and a 50 % × 50 % hole, three variants:

* ours, batched (``inpaintkit.model.attention.ContextualAttention``);
* the straightforward per-sample implementation (:func:`straightforward_attention` below):
  what the authors' TensorFlow code and the common PyTorch ports do, one sample at a time,
  with convolutions over patch filters;
* our layer called once per sample (isolates the gain from batching alone).

3. The paper's layer (``paste="box"``, ``rate=2``) against ``paste="tent"`` and ``rate=1``
   (docs/model.md, "The faint ~8 px grid"), in the generator's hole mode with a
   32×32-feature hole: forward alone and forward + backward.

    python benchmarks/bench_attention.py            # 256² and 512² images (64² and 128² features)
    python benchmarks/bench_attention.py --quick    # 64² features only, fewer repeats
    python benchmarks/bench_attention.py --paste-only --quick --batch 4   # section 3, 64² only
    python benchmarks/bench_attention.py --device cuda
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from inpaintkit.model.attention import ContextualAttention, mask_at
from inpaintkit.model.hole_window import hole_window, score_window


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``padding="SAME"``: (before, after) for one axis."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def straightforward_attention(
    foreground: torch.Tensor,
    background: torch.Tensor,
    mask: torch.Tensor,
    rate: int = 2,
    softmax_scale: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contextual attention as the released TF code and common PyTorch ports write it.

    ``foreground``, ``background`` ``(N, C, H, W)`` with H, W multiples of ``2·rate``;
    ``mask (N, 1, H, W)``, 1 = hole. Returns ``(out (N, C, H, W), argmax (N, h, w))``.
    For each sample: 3×3 background patches of the downscaled features become conv filters
    (L2-normalised), the scores are a conv2d, propagation is conv2d with a 3×3 identity kernel
    on the flattened score image (twice, transposed in between), invalid patches are
    masked, softmax, and the raw 4×4 patches (zero "SAME" padding) are pasted by
    conv_transpose2d and divided by 4.
    """
    n, c, height, width = foreground.shape
    kernel = 2 * rate
    fs = foreground[:, :, ::rate, ::rate]  # nearest downscale
    bs = background[:, :, ::rate, ::rate]
    h, w = fs.shape[-2:]
    pad_y, pad_x = same_padding(height, kernel, rate), same_padding(width, kernel, rate)
    raw = F.unfold(F.pad(background, (*pad_x, *pad_y)), kernel, stride=rate)  # (N, C·16, L)
    m = mask[:, :, ::rate, ::rate]
    # A background patch is valid when its 3×3 window on the downscaled mask has no hole.
    mm = (F.unfold(m, 3, padding=1).sum(dim=1) == 0).float().view(n, h * w, 1, 1)
    eye = torch.eye(3, dtype=foreground.dtype, device=foreground.device).view(1, 1, 3, 3)
    outs, offsets = [], []
    for i in range(n):
        wi = F.unfold(bs[i : i + 1], 3, padding=1)[0].t().reshape(h * w, c, 3, 3)
        norm = wi.square().sum(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-4)
        yi = F.conv2d(fs[i : i + 1], wi / norm, padding=1)  # (1, Lb, h, w)
        # Propagation: identity-kernel conv on the (Lb × Lf) score image, then the same on
        # the column-major flattening (a transposition of both position grids).
        yi = F.conv2d(yi.reshape(1, 1, h * w, h * w), eye, padding=1)
        yi = yi.view(1, h, w, h, w).permute(0, 2, 1, 4, 3).reshape(1, 1, h * w, h * w)
        yi = F.conv2d(yi, eye, padding=1)
        yi = yi.view(1, w, h, w, h).permute(0, 2, 1, 4, 3).reshape(1, h * w, h, w)
        yi = yi * mm[i]
        yi = torch.softmax(yi * softmax_scale, dim=1) * mm[i]
        offsets.append(yi.argmax(dim=1))
        raw_wi = raw[i].t().reshape(h * w, c, kernel, kernel)
        out = F.conv_transpose2d(yi, raw_wi, stride=rate, padding=pad_y[0]) / 4.0
        outs.append(out)
    return torch.cat(outs), torch.cat(offsets)


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


#: Feature pixels: a 128×128 hole in the image (features are 1/4 scale).
HOLE_SIZE = 32


def centred_hole_case(
    batch: int, channels: int, size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded N(0, 1) features ``(batch, channels, size, size)`` and a centred square hole."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(batch, channels, size, size, generator=gen).to(device)
    mask = torch.zeros(batch, 1, size, size, device=device)
    top = (size - HOLE_SIZE) // 2
    mask[:, :, top : top + HOLE_SIZE, top : top + HOLE_SIZE] = 1
    return features, mask


def foreground_modes(
    sizes: list[int],
    batches: list[int],
    channels: int,
    repeats: int,
    device: torch.device,
    device_name: str,
) -> None:
    """Time ``foreground="all"`` against ``"hole"`` and print the Markdown section."""
    rows = []
    for size in sizes:
        for batch in batches:
            features, mask = centred_hole_case(batch, channels, size, device)
            layers = {mode: ContextualAttention(foreground=mode) for mode in ("all", "hole")}
            with torch.no_grad():
                outs = {mode: layer(features, features, mask) for mode, layer in layers.items()}
                hole = mask.expand_as(features) > 0.5
                difference = (outs["all"] - outs["hole"])[hole].abs().max().item()
                seconds = {
                    mode: statistics.median(
                        timed(
                            lambda layer=layer, x=features, m=mask: layer(x, x, m), repeats, device
                        )
                    )
                    for mode, layer in layers.items()
                }
            grid = (-(-size // 2), -(-size // 2))
            window = hole_window(mask_at(mask, batch, size, size), 2, grid)
            scored_window = score_window(window, grid, 3)
            entries = {
                "all": grid[0] * grid[1] * grid[0] * grid[1],
                "hole": scored_window.size[0] * scored_window.size[1] * grid[0] * grid[1],
            }
            rows.append((size, batch, seconds, entries, difference))

    print('## Contextual attention: foreground="hole" vs "all"\n')
    print(
        f"- machine: {device_name}; torch {torch.__version__}; Python {platform.python_version()}"
    )
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(
        f"- C = {channels}, rate 2, stride 1, propagation on, a centred {HOLE_SIZE}×{HOLE_SIZE} "
        f"hole on the feature map ({4 * HOLE_SIZE}×{4 * HOLE_SIZE} in the image); median of "
        f"{repeats} call(s) after a warm-up\n"
    )
    print(
        "| features (image) | batch | all s | hole s | all / hole | score entries per sample, "
        "all → hole | max \\|all − hole\\| in the hole |"
    )
    print("|---|---|---|---|---|---|---|")
    for size, batch, seconds, entries, difference in rows:
        print(
            f"| {size}×{size} ({4 * size}²) | {batch} | {seconds['all']:.3f} | "
            f"{seconds['hole']:.3f} | {seconds['all'] / seconds['hole']:.2f}× | "
            f"{entries['all']:,} → {entries['hole']:,} | {difference:.1e} |"
        )
    print(
        "\nScore entries are the (foreground × background) matching volume's size, computed from "
        "the layer's windows (not measured); its memory is 4 bytes each, in fp32. Outside the "
        'hole the "hole" mode returns its input features, so only the hole is compared.\n'
    )


#: Section 3's variants of the generator's layer: (label, ContextualAttention options).
PASTE_VARIANTS = (
    ("box, rate 2 (the paper's)", {}),
    ("tent, rate 2", {"paste": "tent"}),
    ("box, rate 1", {"rate": 1}),
)


def paste_windows(
    sizes: list[int],
    batch: int,
    channels: int,
    repeats: int,
    device: torch.device,
    device_name: str,
) -> None:
    """Time the paste windows and the matching rate (:data:`PASTE_VARIANTS`); print the section."""
    rows = []
    for size in sizes:
        features, mask = centred_hole_case(batch, channels, size, device)
        for label, options in PASTE_VARIANTS:
            layer = ContextualAttention(**options)

            def forward(layer=layer, features=features, mask=mask):
                with torch.no_grad():
                    return layer(features, features, mask)

            def training(layer=layer, features=features, mask=mask):
                x = features.detach().requires_grad_(True)
                layer(x, x, mask).square().sum().backward()

            seconds = (
                statistics.median(timed(forward, repeats, device)),
                statistics.median(timed(training, repeats, device)),
            )
            rows.append((size, label, seconds))

    print("## Contextual attention: paste window and matching rate\n")
    print(
        f"- machine: {device_name}; torch {torch.__version__}; Python {platform.python_version()}"
    )
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(
        f'- batch {batch}, C = {channels}, stride 1, propagation on, foreground="hole" with '
        f"a centred {HOLE_SIZE}×{HOLE_SIZE}-feature hole; median of {repeats} call(s) after a "
        "warm-up; ratios against the paper's layer at the same size\n"
    )
    print("| features (image) | layer | forward s | ratio | forward + backward s | ratio |")
    print("|---|---|---|---|---|---|")
    reference = {}
    for size, label, (forward_s, training_s) in rows:
        base_f, base_t = reference.setdefault(size, (forward_s, training_s))
        print(
            f"| {size}×{size} ({4 * size}²) | {label} | {forward_s:.3f} | "
            f"{forward_s / base_f:.2f}× | {training_s:.3f} | {training_s / base_t:.2f}× |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64x64 features only, 1 repeat")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--paste-only", action="store_true", help="only the paste windows")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [64] if args.quick else [64, 128]
    repeats = 1 if args.quick else 3
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu_name()}, {torch.get_num_threads()} threads"
    )
    paste_windows(sizes, args.batch, args.channels, 3 * repeats, device, device_name)
    if args.paste_only:
        return
    foreground_modes(sizes, sorted({1, args.batch}), args.channels, repeats, device, device_name)
    # The loop comparison times the released computation (every position) both ways.
    layer = ContextualAttention(foreground="all")

    rows = []
    for size in sizes:
        gen = torch.Generator().manual_seed(0)
        features = torch.randn(args.batch, args.channels, size, size, generator=gen).to(device)
        mask = torch.zeros(args.batch, 1, size, size, device=device)
        mask[:, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1

        def batched(features=features, mask=mask):
            return layer(features, features, mask)

        def straightforward(features=features, mask=mask):
            return straightforward_attention(features, features, mask)[0]

        def own_loop(features=features, mask=mask):
            return torch.cat(
                [
                    layer(features[i : i + 1], features[i : i + 1], mask[i : i + 1])
                    for i in range(features.shape[0])
                ]
            )

        with torch.no_grad():
            ours = batched()
            loop_difference = (ours - own_loop()).abs().max().item()
            # The definitions differ only on the image border: ours divides by the true overlap
            # count (1–2 on the outermost ring instead of 4) and replicates edge pixels into the
            # raw patches instead of zero padding. With a zero outer ring the padding agrees, so
            # inside the ring the two must match to rounding.
            ringed = features.clone()
            ringed[:, :, [0, -1], :] = 0
            ringed[:, :, :, [0, -1]] = 0
            ours_ringed = layer(ringed, ringed, mask)
            plain_ringed = straightforward_attention(ringed, ringed, mask)[0]
            inner_difference = (ours_ringed - plain_ringed)[:, :, 1:-1, 1:-1].abs().max().item()
            whole_difference = (ours - straightforward()).abs().max().item()
            t_batched = statistics.median(timed(batched, repeats, device))
            t_plain = statistics.median(timed(straightforward, repeats, device))
            t_loop = statistics.median(timed(own_loop, repeats, device))
        rows.append(
            (size, t_batched, t_plain, t_loop, inner_difference, whole_difference, loop_difference)
        )

    print("## Contextual attention: batched vs per-sample loops\n")
    print(
        f"- machine: {device_name}; torch {torch.__version__}; Python {platform.python_version()}"
    )
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(
        f"- batch {args.batch}, C = {args.channels}, rate 2, stride 1, propagation on, "
        'foreground="all", '
        f"hole = centre 50 % × 50 %; median of {repeats} call(s) after a warm-up"
    )
    print(
        "- straightforward = per-sample conv2d / conv_transpose2d implementation in this "
        "script (released TF code's structure); own loop = our layer called once per sample\n"
    )
    print(
        "| features (image) | ours batched s | straightforward loop s | own loop s "
        "| straightforward / ours | own loop / ours | ours ms per sample |"
    )
    print("|---|---|---|---|---|---|---|")
    for size, t_batched, t_plain, t_loop, *_ in rows:
        print(
            f"| {size}×{size} ({4 * size}×{4 * size}) | {t_batched:.3f} | {t_plain:.3f} "
            f"| {t_loop:.3f} | {t_plain / t_batched:.2f}× | {t_loop / t_batched:.2f}× "
            f"| {1000 * t_batched / args.batch:.1f} |"
        )
    print("\nAgreement (max absolute difference of the outputs; features are N(0, 1)):\n")
    print(
        "| features | vs straightforward, zero outer ring, inside the ring "
        "| vs straightforward, whole output | vs own loop |"
    )
    print("|---|---|---|---|")
    for size, *_, inner, whole, loop in rows:
        print(f"| {size}×{size} | {inner:.1e} | {whole:.1e} | {loop:.1e} |")
    print(
        "\nThe whole-output difference comes from the border only by definition: ours averages "
        "overlaps by the true coverage count and replicates edge pixels into the raw patches, "
        "where the released code divides by 4 and zero-pads; pasted border patches carry the "
        "padding into the interior, hence the zero-ring check."
    )


if __name__ == "__main__":
    main()
