"""The one image/mask convention of inpaintkit, and the conversions into and out of it.

* image: float tensor ``(N, 3, H, W)``, values in ``[-1, 1]`` (uint8 ``v`` maps to ``v / 127.5 - 1``);
* mask: float tensor ``(N, 1, H, W)``, values in ``{0, 1}``, ``1 = hole`` (unknown), ``0 = known``.

Everything that crosses a module boundary uses this convention; arrays read from or written
to files are ``uint8 (H, W, 3)`` RGB and ``bool (H, W)`` masks (``True = hole``).

Value ranges, named by what they map between: ``uint8`` (``[0, 255]``), ``signed``
(``[-1, 1]``, the convention above) and ``unit`` (``[0, 1]``, what the metrics take):
:func:`uint8_to_signed`, :func:`uint8_to_unit`, :func:`signed_to_unit`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def uint8_to_signed(images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 tensor ``(N, 3, H, W)`` in ``[0, 255]`` -> float32 in ``[-1, 1]`` (``v / 127.5 - 1``).

    The one definition of the conversion (:func:`image_to_tensor` uses it; so does training on
    ``InpaintingDataset(dtype="uint8")`` batches). Moves ``images`` to ``device`` first
    (asynchronously from pinned memory), so the 4x larger float tensor is only ever made there;
    without ``device`` the result is on ``images``' device.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 batch, got {images.dtype}")
    if device is not None:
        images = images.to(device, non_blocking=True)
    return images.float().div_(127.5).sub_(1.0)


def uint8_to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` or ``(H, W, 3)`` in ``[0, 255]`` -> float64 ``(N, 3, H, W)`` in [0, 1] (``v / 255``)."""
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = images[None]
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double() / 255.0


def signed_to_unit(images: torch.Tensor) -> torch.Tensor:
    """float ``(N, C, H, W)`` in ``[-1, 1]`` (clamped to it) -> float64 in ``[0, 1]`` (``(x + 1) / 2``)."""
    return (images.double().clamp(-1.0, 1.0) + 1.0) / 2.0


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` or ``(N, H, W, 3)`` RGB -> float32 ``(N, 3, H, W)`` in ``[-1, 1]``."""
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3), got {image.shape}")
    # Channels-first while still uint8 (4x less memory to move than float32); the copy also
    # makes read-only arrays from np.asarray(PIL image) acceptable to torch.
    channels_first = np.ascontiguousarray(image.transpose(0, 3, 1, 2))
    return uint8_to_signed(torch.from_numpy(channels_first))


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """float ``(N, 3, H, W)`` in ``[-1, 1]`` -> uint8 ``(N, H, W, 3)``, rounded to nearest.

    Exact inverse of :func:`image_to_tensor` on its outputs: ``(v / 127.5 - 1 + 1) * 127.5``
    rounds back to ``v`` for every uint8 ``v``.
    """
    scaled = (tensor.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5
    return scaled.round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def mask_to_tensor(mask: np.ndarray) -> torch.Tensor:
    """bool/uint8 ``(H, W)`` or ``(N, H, W)`` (nonzero = hole) -> float32 ``(N, 1, H, W)`` in {0, 1}."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"expected (H, W) or (N, H, W), got {mask.shape}")
    return torch.from_numpy(np.ascontiguousarray(mask != 0)).float().unsqueeze(1)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(N, C, H, W)`` on the bottom/right so H and W are multiples of ``multiple``.

    Mirror (reflect) padding keeps the padded border looking like image content, so the
    network sees no artificial edge; where the image is too small to mirror (a pad as large
    as the side itself, e.g. a 3-pixel-wide image padded to 8) the edge pixel is repeated.
    Returns the padded tensor and the original ``(H, W)`` for :func:`crop_to`.
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (height, width)
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (height, width)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size = (H, W)`` of ``(N, C, H', W')``."""
    return x[..., : size[0], : size[1]]


def composite(image: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Known pixels from ``image``, hole pixels from ``prediction`` (all in the convention above).

    Written as a selection, not ``image * (1 - mask) + prediction * mask``, so known pixels are
    copied bit-exactly even where ``prediction`` holds inf or NaN.
    """
    return torch.where(mask > 0.5, prediction, image)
