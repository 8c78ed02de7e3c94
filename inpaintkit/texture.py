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

import torch

from inpaintkit.methods import InpaintMethod, PatchMatchMethod, _check_inputs
from inpaintkit.patchmatch.inpaint import Vote

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
    proposals (smoother). ``patch_size``: PatchMatch's (``None``: its default). The PatchMatch
    part is a :class:`~inpaintkit.methods.PatchMatchMethod` given the fills as guides, per
    sample on the CPU (numba); deterministic for a given ``seed``.
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
        # On the CPU (numba) whatever the network's device, as before.
        self.patchmatch = PatchMatchMethod(patch_size, seed, "cpu", levels=levels, vote=vote)
        # "deepfill+patchmatch": the memory budget (inpaintkit/memory.py) costs the chain by its
        # parts, so an ONNX network keeps its quadratic term.
        self.name = f"{network.name}+patchmatch"
        # Where the network runs (fill sizes its batches by it); PatchMatch runs on the CPU.
        self.device = getattr(network, "device", torch.device("cpu"))

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
        return self.patchmatch(images, masks, guides=guides), offsets

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.fill_with_offsets(images, masks, return_offsets=False)[0]

    def settings(self) -> dict[str, str]:
        """The network's settings plus this method's: ``evaluate`` never mixes results."""
        network = getattr(self.network, "settings", dict)
        patchmatch = self.patchmatch
        return {
            **network(),
            "network": self.network.name,
            "texture": "patchmatch",
            "levels": str(patchmatch.levels),
            "vote": str(patchmatch.vote),
            "patch_size": str(patchmatch.patch_size),
            "seed": str(patchmatch.seed),
        }
