"""Inpainting methods behind one interface, shared by ``fill`` and ``evaluate``.

Every method is a callable object with a ``name``::

    method(images (N, 3, H, W) in [-1, 1], masks (N, 1, H, W) in {0, 1}, 1 = hole)
        -> (N, 3, H, W) in [-1, 1], composited: known pixels are the input's, bit for bit.

Outputs are on the device of ``images``. Methods run without gradients.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from skimage.restoration import inpaint_biharmonic

from inpaintkit.blend import DEFAULT_BLEND, check_blend
from inpaintkit.checkpoint import load_generator, resolve_checkpoint
from inpaintkit.devices import has_native_bf16, resolve_device
from inpaintkit.inpaint import inpaint
from inpaintkit.patchmatch import patchmatch_inpaint
from inpaintkit.patchmatch.inpaint import Vote
from inpaintkit.tensors import composite, image_to_tensor, tensor_to_image

#: Autocast precisions accepted by :class:`DeepFillMethod` ("auto": see :func:`default_precision`).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_CHOICES = ("auto", *PRECISIONS)


def default_precision(device: torch.device) -> str:
    """``"bf16"`` where the device computes bf16 natively, else ``"fp32"``.

    bf16 autocast moved the default model's hole PSNR on the evaluation sets by less than
    0.1 dB while making the CPU forward faster (docs/benchmarks.md, "fill precision");
    emulated bf16 (a CPU without AVX512-BF16/AMX) is slower than fp32, so it stays fp32 there.
    """
    return "bf16" if has_native_bf16(device) else "fp32"


def default_channels_last(device: torch.device, precision: str) -> bool:
    """Whether the generator runs in channels_last by default.

    On a CPU it paid in fp32 (512² forward 1.52 -> 1.28 s) but not under bf16 autocast
    (0.90 -> 0.97 s; docs/benchmarks.md, "fill precision"). On CUDA it is what cuDNN's
    tensor-core convolutions want (not yet measured here).
    """
    return device.type == "cuda" or precision == "fp32"


class InpaintMethod(Protocol):
    """What ``fill`` and ``evaluate`` call: see the module docstring."""

    name: str

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class AttentionMethod(InpaintMethod, Protocol):
    """A method that can also say where it attended: what ``fill --attention`` draws.

    ``fill_with_offsets(images, masks)`` returns ``(filled, offsets)``: ``filled`` as the
    method's call returns it and ``offsets (N, 2, h, w)`` long, (dy, dx) in attention-feature
    pixels (as :mod:`inpaintkit.model.visualize` expects), or None when the model has no
    attention. :class:`DeepFillMethod` is one; ``isinstance(method, AttentionMethod)`` tells.
    """

    def fill_with_offsets(
        self, images: torch.Tensor, masks: torch.Tensor, return_offsets: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def _check_inputs(images: torch.Tensor, masks: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if masks.shape != (images.shape[0], 1, *images.shape[2:]):
        raise ValueError(
            f"masks must be (N, 1, H, W) matching images {tuple(images.shape)}, got {tuple(masks.shape)}"
        )


class MeanColorMethod:
    """Baseline: every hole pixel gets the mean colour of its sample's known pixels.

    A sample with no known pixel at all is filled with mid-grey (0 in [-1, 1]).
    """

    name = "mean-color"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        _check_inputs(images, masks)
        known = 1.0 - masks
        count = known.sum(dim=(2, 3), keepdim=True)  # (N, 1, 1, 1)
        total = (images * known).sum(dim=(2, 3), keepdim=True)  # (N, 3, 1, 1)
        mean = torch.where(count > 0, total / count.clamp(min=1.0), torch.zeros_like(total))
        return composite(images, mean.expand_as(images), masks)


class BiharmonicMethod:
    """Baseline: scikit-image's biharmonic inpainting (smooth continuation of the boundary)."""

    name = "biharmonic"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        _check_inputs(images, masks)
        out = images.clone()
        for i in range(images.shape[0]):
            hole = masks[i, 0].cpu().numpy() > 0.5
            # Nothing to solve for; and with no known pixel the equations have no boundary.
            if not hole.any() or hole.all():
                continue
            image = images[i].permute(1, 2, 0).double().cpu().numpy()
            filled = inpaint_biharmonic(image, hole, channel_axis=-1)
            out[i] = torch.from_numpy(filled).permute(2, 0, 1).to(images)
        return composite(images, out.clamp(-1.0, 1.0), masks)


class PatchMatchMethod:
    """Baseline: PatchMatch (Barnes et al. 2009) as in :mod:`inpaintkit.patchmatch`, per sample.

    ``patch_size``, ``levels`` and ``vote``: :func:`~inpaintkit.patchmatch.patchmatch_inpaint`'s
    (``None``: its defaults). A call may pass ``guides (N, 3, H, W)`` in ``[-1, 1]``, first
    guesses for the holes that the coarsest level starts from (:mod:`inpaintkit.texture`).
    """

    name = "patchmatch"

    def __init__(
        self,
        patch_size: int | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        levels: int | None = None,
        vote: Vote | None = None,
    ) -> None:
        self.patch_size = patch_size  # None: patchmatch_inpaint's default
        self.seed = seed
        self.device = resolve_device(device)
        self.levels = levels
        self.vote = vote

    @torch.no_grad()
    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, guides: torch.Tensor | None = None
    ) -> torch.Tensor:
        _check_inputs(images, masks)
        options = {"seed": self.seed, "device": self.device, "levels": self.levels}
        if self.patch_size is not None:
            options["patch_size"] = self.patch_size
        if self.vote is not None:
            options["vote"] = self.vote
        return fill_each_sample(
            images,
            masks,
            lambda picture, hole, guide: patchmatch_inpaint(picture, hole, guide=guide, **options),
            guides,
        )


def fill_each_sample(
    images: torch.Tensor,
    masks: torch.Tensor,
    fill_one: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray],
    guides: torch.Tensor | None = None,
) -> torch.Tensor:
    """A numpy inpainter run image by image on the CPU, composited into ``images``.

    ``fill_one(picture uint8 (H, W, 3), hole bool (H, W), guide float (H, W, 3) in [0, 255]
    or None) -> uint8 (H, W, 3)`` is called for each image with a hole (the others pass
    through). ``guides (N, 3, H, W)`` in [-1, 1], first guesses for the holes, or None.
    Returns ``(N, 3, H, W)`` in [-1, 1] on ``images``' device.
    """
    pictures = tensor_to_image(images)  # (N, H, W, 3) uint8
    holes = masks[:, 0].cpu().numpy() > 0.5
    # Guides in float [0, 255]: rounding them to uint8 first would throw away a network's
    # sub-grey-level gradients (PatchMatch downsamples them; the transfer keeps their low-pass).
    guide_pixels = (
        [None] * len(pictures)
        if guides is None
        else ((guides.float().cpu() + 1.0) * 127.5).permute(0, 2, 3, 1).numpy()
    )
    filled = [
        fill_one(picture, hole, guide) if hole.any() else picture
        for picture, hole, guide in zip(pictures, holes, guide_pixels, strict=True)
    ]
    prediction = image_to_tensor(np.stack(filled)).to(images.device)
    return composite(images, prediction, masks)


class DeepFillMethod:
    """The paper's generator (coarse network, then refinement with contextual attention).

    ``checkpoint``: a safetensors file from ``inpaintkit train`` or the name of a bundled model
    (:func:`~inpaintkit.checkpoint.resolve_checkpoint`); ``None`` uses the default bundled
    model. A missing one raises ``CheckpointError``.
    ``precision``: ``"fp32"``, ``"bf16"``/``"fp16"`` autocast, or ``"auto"``
    (:func:`default_precision`). ``channels_last`` switches the memory format; ``None`` picks
    :func:`default_channels_last` (measured: docs/benchmarks.md, "fill precision"). Known pixels are composited
    back in float32, so they stay bit-exact in any precision. ``blend``: ``"poisson"`` (the
    default, :data:`inpaintkit.blend.DEFAULT_BLEND`) Poisson-blends the prediction into the holes, ``"none"``
    pastes it as the paper does (:mod:`inpaintkit.blend`; measured: docs/model.md, "Blending").
    """

    name = "deepfill"

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        channels_last: bool | None = None,
        blend: str = DEFAULT_BLEND,
    ) -> None:
        check_blend(blend)
        if precision not in PRECISION_CHOICES:
            raise ValueError(
                f"precision must be one of {list(PRECISION_CHOICES)}, got {precision!r}"
            )
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.device = resolve_device(device)
        self.precision = default_precision(self.device) if precision == "auto" else precision
        if channels_last is None:
            channels_last = default_channels_last(self.device, self.precision)
        self.channels_last = channels_last
        self.blend = blend
        self.generator = load_generator(self.checkpoint, device=str(self.device)).eval()
        if channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def fill_with_offsets(
        self, images: torch.Tensor, masks: torch.Tensor, return_offsets: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fill and also return the contextual-attention offsets.

        Returns ``(filled (N, 3, H, W) in [-1, 1], offsets (N, 2, h, w) long or None)``;
        offsets are (dy, dx) in attention-feature pixels, as ``model.visualize`` expects.
        """
        _check_inputs(images, masks)
        x = images.to(self.device, non_blocking=True)
        m = masks.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            m = m.contiguous(memory_format=torch.channels_last)
        result = inpaint(
            self.generator,
            x,
            m,
            return_offsets=return_offsets,
            autocast_dtype=PRECISIONS[self.precision],
            blend=self.blend,
        )
        # inpaint() composited on the device already; doing it again against the caller's own
        # tensor keeps known pixels bit-exact whatever the transfer did.
        prediction = result.image.to(images.device)
        offsets = None if result.offsets is None else result.offsets.to(images.device)
        return composite(images, prediction, masks), offsets

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.fill_with_offsets(images, masks, return_offsets=False)[0]

    def settings(self) -> dict[str, str]:
        """What changes this method's fills: ``evaluate`` never mixes results of different ones.

        The checkpoint by content, not path: retrained weights written over the same file
        are another method, a checkpoint moved elsewhere is not.
        """
        digest = hashlib.sha256(self.checkpoint.read_bytes()).hexdigest()
        return {"checkpoint_sha256": digest, "blend": self.blend}
