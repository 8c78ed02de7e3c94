"""The full training state on disk: safetensors tensors plus a JSON sidecar, never a pickle.

What ``inpaintkit train --resume`` needs to continue a run exactly where it stopped: every
network's weights, every optimiser's moments and step counts, every random generator (torch
CPU and CUDA, numpy, Python's ``random``), and the data position. Tensors go to
``state-STEP.safetensors``; everything else (the step, optimiser hyper-parameters, the data
position, the name of the tensors file) to ``training_state.json``. The JSON is written last
and is the commit point: a crash before its rename leaves the previous state intact, and the
tensors file it names is always complete.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from inpaintkit.io import atomic_write, write_text

STATE_JSON = "training_state.json"
_STATE_FILE = re.compile(r"^state-(\d+)\.safetensors$")


class TrainingStateError(ValueError):
    """A training state is missing, truncated or does not match the run it is loaded into."""


# --------------------------------------------------------------------------- modules and optimisers


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` under ``prefix.`` as CPU tensors ready for safetensors."""
    return {f"{prefix}.{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()}


def restore_module(
    prefix: str, module: torch.nn.Module, tensors: Mapping[str, torch.Tensor]
) -> None:
    """Load the ``prefix.`` tensors saved by :func:`module_tensors` (strict: every key must match)."""
    start = f"{prefix}."
    state = {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise TrainingStateError(
            f"{prefix}: saved weights do not fit this network ({first})"
        ) from None


def optimizer_tensors(
    prefix: str, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's state split into tensors (``prefix.state.I.KEY``) and JSON-safe values."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{index}.{key}"] = value.detach().cpu().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
        for g in state_dict["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def restore_optimizer(
    prefix: str,
    optimizer: torch.optim.Optimizer,
    tensors: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
) -> None:
    """Inverse of :func:`optimizer_tensors`; moments are moved to their parameters' devices."""
    state: dict[int, dict[str, Any]] = {}
    start = f"{prefix}.state."
    for name, value in tensors.items():
        if name.startswith(start):
            index, key = name[len(start) :].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for index, entry in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]
    ]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as err:
        raise TrainingStateError(f"{prefix}: saved optimiser state does not fit ({err})") from None


# --------------------------------------------------------------------------- random generators


def rng_tensors(device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """Every random generator's state as fixed-shape tensors (so ranks can all_gather them).

    ``device`` selects the CUDA generator to include (none on CPU). Python's Mersenne Twister
    words are below 2**32 and fit int64; numpy's key likewise; numpy's cached Gaussian and
    Python's ``gauss_next`` are kept as float64 with a presence flag.
    """
    np_kind, np_key, np_pos, np_has_gauss, np_cached = np.random.get_state()
    if np_kind != "MT19937":
        raise TrainingStateError(f"unsupported numpy generator {np_kind}")
    py_version, py_words, py_gauss = random.getstate()
    tensors = {
        "torch_cpu": torch.get_rng_state(),
        "numpy_key": torch.from_numpy(np_key.astype(np.int64)),
        "numpy_extra": torch.tensor([np_pos, np_has_gauss, np_cached], dtype=torch.float64),
        "python_words": torch.tensor([py_version, *py_words], dtype=torch.int64),
        "python_gauss": torch.tensor([py_gauss is not None, py_gauss or 0.0], dtype=torch.float64),
    }
    if device is not None and device.type == "cuda":
        tensors["torch_cuda"] = torch.cuda.get_rng_state(device)
    return tensors


def restore_rng(tensors: Mapping[str, torch.Tensor], device: torch.device | None = None) -> None:
    """Set every generator from :func:`rng_tensors`' output."""
    torch.set_rng_state(tensors["torch_cpu"].to(torch.uint8))
    pos, has_gauss, cached = tensors["numpy_extra"].tolist()
    key = tensors["numpy_key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, int(pos), int(has_gauss), float(cached)))
    words = tensors["python_words"].tolist()
    present, gauss = tensors["python_gauss"].tolist()
    random.setstate((words[0], tuple(words[1:]), gauss if present else None))
    if device is not None and device.type == "cuda" and "torch_cuda" in tensors:
        torch.cuda.set_rng_state(tensors["torch_cuda"].to(torch.uint8), device)


# --------------------------------------------------------------------------- files


def save_training_state(
    folder: str | Path, step: int, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> Path:
    """Write ``state-STEP.safetensors`` then ``training_state.json`` (both atomic); drop older states.

    Returns the JSON path. ``meta`` must be JSON-serialisable; ``step`` is stored in both files
    and checked on load.
    """
    folder = Path(folder)
    name = f"state-{step:08d}.safetensors"
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_write(folder / name) as tmp:
        save_file(flat, str(tmp), metadata={"step": str(step)})
    record = {"step": step, "tensors": name, **meta}
    write_text(folder / STATE_JSON, json.dumps(record, indent=1))
    for old in folder.glob("state-*.safetensors"):
        if _STATE_FILE.match(old.name) and old.name != name:
            old.unlink(missing_ok=True)
    return folder / STATE_JSON


def has_training_state(folder: str | Path) -> bool:
    """True when ``folder`` holds a committed training state."""
    return (Path(folder) / STATE_JSON).is_file()


def load_training_state(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read the state committed in ``folder`` -> ``(tensors on CPU, meta including 'step')``."""
    folder = Path(folder)
    json_path = folder / STATE_JSON
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingStateError(f"{json_path}: no training state to resume from") from None
    except (OSError, json.JSONDecodeError) as err:
        raise TrainingStateError(f"{json_path}: unreadable training state ({err})") from None
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("step"), int)
        or not isinstance(meta.get("tensors"), str)
    ):
        raise TrainingStateError(
            f"{json_path}: malformed training state (no step or tensors entry)"
        )
    tensor_path = folder / meta["tensors"]
    if not _STATE_FILE.match(tensor_path.name):
        raise TrainingStateError(
            f"{json_path}: tensors entry {meta['tensors']!r} is not a state file name"
        )
    try:
        tensors = load_file(str(tensor_path), device="cpu")
        with safe_open(str(tensor_path), framework="pt") as handle:
            saved_step = (handle.metadata() or {}).get("step")
    except FileNotFoundError:
        raise TrainingStateError(
            f"{tensor_path}: tensors of the training state are missing"
        ) from None
    except (SafetensorError, OSError) as err:
        raise TrainingStateError(f"{tensor_path}: unreadable training state ({err})") from None
    if saved_step != str(meta["step"]):
        raise TrainingStateError(
            f"{tensor_path}: holds step {saved_step}, {json_path.name} says {meta['step']}"
        )
    return tensors, meta
