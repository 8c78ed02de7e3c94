"""inpaintkit: generative image inpainting with contextual attention (Yu et al., CVPR 2018).

Conventions used everywhere in the library (see docs/conventions.md):

* images are float tensors ``(N, 3, H, W)`` with values in ``[-1, 1]``;
* masks are float tensors ``(N, 1, H, W)`` with ``1 = hole`` (missing) and ``0 = known``.
"""

__version__ = "0.1.0"
