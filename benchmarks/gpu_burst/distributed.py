"""Step 3b: a one-process NCCL and DDP smoke run (gloo on the CPU in the dry run).

A lent machine has one GPU, and NCCL refuses two ranks on one device; a one-process
``torchrun`` job skips every collective (:mod:`inpaintkit.distributed` is a no-op when
``WORLD_SIZE`` is 1). So this step opens a process group of one rank on the device's backend
itself and issues, on the shipped generator's tensors, the collectives a multi-GPU run
issues: the broadcast of the starting weights, the all_reduce of a network's flattened
gradients (what ``average_gradients`` sends), a MAX all_reduce (the stop signal) and the
all_gather of every RNG state; and one reconstruction step with the generator wrapped in
``DistributedDataParallel``, whose gradients must equal the plain step's. With one rank each
collective must return its input unchanged.
"""

from __future__ import annotations

import os
import socket
import time

import torch
import torch.distributed as dist
from bench_fill import photo_batch  # sibling scripts (benchmarks/ is on sys.path)
from bench_generator import median_time
from torch.nn.parallel import DistributedDataParallel

from inpaintkit.checkpoint import load_generator
from inpaintkit.training_state import rng_tensors

from .checks import relative_error


def free_port() -> int:
    """A TCP port nobody listens on now, for the process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flat_gradients(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in module.parameters() if p.grad is not None])


def reconstruction_step(net: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> None:
    """Forward and backward of a plain ℓ1 loss on both stages (gradients left in ``.grad``)."""
    out = net(images, masks)
    ((out.coarse - images).abs().mean() + (out.refined - images).abs().mean()).backward()


def run(plan, results) -> None:
    """The smoke run on ``plan.device`` (see module docstring)."""
    device = torch.device(plan.device, 0) if plan.device == "cuda" else torch.device("cpu")
    backend = "nccl" if device.type == "cuda" else "gloo"
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    results["backend"] = backend
    start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=0, world_size=1)
    results["init_seconds"] = round(time.perf_counter() - start, 2)
    results.save()
    try:
        generator = load_generator(device=device).train()
        images, masks = photo_batch(2, plan.check_size, plan.check_size // 4, device)

        for tensor in generator.state_dict().values():
            dist.broadcast(tensor, 0)
        reconstruction_step(generator, images, masks)
        plain = flat_gradients(generator)
        generator.zero_grad(set_to_none=True)
        ddp = DistributedDataParallel(
            generator, device_ids=[device.index] if device.type == "cuda" else None
        )
        reconstruction_step(ddp, images, masks)
        results["ddp_gradient_rel_error"] = relative_error(flat_gradients(generator), plain)
        results.save()

        reduced = plain.clone()
        results["all_reduce_ms"] = median_time(lambda: dist.all_reduce(reduced), device, 5) * 1e3
        results["all_reduce_mb"] = round(plain.numel() * plain.element_size() / 1e6, 1)
        results["all_reduce_unchanged"] = bool(torch.equal(reduced, plain))
        flag = torch.tensor([2], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        results["max_ok"] = int(flag.item()) == 2
        states = rng_tensors(device)
        gathered_ok = True
        for value in states.values():
            parts = [torch.empty_like(value, device=device)]
            dist.all_gather(parts, value.to(device))
            gathered_ok &= bool(torch.equal(parts[0].cpu(), value.cpu()))
        results["all_gather_ok"] = gathered_ok
        results["ok"] = (
            results["all_reduce_unchanged"]
            and results["max_ok"]
            and gathered_ok
            and results["ddp_gradient_rel_error"] < 1e-4
        )
        results.save()
    finally:
        dist.destroy_process_group()


def summary(result: dict) -> str:
    """One line for the throughput section."""
    if not result:
        return "- one-process distributed smoke run: **no result**"
    if "ok" not in result:
        return (
            f"- one-process {result.get('backend', '?')} smoke run: **did not finish** "
            f"(process group up: {'init_seconds' in result}; see burst.log)"
        )
    return (
        f"- one-process {result['backend']} smoke run: {'ok' if result['ok'] else '**FAILED**'}; "
        f"group up in {result['init_seconds']} s; DDP step's gradients against the plain step's: "
        f"relative error {result['ddp_gradient_rel_error']:.1e}; all_reduce of the generator's "
        f"{result['all_reduce_mb']} MB of gradients {result['all_reduce_ms']:.2f} ms "
        f"(unchanged: {result['all_reduce_unchanged']}); MAX all_reduce ok: {result['max_ok']}; "
        f"all_gather of the RNG states ok: {result['all_gather_ok']}"
    )
