"""Generator checkpoints: safetensors weights with the architecture as JSON metadata.

A checkpoint is a plain safetensors file, so loading one never executes code: no pickle is
ever read (``torch.load`` is not used anywhere in inpaintkit). Its metadata holds::

    format          "inpaintkit.generator"
    format_version  "1"
    config          JSON of GeneratorConfig (every field)
    ...             optional caller entries (str -> str), e.g. the training step

Every refusal is a :class:`CheckpointError` whose one-line message names the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from inpaintkit.io import atomic_write
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.typed import ConfigError, build

FORMAT = "inpaintkit.generator"
FORMAT_VERSION = "1"
_RESERVED = ("format", "format_version", "config")

#: Where the packaged models' fp16 weights lie.
WEIGHTS_DIR = Path(__file__).parent / "weights"

#: The models that ship with inpaintkit, by the name ``--checkpoint`` takes (docs/model-card.md),
#: so that a user can choose one without knowing where the package lies. ``smooth``: trained
#: on the ℓ1 losses alone (recipes/default.yaml), the most accurate per pixel and soft.
BUNDLED_MODELS: dict[str, str] = {"smooth": "deepfill_v1.safetensors"}

#: The bundled model used when none is given.
DEFAULT_MODEL = "smooth"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / BUNDLED_MODELS[DEFAULT_MODEL]

#: Why there is no model to load when none is given and the package has none (a source tree
#: without the weights file, e.g. a sparse checkout).
NO_DEFAULT_MODEL = (
    f"no default model at {DEFAULT_CHECKPOINT} (this copy of inpaintkit lacks its weights file); "
    "pass --checkpoint FILE (trained with `inpaintkit train`) or use --method patchmatch"
)


class CheckpointError(ValueError):
    """A file cannot be used as a generator checkpoint; the message names the file and why."""


def default_checkpoint() -> Path | None:
    """The packaged default model's file (``DEFAULT_MODEL``) if it exists, else ``None``."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None


def resolve_checkpoint(model: str | os.PathLike | None) -> Path:
    """The weights file of ``model``: ``None`` (the default model), the name of a bundled model
    (``BUNDLED_MODELS``; a file of that name in the working directory wins), or a file.

    Raises :class:`CheckpointError` naming what is missing; the file's contents are not read.
    """
    if model is None:
        path = default_checkpoint()
        if path is None:
            raise CheckpointError(NO_DEFAULT_MODEL)
        return path
    path = Path(model)
    name = str(model)
    if name in BUNDLED_MODELS and not path.exists():
        path = WEIGHTS_DIR / BUNDLED_MODELS[name]
        if not path.is_file():
            raise CheckpointError(
                f"{path}: the bundled model {name!r} is missing from this copy of inpaintkit"
            )
    if not path.is_file():
        raise CheckpointError(
            f"{name}: no such file, and not a bundled model ({', '.join(BUNDLED_MODELS)})"
        )
    return path


def save_generator(
    path: str | os.PathLike,
    generator: Generator,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write ``generator``'s weights and config to ``path`` (safetensors, atomically).

    ``metadata``: extra ``str -> str`` entries stored beside the reserved ``format``,
    ``format_version`` and ``config`` keys (which it may not contain). ``dtype``: how the
    weights are stored (``torch.float16`` halves the file; :func:`load_generator` casts back
    to float32).
    """
    extra = dict(metadata or {})
    for key, value in extra.items():
        if key in _RESERVED:
            raise ValueError(f"metadata key {key!r} is reserved by the checkpoint format")
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str, got {key!r}: {type(value).__name__}")
    header = {
        **extra,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(dataclasses.asdict(generator.config), sort_keys=True),
    }
    tensors = {
        name: t.detach().to("cpu", dtype).contiguous() for name, t in generator.state_dict().items()
    }
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def _refuse_pickle(path: Path) -> None:
    """Recognise PyTorch ``.pt`` archives and raw pickles by their first bytes; never open them."""
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        raise CheckpointError(
            f"{path}: a zip archive (a torch.save .pt/.pth file?); pickled checkpoints are refused, "
            "inpaintkit reads safetensors only"
        )
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise CheckpointError(
            f"{path}: a Python pickle; pickled checkpoints are refused, inpaintkit reads safetensors only"
        )


def _parse_config(path: Path, text: str | None) -> GeneratorConfig:
    if text is None:
        raise CheckpointError(f"{path}: metadata has no 'config' entry")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: 'config' metadata is not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: 'config' metadata must be a JSON object")
    # Checkpoints saved before the paste window was an option pasted with the box.
    data.setdefault("attention_paste", "box")
    # ... and those saved before the resize was an option resized by nearest neighbour.
    data.setdefault("upsample", "nearest")
    # ... and those saved before the noise inputs had none.
    data.setdefault("noise_inputs", False)
    # ... and those saved before the noise had gates had none.
    data.setdefault("noise_gates", False)
    missing = sorted({f.name for f in dataclasses.fields(GeneratorConfig)} - data.keys())
    if missing:
        raise CheckpointError(f"{path}: config is missing keys: {', '.join(missing)}")
    try:
        return build(GeneratorConfig, data, "config")
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a generator checkpoint (format checked, tensors not read)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    _refuse_pickle(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an inpaintkit generator checkpoint (format={metadata.get('format')!r})"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported format_version {metadata.get('format_version')!r} (this inpaintkit reads {FORMAT_VERSION!r})"
        )
    return metadata


def load_generator(
    path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> Generator:
    """Build the :class:`Generator` described by ``path`` and load its weights (eval mode).

    ``path=None`` loads the packaged default model (:data:`DEFAULT_CHECKPOINT`).
    fp16/bf16 weights are cast to fp32. Refuses, with :class:`CheckpointError`, pickles and
    ``.pt`` archives (detected, never unpickled), truncated or corrupt files, foreign or
    future formats, missing or unknown config keys, and missing, unexpected or misshapen tensors.
    """
    path = resolve_checkpoint(None) if path is None else Path(path)
    config = _parse_config(path, read_metadata(path).get("config"))
    generator = Generator(config)
    expected = generator.state_dict()
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            missing = sorted(expected.keys() - names)
            unexpected = sorted(names - expected.keys())
            if missing:
                raise CheckpointError(f"{path}: missing tensors {_listing(missing)}")
            if unexpected:
                raise CheckpointError(
                    f"{path}: unexpected tensors {_listing(unexpected)} for this config"
                )
            for name in sorted(names):
                tensor = f.get_tensor(name)
                if tensor.shape != expected[name].shape:
                    raise CheckpointError(
                        f"{path}: tensor {name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
                    )
                if not tensor.is_floating_point():
                    raise CheckpointError(
                        f"{path}: tensor {name} has non-float dtype {tensor.dtype}"
                    )
                state[name] = tensor.to(torch.float32)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: corrupt tensor data ({err})") from None
    generator.load_state_dict(state)
    return generator.to(device).eval()


def _listing(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown} (+{len(names) - limit} more)" if len(names) > limit else shown
