"""The network's structure, the photo's texture: PatchMatch started from a DeepFill fill.

The reconstruction-trained generator predicts the mean of what could be behind a hole: the
right layout and colours, but no texture (hole TV a quarter of the photo's, docs/model-card.md).
PatchMatch has texture, copied from the known region, but no idea of the layout: from its
onion-peel start it continues whatever borders the hole. Started from the network's fill
instead, at a coarse level of its pyramid, PatchMatch's EM steps replace each hole patch of the
fill by the most similar known patch, so the layout stays the network's and every filled
pixel comes from the photo (the finest level copies, it does not average: ``vote="best"``).

This is issue #25's second route (docs/model.md, "Texture from the photo"), measured on the
evaluation sets the way the adversarial phase is. :class:`TextureTransferMethod` is its sharper
variant: patches matched on the fill's low-pass, the fill's low-pass kept and the photo's detail
added (:mod:`inpaintkit.patchmatch.transfer`, docs/model.md, "Texture transfer").
"""

from __future__ import annotations

import torch

from inpaintkit.methods import InpaintMethod, PatchMatchMethod, _check_inputs, fill_each_sample
from inpaintkit.patchmatch.inpaint import Vote
from inpaintkit.patchmatch.transfer import (
    DEFAULT_COHERENCE,
    DEFAULT_SIGMA,
    DEFAULT_TRANSFER_PATCH_SIZE,
    texture_transfer,
)

#: Texture sources of ``fill --texture``: the network's own output, PatchMatch guided by it, or
#: the network's low-pass plus detail copied from the photo.
TEXTURE_CHOICES = ("network", "patchmatch", "transfer")
#: Pyramid levels PatchMatch runs from the network's fill: the fill enters at 1 / 2^(L-1) of the
#: working size (128² for a 256² image). Fewer levels keep more of the network (higher PSNR,
#: less texture). 2 is the deepest that stays within issue #25's 0.5 dB of the network's hole
#: PSNR on both evaluation sets (3 costs 0.74 dB on free256; benchmarks/texture_route.py,
#: docs/model.md, "Texture from the photo").
GUIDED_LEVELS = 2


class _GuidedMethod:
    """A network's fill, then a method that replaces its texture (``refine``, on the CPU).

    ``refine(images, masks, guides)`` gets the network's fills as ``guides (N, 3, H, W)`` in
    [-1, 1] and returns the final images; ``_settings()`` says what ``evaluate`` records beside
    the network's own settings. Subclasses define both.
    """

    def __init__(self, network: InpaintMethod, texture: str) -> None:
        self.network = network
        # "deepfill+patchmatch": the memory budget (inpaintkit/memory.py) costs the chain by its
        # parts, so an ONNX network keeps its quadratic term.
        self.name = f"{network.name}+{texture}"
        self.texture = texture
        # Where the network runs (fill sizes its batches by it); the refinement runs on the CPU.
        self.device = getattr(network, "device", torch.device("cpu"))

    def refine(
        self, images: torch.Tensor, masks: torch.Tensor, guides: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def _settings(self) -> dict[str, str]:
        raise NotImplementedError

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
        return self.refine(images, masks, guides), offsets

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.fill_with_offsets(images, masks, return_offsets=False)[0]

    def settings(self) -> dict[str, str]:
        """The network's settings plus this method's: ``evaluate`` never mixes results."""
        network = getattr(self.network, "settings", dict)
        return {
            **network(),
            "network": self.network.name,
            "texture": self.texture,
            **self._settings(),
        }


class GuidedPatchMatchMethod(_GuidedMethod):
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
        super().__init__(network, "patchmatch")
        # On the CPU (numba) whatever the network's device, as before.
        self.patchmatch = PatchMatchMethod(patch_size, seed, "cpu", levels=levels, vote=vote)

    def refine(
        self, images: torch.Tensor, masks: torch.Tensor, guides: torch.Tensor
    ) -> torch.Tensor:
        return self.patchmatch(images, masks, guides=guides)

    def _settings(self) -> dict[str, str]:
        patchmatch = self.patchmatch
        return {
            "levels": str(patchmatch.levels),
            "vote": str(patchmatch.vote),
            "patch_size": str(patchmatch.patch_size),
            "seed": str(patchmatch.seed),
        }


class TextureTransferMethod(_GuidedMethod):
    """DeepFill's fill with its detail replaced by the photo's (``fill --texture transfer``).

    Each hole keeps the network's (blended) fill below ``sigma`` px and takes the detail above
    it from known patches matched on that low-pass
    (:func:`~inpaintkit.patchmatch.transfer.texture_transfer`), per sample on the CPU (numba);
    deterministic for a given ``seed``. ``patch_size``: ``None`` for the module's default.
    """

    def __init__(
        self,
        network: InpaintMethod,
        sigma: float = DEFAULT_SIGMA,
        coherence: float = DEFAULT_COHERENCE,
        patch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(network, "transfer")
        self.sigma = sigma
        self.coherence = coherence
        self.patch_size = DEFAULT_TRANSFER_PATCH_SIZE if patch_size is None else patch_size
        self.seed = seed

    def refine(
        self, images: torch.Tensor, masks: torch.Tensor, guides: torch.Tensor
    ) -> torch.Tensor:
        def transfer(picture, hole, guide):
            return texture_transfer(
                picture,
                hole,
                guide,
                sigma=self.sigma,
                coherence=self.coherence,
                patch_size=self.patch_size,
                seed=self.seed,
            )

        return fill_each_sample(images, masks, transfer, guides)

    def _settings(self) -> dict[str, str]:
        return {
            "sigma": str(self.sigma),
            "coherence": str(self.coherence),
            "patch_size": str(self.patch_size),
            "seed": str(self.seed),
        }


def with_texture(
    network: InpaintMethod, texture: str, patch_size: int | None = None
) -> InpaintMethod:
    """``network`` as is (``"network"``), or with its texture replaced (TEXTURE_CHOICES)."""
    if texture == "network":
        return network
    if texture == "patchmatch":
        return GuidedPatchMatchMethod(network, patch_size=patch_size)
    if texture == "transfer":
        return TextureTransferMethod(network, patch_size=patch_size)
    raise ValueError(f"texture must be one of {list(TEXTURE_CHOICES)}, got {texture!r}")
