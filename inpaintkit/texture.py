"""The network's structure, the photo's texture: PatchMatch started from a DeepFill fill.

The reconstruction-trained generator predicts the mean of what could be behind a hole: the
right layout and colours, but no texture (hole TV a quarter of the photo's, docs/model-card.md).
PatchMatch has texture, copied from the known region, but no idea of the layout: from its
onion-peel start it continues whatever borders the hole. Started from the network's fill
instead, at a coarse level of its pyramid, PatchMatch's EM steps replace each hole patch of the
fill by the most similar known patch, so the layout stays the network's and every filled
pixel comes from the photo (the finest level copies, it does not average: ``vote="best"``).

This is issue #25's second route (docs/model.md, "Texture from the photo"), measured on the
evaluation sets the way the adversarial phase is.
"""

from __future__ import annotations

import numpy as np
import torch

from inpaintkit.methods import InpaintMethod, _check_inputs
from inpaintkit.patchmatch import patchmatch_inpaint
from inpaintkit.patchmatch.inpaint import Vote
from inpaintkit.tensors import composite, image_to_tensor, tensor_to_image

#: Texture sources of ``fill --texture``: the network's own output, or PatchMatch guided by it.
TEXTURE_CHOICES = ("network", "patchmatch")
#: Pyramid levels PatchMatch runs from the network's fill: the fill enters at 1 / 2^(L-1) of the
#: working size (128² for a 256² image). Fewer levels keep more of the network (higher PSNR,
#: less texture). 2 is the deepest that stays within issue #25's 0.5 dB of the network's hole
#: PSNR on both evaluation sets (3 costs 0.74 dB on free256; benchmarks/texture_route.py,
#: docs/model.md, "Texture from the photo").
GUIDED_LEVELS = 2


class GuidedPatchMatchMethod:
    """DeepFill's fill, then PatchMatch (patch copies from the known region) started from it.

    ``network``: the method whose fill guides: a :class:`~inpaintkit.methods.DeepFillMethod`
    (its blending applies to the guide) or any other :class:`InpaintMethod`. ``levels``:
    pyramid levels from the guide's entry to full size. ``vote``: the finest level's, ``"best"``
    copies a known pixel into each hole pixel, ``"weighted"`` averages the covering patches'
    proposals (smoother). ``patch_size``: PatchMatch's (``None``: its default). Per sample on the CPU (numba), like
    :class:`~inpaintkit.methods.PatchMatchMethod`; deterministic for a given ``seed``.
    """

    def __init__(
        self,
        network: InpaintMethod,
        levels: int = GUIDED_LEVELS,
        vote: Vote = "best",
        patch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.network = network
        # "deepfill+patchmatch": the memory budget (inpaintkit/memory.py) costs the chain by its
        # parts, so an ONNX network keeps its quadratic term.
        self.name = f"{network.name}+patchmatch"
        # Where the network runs (fill sizes its batches by it); PatchMatch runs on the CPU.
        self.device = getattr(network, "device", torch.device("cpu"))
        self.levels = levels
        self.vote = vote
        self.patch_size = patch_size
        self.seed = seed

    @torch.no_grad()
    def fill_with_offsets(
        self, images: torch.Tensor, masks: torch.Tensor, return_offsets: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(filled (N, 3, H, W) in [-1, 1], the network's attention offsets or None)``."""
        _check_inputs(images, masks)
        if return_offsets and hasattr(self.network, "fill_with_offsets"):
            guides, offsets = self.network.fill_with_offsets(images, masks)
        else:
            guides, offsets = self.network(images, masks), None
        options = {"seed": self.seed, "levels": self.levels, "vote": self.vote}
        if self.patch_size is not None:
            options["patch_size"] = self.patch_size
        pictures = tensor_to_image(images)  # (N, H, W, 3) uint8
        # The guide in float [0, 255]: rounding it to uint8 first would throw away the
        # network's sub-grey-level gradients before they are downsampled.
        guide_pixels = ((guides.float().cpu() + 1.0) * 127.5).permute(0, 2, 3, 1).numpy()
        holes = masks[:, 0].cpu().numpy() > 0.5
        filled = [
            patchmatch_inpaint(picture, hole, guide=guide, **options) if hole.any() else picture
            for picture, guide, hole in zip(pictures, guide_pixels, holes, strict=True)
        ]
        prediction = image_to_tensor(np.stack(filled)).to(images.device)
        return composite(images, prediction, masks), offsets

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.fill_with_offsets(images, masks, return_offsets=False)[0]

    def settings(self) -> dict[str, str]:
        """The network's settings plus this method's: ``evaluate`` never mixes results."""
        network = getattr(self.network, "settings", dict)
        return {
            **network(),
            "network": self.network.name,
            "texture": "patchmatch",
            "levels": str(self.levels),
            "vote": self.vote,
            "patch_size": str(self.patch_size),
            "seed": str(self.seed),
        }
