"""One prepared command for a lent GPU machine: check, measure, then train (docs/gpu.md).

``bash benchmarks/gpu_burst.sh`` runs, on a GPU machine of which a session gets a few minutes
by chance, every step below within nine minutes of wall time, each in a child process with its
own time budget so that a step that fails or hangs costs only its own budget:

1. :mod:`.environment` — GPU, driver, torch, CUDA, free memory, the packages inpaintkit needs;
2. the tests marked ``cuda`` (``pytest -m cuda``) and :mod:`.checks`, the CUDA-against-CPU
   relative errors of the generator, contextual attention, the losses, the gradient penalty,
   PatchMatch and Poisson blending;
3. :mod:`.throughput` (fill, Algorithm 1 and warm-up rates, reusing benchmarks/bench_fill.py
   and bench_train.py) and :mod:`.distributed` (a one-process NCCL and DDP smoke run);
4. :mod:`.training` — ``inpaintkit train`` from the shipped weights on the packed training
   set for the rest of the time, its generator exported as fp16 about every minute.

:mod:`.runner` drives the steps and writes ``report.md`` and the other files into ``$OUT``
(at most 8 files: what such a machine sends back). :mod:`.plan` holds the sizes and budgets
of the GPU run and of the dry run (``GPU_BURST_DRY_RUN=1``: every step on the CPU at tiny
sizes). :mod:`.pack` makes the packed training set that travels with the call.
"""
