"""Step 2: the same computation on the CPU and on the GPU, piece by piece, as relative errors.

Each check runs one piece of inpaintkit on CPU fp32 (the reference, what every test so far has
covered) and on the plan's device, and reports ``‖device − cpu‖₂ / ‖cpu‖₂`` against a
tolerance of ours. The pieces are those with their own CUDA code path or numerics: the
generator forward (fp32 and bf16 autocast; cuDNN may run fp32 convolutions in TF32, torch's
default), contextual attention, the reconstruction loss (whose distance transform is scipy's
on the CPU and a min-plus torch pass elsewhere), the gradient penalty's value and its double
backward into the critic, PatchMatch (batched torch formulation on CUDA) and Poisson blending
(solved on the CPU whatever the device). In the dry run the "device" is the CPU as well, so
the code runs but the errors are those of CPU against CPU.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from bench_fill import photo_batch  # sibling script (benchmarks/ is on sys.path)

from inpaintkit.blend import poisson_blend
from inpaintkit.checkpoint import load_generator
from inpaintkit.losses import gradient_penalty, reconstruction_loss, spatial_discount
from inpaintkit.model.attention import ContextualAttention
from inpaintkit.model.critics import GlobalCritic, LocalCritic
from inpaintkit.patchmatch import patchmatch_inpaint

#: Our tolerances on the relative error: fp32 allows TF32 convolutions (10-bit mantissa) through
#: ~30 layers and attention's softmax (scale 10); bf16 (8-bit mantissa) is compared with CPU fp32.
FP32_TOLERANCE = 1e-2
BF16_TOLERANCE = 6e-2


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """``‖got − want‖₂ / ‖want‖₂`` in float64 on the CPU (0 when both are zero)."""
    got, want = got.detach().cpu().double(), want.detach().cpu().double()
    norm = float(want.norm())
    diff = float((got - want).norm())
    return diff / norm if norm > 0 else diff


def _row(
    check: str,
    precision: str,
    error: float,
    tolerance: float | None,
    note: str = "",
    ok: bool | None = None,
) -> dict:
    """One table row; ``ok`` defaults to ``error <= tolerance``."""
    return {
        "check": check,
        "precision": precision,
        "rel_error": error,
        "tolerance": tolerance,
        "ok": bool(error <= tolerance) if ok is None else ok,
        "note": note,
    }


def check_generator(device: torch.device, size: int) -> list[dict]:
    """The shipped generator's coarse and refined outputs, fp32 and bf16 autocast on ``device``."""
    torch.manual_seed(0)
    generator = load_generator()
    images, masks = photo_batch(2, size, size // 4, "cpu")
    masks[1, :, : size // 8, :] = 1  # a second hole along the border, as free-form holes do
    with torch.no_grad():
        want = generator(images, masks)
        on_device = copy.deepcopy(generator).to(device)
        x, m = images.to(device), masks.to(device)
        rows = []
        for precision, dtype, tolerance in (
            ("fp32", None, FP32_TOLERANCE),
            ("bf16", torch.bfloat16, BF16_TOLERANCE),
        ):
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                got = on_device(x, m)
            for stage in ("coarse", "refined"):
                error = relative_error(getattr(got, stage).float(), getattr(want, stage))
                rows.append(_row(f"generator {stage}, {size}²×2", precision, error, tolerance))
    return rows


def check_attention(device: torch.device) -> list[dict]:
    """Contextual attention alone (released layer options, random features, two holes)."""
    gen = torch.Generator().manual_seed(1)
    foreground = torch.randn(2, 32, 32, 32, generator=gen)
    background = torch.randn(2, 32, 32, 32, generator=gen)
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, 8:20, 10:24] = 1
    mask[1, :, 20:, 2:9] = 1
    layer = ContextualAttention()
    want = layer(foreground, background, mask)
    got = layer(foreground.to(device), background.to(device), mask.to(device))
    return [
        _row("contextual attention, 32 ch 32²×2", "fp32", relative_error(got, want), FP32_TOLERANCE)
    ]


def check_losses(device: torch.device, size: int) -> list[dict]:
    """The default recipe's reconstruction loss and its spatial discount (distance, γ 0.99)."""
    gen = torch.Generator().manual_seed(2)
    target = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    coarse = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    refined = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    mask = torch.zeros(2, 1, size, size)
    mask[0, :, size // 4 : size // 2, size // 8 : size // 2] = 1
    mask[1, :, size // 2 :, size // 3 : size // 3 + 3] = 1  # a thin stroke
    options = dict(gamma=0.99, mode="distance", normalization="image")

    def total(*tensors: torch.Tensor) -> torch.Tensor:
        t, c, r, m = tensors
        return reconstruction_loss(t, (c, r), m, **options).total

    want = total(target, coarse, refined, mask)
    got = total(*(t.to(device) for t in (target, coarse, refined, mask)))
    discount_cpu = spatial_discount(mask, 0.99, "distance")
    discount_dev = spatial_discount(mask.to(device), 0.99, "distance")
    return [
        _row(
            "spatial discount (distance)", "fp32", relative_error(discount_dev, discount_cpu), 1e-5
        ),
        _row("reconstruction loss", "fp32", relative_error(got, want), 1e-5),
    ]


def check_gradient_penalty(device: torch.device, size: int) -> list[dict]:
    """Both critics' hole-masked gradient penalty and its gradient with respect to the critic."""
    rows = []
    for name, critic_type, side in (
        ("global", GlobalCritic, size),
        ("local", LocalCritic, size // 2),
    ):
        torch.manual_seed(3)
        critic = critic_type(side, 64)
        gen = torch.Generator().manual_seed(4)
        real = torch.rand(4, 3, side, side, generator=gen) * 2 - 1
        fake = torch.rand(4, 3, side, side, generator=gen) * 2 - 1
        mask = (torch.rand(4, 1, side, side, generator=gen) > 0.5).float()
        t = torch.rand(4, generator=gen)
        results = []
        for net, dev in ((critic, torch.device("cpu")), (copy.deepcopy(critic).to(device), device)):
            penalty = gradient_penalty(
                net, real.to(dev), fake.to(dev), mask.to(dev), 10.0, t=t.to(dev)
            )
            params = list(net.parameters())
            # The last layer's bias does not change ∇ₓD, so it gets no gradient: count it as zero.
            grads = torch.autograd.grad(penalty, params, allow_unused=True)
            flat = [
                torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)
            ]
            results.append((penalty, torch.cat([g.flatten() for g in flat])))
        (want, want_grad), (got, got_grad) = results
        rows.append(
            _row(f"{name} gradient penalty, {side}²×4", "fp32", relative_error(got, want), 1e-3)
        )
        rows.append(
            _row(
                f"{name} penalty's critic gradient",
                "fp32",
                relative_error(got_grad, want_grad),
                FP32_TOLERANCE,
            )
        )
    return rows


def check_patchmatch(device: torch.device, size: int) -> list[dict]:
    """The batched torch PatchMatch on ``device`` against the same formulation on the CPU.

    Its random search draws from a generator on the device, whose stream differs from the
    CPU's, so the fills differ; the check is that the fill is as good: the hole's mean
    absolute error to the ground truth within 15 % of the CPU's.
    """
    image, mask = photo_batch(1, size, size // 3, "cpu")
    pixels = ((image[0].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    hole = mask[0, 0].numpy() > 0.5
    cpu = patchmatch_inpaint(pixels, hole, device="cpu", backend="torch", seed=0)
    dev = patchmatch_inpaint(pixels, hole, device=device, backend="torch", seed=0)
    truth = pixels[hole].astype(np.float64)
    error_cpu = float(np.abs(cpu[hole] - truth).mean())
    error_dev = float(np.abs(dev[hole] - truth).mean())
    parity = abs(error_dev - error_cpu) / max(error_cpu, 1e-9)
    difference = relative_error(torch.from_numpy(dev[hole]), torch.from_numpy(cpu[hole]))
    note = (
        f"random streams differ by device; hole error to the truth {error_dev:.2f} against the "
        f"CPU's {error_cpu:.2f} (of 255): ok within 15 %"
    )
    return [_row(f"PatchMatch fill, {size}²", "uint8", difference, None, note, ok=parity <= 0.15)]


def check_blend(device: torch.device, size: int) -> list[dict]:
    """Poisson blending of a noisy prediction into a photo's hole, inputs on ``device``."""
    image, mask = photo_batch(2, size, size // 3, "cpu")
    gen = torch.Generator().manual_seed(5)
    prediction = (image + 0.3 * torch.randn(image.shape, generator=gen)).clamp(-1, 1)
    want = poisson_blend(image, prediction, mask)
    got = poisson_blend(image.to(device), prediction.to(device), mask.to(device))
    return [_row(f"Poisson blend, {size}²×2", "fp32", relative_error(got, want), 1e-6)]


def run(plan, results) -> None:
    """Every check on ``plan.device``, one row each, saved as they finish."""
    device = torch.device(plan.device)
    results["device"] = str(device)
    results["dry_run"] = device.type == "cpu"
    checks = (
        ("generator", lambda: check_generator(device, plan.check_size)),
        ("attention", lambda: check_attention(device)),
        ("losses", lambda: check_losses(device, plan.check_size)),
        ("gradient penalty", lambda: check_gradient_penalty(device, plan.check_size)),
        ("PatchMatch", lambda: check_patchmatch(device, plan.patchmatch_size)),
        ("Poisson blending", lambda: check_blend(device, plan.check_size)),
    )
    for name, check in checks:
        try:
            for row in check():
                results.add_row("rows", row)
        except Exception as err:  # one broken piece must not hide the others
            results.add_row("rows", _row(name, "-", float("nan"), None, f"{err!r}"[:300], ok=False))


def _tolerance(value: float | None) -> str:
    return "-" if value is None else f"{value:.0e}"


def section(result: dict) -> str:
    """The report's table of relative errors."""
    against = (
        "CPU against CPU (dry run: the code runs, the numbers are not CUDA's)"
        if result.get("dry_run")
        else f"{result.get('device', '?')} against CPU fp32"
    )
    lines = [f"### CUDA against CPU: {against}", ""]
    lines += [
        "| check | precision | relative error | tolerance | ok | note |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in result.get("rows", []):
        lines.append(
            f"| {r['check']} | {r['precision']} | {r['rel_error']:.2e} | {_tolerance(r['tolerance'])} | "
            f"{'yes' if r['ok'] else '**no**'} | {r['note']} |"
        )
    return "\n".join(lines)
