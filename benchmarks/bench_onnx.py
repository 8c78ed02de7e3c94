"""onnxruntime against PyTorch: DeepFill fills at 256², 512² and 1024² on the CPU, in one run.

Every (runtime, size) is filled in a child process of its own, so its peak RSS is its own:
the child loads the method, fills once to warm up, then ``--repeats`` times timed, and prints
the median time, its peak RSS (``ru_maxrss``) and the hole PSNR against the photo. Rounds run
every configuration in turn (interleaved), so the machine's background load falls on all
alike; the report gives each configuration's time as a ratio to PyTorch fp32 at that size.

Runtimes: PyTorch fp32 and bf16 autocast (:class:`DeepFillMethod`'s precisions; bf16 is
emulated on a CPU without AVX512-BF16/AMX), onnxruntime fp32 at graph optimisation levels
``all`` and ``basic``, and onnxruntime on the model with int8 dynamic quantisation
(``onnxruntime.quantization.quantize_dynamic``). A variant counts as usable only if its hole
PSNR is within 0.1 dB of fp32's (the issue's rule). Blending is off (``blend="none"``) so the
times are the runtimes' alone; the photo is scikit-image's astronaut resized, with a centred
square hole of a quarter of the side.

    python benchmarks/bench_onnx.py                       # 256, 512, 1024; 2 rounds of 1 fill
    python benchmarks/bench_onnx.py --sizes 256 --rounds 1 --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNTIMES = ("torch-fp32", "torch-bf16", "ort-fp32", "ort-fp32-basic", "ort-int8")

#: The largest size each slow variant runs at unless ``--all-sizes``: emulated bf16 took 45x
#: fp32's time at 256² (161-321 s a fill) and int8 2.9x at 512², on the 2-core machine under
#: load (docs/benchmarks.md, "ONNX Runtime against PyTorch").
LARGEST = {"torch-bf16": 256, "ort-int8": 512}


def photo(size: int):
    """``(image (1, 3, S, S) in [-1, 1], mask (1, 1, S, S))``: the astronaut, a centred hole."""
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    from inpaintkit.tensors import image_to_tensor

    picture = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.LANCZOS)
    image = image_to_tensor(np.asarray(picture))
    mask = torch.zeros(1, 1, size, size)
    mask[:, :, 3 * size // 8 : 5 * size // 8, 3 * size // 8 : 5 * size // 8] = 1.0
    return image, mask


def child(runtime: str, size: int, repeats: int, models: dict[str, str]) -> dict:
    """Fill in this process; the result as a dict (printed as JSON by ``--child``)."""
    from inpaintkit.methods import DeepFillMethod
    from inpaintkit.metrics import psnr
    from inpaintkit.onnx_method import OnnxMethod
    from inpaintkit.tensors import signed_to_unit

    if runtime.startswith("torch"):
        precision = runtime.split("-")[1]
        method = DeepFillMethod(device="cpu", precision=precision, blend="none")
    else:
        model = models["int8" if runtime == "ort-int8" else "fp32"]
        level = "basic" if runtime.endswith("basic") else "all"
        method = OnnxMethod(model, blend="none", optimization=level)
    image, mask = photo(size)
    erased = image * (1 - mask)
    method(erased, mask)  # warm-up: first-call allocations, onnxruntime's lazy init
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        filled = method(erased, mask)
        seconds.append(time.perf_counter() - start)
    hole_psnr = float(psnr(signed_to_unit(filled), signed_to_unit(image), mask))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return {"runtime": runtime, "size": size, "seconds": seconds, "psnr": hole_psnr, "rss": peak}


def installed_size(distribution: str, seen: set[str] | None = None) -> int:
    """Bytes on disk of ``distribution`` and everything it requires (extras left out)."""
    seen = set() if seen is None else seen
    key = re.sub(r"[-_.]+", "-", distribution).lower()
    if key in seen:
        return 0
    seen.add(key)
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return 0
    total = sum(f.locate().stat().st_size for f in dist.files or () if f.locate().is_file())
    for requirement in dist.requires or ():
        if "extra ==" in requirement:
            continue
        total += installed_size(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0], seen)
    return total


def prepare_models(folder: Path) -> dict[str, str]:
    """The default model exported, and its int8 dynamic quantisation."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from inpaintkit.export import export_onnx

    fp32, int8 = folder / "deepfill.onnx", folder / "deepfill-int8.onnx"
    export_onnx(fp32)
    # The resize-convolutions' kernels are computed in the graph from the 3x3 weights
    # (model/layers.py, GenDeconv), so those convolutions have no constant weight to quantise.
    graph = onnx.load(str(fp32)).graph
    constants = {t.name for t in graph.initializer}
    constants |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    computed = [n.name for n in graph.node if n.op_type == "Conv" and n.input[1] not in constants]
    quantize_dynamic(
        str(fp32),
        str(int8),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv", "MatMul"],
        nodes_to_exclude=computed,
    )
    return {"fp32": str(fp32), "int8": str(int8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="timed fills per child")
    parser.add_argument("--all-sizes", action="store_true", help="ignore LARGEST")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # JSON: one configuration
    args = parser.parse_args()
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(child(job["runtime"], job["size"], job["repeats"], job["models"])))
        return

    print(f"$ python {shlex.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"load before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        models = prepare_models(Path(tmp))
        sizes_mb = {name: Path(path).stat().st_size / 1e6 for name, path in models.items()}
        results: dict[tuple[str, int], list[dict]] = {}
        for round_ in range(args.rounds):
            # Interleaved: each round runs every configuration; the order turns each round.
            jobs = [
                (r, s)
                for s in args.sizes
                for r in args.runtimes
                if args.all_sizes or s <= LARGEST.get(r, s)
            ]
            jobs = jobs[round_ % len(jobs) :] + jobs[: round_ % len(jobs)]
            for runtime, size in jobs:
                job = {"runtime": runtime, "size": size, "repeats": args.repeats, "models": models}
                done = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(job)],
                    capture_output=True,
                    text=True,
                )
                if done.returncode:
                    tail = done.stderr.strip().splitlines()[-1:] or ["?"]
                    print(f"  {runtime} {size}: failed ({tail[0]})", flush=True)
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results.setdefault((runtime, size), []).append(result)
                print(
                    f"  round {round_} {runtime:15s} {size:5d}²: "
                    f"{statistics.median(result['seconds']):7.2f} s, "
                    f"{result['rss'] / 2**30:5.2f} GiB, {result['psnr']:.3f} dB",
                    flush=True,
                )
    print(
        f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
    )
    print(f"models: fp32 {sizes_mb['fp32']:.1f} MB, int8 {sizes_mb['int8']:.1f} MB")
    print(
        "installed (with requirements): "
        f"torch {installed_size('torch') / 1e6:.0f} MB, "
        f"onnxruntime {installed_size('onnxruntime') / 1e6:.0f} MB, "
        f"onnx {installed_size('onnx') / 1e6:.0f} MB"
    )
    print()
    print("| runtime | size | median s | / torch fp32 | peak RSS GiB | hole PSNR dB | Δ PSNR |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        base = results.get(("torch-fp32", size))
        base_s = statistics.median(s for r in base for s in r["seconds"]) if base else None
        base_psnr = base[0]["psnr"] if base else None
        for runtime in args.runtimes:
            runs = results.get((runtime, size))
            if not runs and not args.all_sizes and size > LARGEST.get(runtime, size):
                continue
            if not runs:
                print(f"| {runtime} | {size}² | failed | | | | |")
                continue
            seconds = statistics.median(s for r in runs for s in r["seconds"])
            ratio = f"{seconds / base_s:.2f}" if base_s else ""
            delta = f"{runs[0]['psnr'] - base_psnr:+.3f}" if base_psnr is not None else ""
            print(
                f"| {runtime} | {size}² | {seconds:.2f} | {ratio} | "
                f"{max(r['rss'] for r in runs) / 2**30:.2f} | {runs[0]['psnr']:.3f} | {delta} |"
            )


if __name__ == "__main__":
    main()
