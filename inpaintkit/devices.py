"""Choosing the torch device a command runs on."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device``.

    Asking for CUDA on a machine without it is an error here rather than deep inside a
    forward pass.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return resolved


def has_native_bf16(device: torch.device) -> bool:
    """Whether bf16 arithmetic on ``device`` runs in hardware rather than being emulated.

    Every CUDA GPU torch supports computes bf16 matrix products natively (Ampere and later in
    tensor cores; older ones still convert on load). On a CPU, oneDNN has bf16 convolution
    kernels only with AVX512-BF16 or AMX; without them autocast converts back and forth and
    is slower than fp32, so training leaves it off there.
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
