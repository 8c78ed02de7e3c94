"""Inference: fill the holes of images of any size with a trained :class:`Generator`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from inpaintkit.blend import check_blend, poisson_blend
from inpaintkit.hd_strategy import Box, fill_boxes, plan_image
from inpaintkit.model.generator import Generator
from inpaintkit.tensors import composite, crop_to, pad_to_multiple

#: The attention offsets live on the generator's 1/4-resolution feature grid.
FEATURE_STRIDE = 4


@dataclass
class InpaintResult:
    """Output of :func:`inpaint`, on the input's device and in its dtype.

    ``image``: ``(N, 3, H, W)`` in ``[-1, 1]``, the refined prediction composited (or
    Poisson-blended, :mod:`inpaintkit.blend`) into the holes, known pixels bit-exact copies of
    the input. ``coarse``: the first stage's
    prediction, composited the same way. ``offsets``: ``(N, 2, ceil(H/4), ceil(W/4))`` long
    contextual-attention offsets (dy, dx) in feature pixels, or ``None``.
    """

    image: torch.Tensor
    coarse: torch.Tensor
    offsets: torch.Tensor | None = None


def _device_of(module: torch.nn.Module) -> torch.device:
    # A module without parameters (onnx_method.OnnxGenerator, an onnxruntime session) runs on the CPU.
    parameter = next(module.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


@torch.no_grad()
def inpaint(
    generator: Generator,
    image: torch.Tensor,
    mask: torch.Tensor,
    return_offsets: bool = False,
    autocast_dtype: torch.dtype | None = None,
    blend: str = "none",
    hd_strategy: str = "original",
    max_size: int | None = None,
) -> InpaintResult:
    """Inpaint ``image (N, 3, H, W)`` in ``[-1, 1]`` where ``mask (N, 1, H, W)`` is 1.

    Any H×W and any number and shape of holes: the inputs are mirror-padded on the bottom and
    right to a multiple of :attr:`Generator.multiple` (``tensors.pad_to_multiple``), run on the
    generator's device without gradients, cropped back and composited with
    ``tensors.composite``. ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs the forward under
    ``torch.autocast`` on that device; the outputs are cast back to the input's dtype before
    compositing, so known pixels stay bit-exact in any precision. Offsets are requested only
    when ``return_offsets`` is set (a baseline model without attention returns ``None``).
    ``blend="poisson"`` blends the refined prediction into the holes instead of pasting it
    (:func:`inpaintkit.blend.poisson_blend`, on the CPU); ``"none"`` is the paper's output.

    ``hd_strategy`` (:mod:`inpaintkit.hd_strategy`; ``max_size`` is ``resize``'s limit):
    ``"original"``, the default here, runs the generator on the whole input as the paper
    does; ``"resize"``, ``"crop"`` and ``"auto"`` (what ``fill`` and ``serve`` default to)
    fill each sample as its mask asks, the refined and the coarse output alike. Offsets exist
    only for a whole image at its own size: ``return_offsets`` with a sample that is not
    filled ``original`` is a ValueError.
    """
    check_blend(blend)
    if hd_strategy != "original" or max_size is not None:
        return _inpaint_hd(
            generator, image, mask, return_offsets, autocast_dtype, blend, hd_strategy, max_size
        )
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (N, 3, H, W), got {tuple(image.shape)}")
    if mask.shape != (image.shape[0], 1, *image.shape[2:]):
        raise ValueError(
            f"mask must be (N, 1, H, W) matching image {tuple(image.shape)}, got {tuple(mask.shape)}"
        )
    if not image.is_floating_point():
        raise TypeError(f"image must be a float tensor in [-1, 1], got {image.dtype}")
    device = _device_of(generator)
    x = image.to(device=device, dtype=torch.float32)
    m = (mask.to(device) > 0.5).to(torch.float32)
    x, size = pad_to_multiple(x, generator.multiple)
    m, _ = pad_to_multiple(m, generator.multiple)
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with autocast:
        output = generator(x, m, return_offsets=return_offsets)

    def finish(prediction: torch.Tensor, blend: str = "none") -> torch.Tensor:
        prediction = crop_to(prediction, size).to(device=image.device, dtype=image.dtype)
        if blend == "poisson":
            return poisson_blend(image, prediction, mask)
        return composite(image, prediction, mask)

    offsets = None
    if output.offsets is not None:
        feature_size = (-(-size[0] // FEATURE_STRIDE), -(-size[1] // FEATURE_STRIDE))
        offsets = crop_to(output.offsets, feature_size).to(image.device)
    return InpaintResult(
        image=finish(output.refined, blend), coarse=finish(output.coarse), offsets=offsets
    )


def _inpaint_hd(
    generator: Generator,
    image: torch.Tensor,
    mask: torch.Tensor,
    return_offsets: bool,
    autocast_dtype: torch.dtype | None,
    blend: str,
    hd_strategy: str,
    max_size: int | None,
) -> InpaintResult:
    """:func:`inpaint` under an HD strategy: each sample planned from its own mask, filled alone."""
    if image.ndim != 4 or mask.shape != (image.shape[0], 1, *image.shape[2:]):
        raise ValueError(
            f"image (N, 3, H, W) and mask (N, 1, H, W) must match, got "
            f"{tuple(image.shape)} and {tuple(mask.shape)}"
        )

    def fill(x: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        result = inpaint(generator, x, m, False, autocast_dtype, blend)
        return [result.image, result.coarse]

    images, coarses, offsets = [], [], []
    for i in range(image.shape[0]):
        sample, hole = image[i : i + 1], mask[i : i + 1]
        plan = plan_image(hd_strategy, hole[0, 0].cpu().numpy() > 0.5, max_size)
        if plan.strategy == "original":
            result = inpaint(generator, sample, hole, return_offsets, autocast_dtype, blend)
            filled, coarse = result.image, result.coarse
            offsets.append(result.offsets)
        else:
            if return_offsets:
                raise ValueError(
                    f"attention offsets need a sample filled whole at its own size; sample {i} "
                    f"is filled by {plan.strategy} (pass hd_strategy='original')"
                )
            whole = [Box(0, 0, *sample.shape[-2:])]
            boxes, sides = (
                (plan.boxes, plan.sides) if plan.strategy == "crop" else (whole, [plan.limit])
            )
            filled, coarse = fill_boxes(fill, sample, hole, boxes, sides)
        images.append(filled)
        coarses.append(coarse)
    return InpaintResult(
        image=torch.cat(images),
        coarse=torch.cat(coarses),
        offsets=torch.cat(offsets) if return_offsets and None not in offsets else None,
    )
