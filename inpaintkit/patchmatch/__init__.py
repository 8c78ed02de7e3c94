"""PatchMatch inpainting, the paper's baseline (Barnes et al. 2009; Wexler et al. 2007).

``patchmatch_inpaint(image, mask, ...)`` fills holes; ``nearest_neighbor_field(target, source,
...)`` exposes the PatchMatch search itself. See docs/patchmatch.md for the algorithm, the
CPU (numba) and CUDA (batched torch) formulations and their measurements.
"""

from inpaintkit.patchmatch.inpaint import (
    DEFAULT_ITERATIONS,
    DEFAULT_PATCH_SIZE,
    nearest_neighbor_field,
    patchmatch_inpaint,
)

__all__ = [
    "DEFAULT_ITERATIONS",
    "DEFAULT_PATCH_SIZE",
    "nearest_neighbor_field",
    "patchmatch_inpaint",
]
