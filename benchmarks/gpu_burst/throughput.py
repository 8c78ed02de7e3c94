"""Step 3: how fast the GPU trains and fills, with the measuring code of benchmarks/bench_*.py.

Rows, in the order they run (the step's budget cuts off what does not fit, so the rows the
training step needs come first):

* Algorithm 1 iterations/s (critic steps + one generator step, pre-made batches) and warm-up
  (ℓ1-only) generator steps/s for the recipe that step 4 trains (training.TRAINING: 256² × 16
  on the GPU), with ``bench_train.measure`` and ``bench_train.warmup_rate``;
* fill: images/s of the shipped generator at 512² (a centred 128² hole), batch 1 and 16, fp32
  and bf16 autocast, NCHW and channels_last, model only on device tensors (pasted: Poisson
  blending runs on the CPU), with ``bench_fill.fill_rate``;
* the same with ``torch.compile`` (dynamic=False; a compile per batch size), last because
  each costs tens of seconds of compiling.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
from bench_fill import fill_rate, photo_batch  # sibling scripts (benchmarks/ is on sys.path)
from bench_train import measure, warmup_rate

from inpaintkit.checkpoint import DEFAULT_CHECKPOINT
from inpaintkit.methods import DeepFillMethod

from .training import training_recipe


def training_rows(plan, device: torch.device) -> Iterator[dict]:
    """Algorithm 1 iterations/s, then warm-up steps/s, of the training recipe on ``device``."""
    recipe = training_recipe(plan.train_overrides)
    batch, size = recipe.data.batch_size, recipe.data.image_size
    perf = recipe.performance
    common = {
        "shape": f"{size}²×{batch}",
        "variant": f"recipe `{recipe.name}`: bf16 {perf.bf16}, channels_last {perf.channels_last}",
    }
    iterations = plan.rate_iterations
    # Untimed iterations first on the GPU (cuDNN autotuning, the allocator); none in the dry
    # run, whose numbers are not the point.
    rate = measure(recipe, device, batch, iterations, warmup=2 if device.type == "cuda" else 0)
    yield {"what": "Algorithm 1", **common, "rate": rate, "unit": "iterations/s"}
    seconds = warmup_rate(recipe, batch, iterations, device)
    yield {"what": "warm-up (ℓ1 only)", **common, "rate": 1 / seconds, "unit": "steps/s"}


def fill_variants(plan) -> list[tuple[int, str, bool, bool]]:
    """(batch, precision, channels_last, compiled) of every fill row, eager ones first."""
    eager = [
        (batch, precision, layout, False)
        for batch in plan.fill_batches
        for precision in plan.fill_precisions
        for layout in (False, True)
    ]
    compiled = [
        (batch, precision, True, True)
        for precision in reversed(plan.fill_precisions)
        for batch in reversed(plan.fill_batches)
    ]
    return eager + (compiled if plan.compile_fill else [])


def fill_row(
    plan, device: torch.device, batch: int, precision: str, layout: bool, compiled: bool
) -> dict:
    """Images/s of one fill variant (see module docstring)."""
    images, masks = photo_batch(batch, plan.fill_size, plan.fill_hole, device)
    method = DeepFillMethod(
        DEFAULT_CHECKPOINT, device=device, precision=precision, channels_last=layout, blend="none"
    )
    start = time.perf_counter()
    if compiled:
        method.generator = torch.compile(method.generator, dynamic=False)
    repeats = max(2, plan.fill_images // batch)
    rate, _ = fill_rate(method, images, masks, repeats)
    return {
        "what": "fill",
        "shape": f"{plan.fill_size}²×{batch}",
        "precision": precision,
        "channels_last": layout,
        "compiled": compiled,
        "rate": rate,
        "unit": "images/s",
        "seconds": round(time.perf_counter() - start, 1),
    }


def run(plan, results) -> None:
    """Every row on ``plan.device``, saved as it finishes; a failing row is recorded and skipped."""
    device = torch.device(plan.device)
    results["device"] = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    results.save()
    try:
        for row in training_rows(plan, device):
            results.add_row("rows", row)
    except Exception as err:
        results.add_row("rows", {"what": "training rates", "error": repr(err)[:300]})
    for batch, precision, layout, compiled in fill_variants(plan):
        try:
            results.add_row("rows", fill_row(plan, device, batch, precision, layout, compiled))
        except Exception as err:
            results.add_row(
                "rows",
                {
                    "what": "fill",
                    "shape": f"{plan.fill_size}²×{batch}",
                    "precision": precision,
                    "channels_last": layout,
                    "compiled": compiled,
                    "error": repr(err)[:300],
                },
            )
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _variant(row: dict) -> str:
    if row["what"] != "fill":
        return row.get("variant", "")
    parts = [row["precision"], "channels_last" if row["channels_last"] else "NCHW"]
    return ", ".join(parts + (["compiled"] if row["compiled"] else []))


def section(result: dict, smoke: dict | None = None) -> str:
    """The throughput table, and the distributed smoke run's line under it."""
    lines = [f"## 3. Throughput on {result.get('device', '?')}", ""]
    lines += ["| what | shape | variant | rate |", "|---|---|---|---:|"]
    for row in result.get("rows", []):
        rate = (
            f"**failed**: {row['error']}" if "error" in row else f"{row['rate']:.2f} {row['unit']}"
        )
        lines.append(f"| {row['what']} | {row.get('shape', '')} | {_variant(row)} | {rate} |")
    if smoke is not None:
        from .distributed import summary

        lines += ["", summary(smoke)]
    return "\n".join(lines)
