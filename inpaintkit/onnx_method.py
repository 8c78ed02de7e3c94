"""DeepFill in onnxruntime: an exported generator (:mod:`inpaintkit.export`) behind the method interface.

``fill --runtime onnxruntime --onnx model.onnx`` and :class:`OnnxMethod` in the library. Only the
network call changes: :class:`OnnxGenerator` stands where :func:`inpaintkit.inpaint.inpaint`
expects the PyTorch generator, so padding, cropping, compositing and Poisson blending are
inpaint()'s, and fill's pairing, HD strategy and atomic writes work on the method unchanged.
onnxruntime is an optional extra (``pip install 'inpaintkit[onnx]'``); torch is still imported
(docs/deploy.md says what filling without it would take).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inpaintkit.blend import DEFAULT_BLEND, check_blend
from inpaintkit.export import INPUT_NAMES, MIN_SIDE, OUTPUT_NAMES
from inpaintkit.inpaint import inpaint
from inpaintkit.model.generator import GeneratorOutput
from inpaintkit.tensors import composite

#: onnxruntime's graph optimisation levels by the names ``OnnxMethod(optimization=...)`` takes.
OPTIMIZATION_LEVELS = {
    "none": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class OnnxModelError(ValueError):
    """A file cannot be run as an exported generator; the message names the file and why."""


def import_onnxruntime():
    """The ``onnxruntime`` package, or :class:`OnnxModelError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise OnnxModelError(
            "--runtime onnxruntime needs the onnxruntime package: pip install 'inpaintkit[onnx]'"
        ) from None
    return onnxruntime


class OnnxGenerator(nn.Module):
    """An onnxruntime session with :class:`~inpaintkit.model.generator.Generator`'s call.

    ``forward(image (N, 3, H, W) in [-1, 1], mask (N, 1, H, W), return_offsets=False)
    -> GeneratorOutput(coarse, refined, None)`` on the CPU, H and W multiples of
    :attr:`multiple` (the model's metadata). Sides below :data:`~inpaintkit.export.MIN_SIDE`
    are edge-padded up to it and cropped back (the exported graph keeps only the branch of
    larger inputs). Has no parameters: :func:`~inpaintkit.inpaint.inpaint` runs it on the CPU.
    ``optimization``: a key of :data:`OPTIMIZATION_LEVELS`; ``threads``: onnxruntime's
    intra-op threads (None: its default, one per physical core).
    """

    def __init__(
        self, path: str | os.PathLike, optimization: str = "all", threads: int | None = None
    ) -> None:
        super().__init__()
        if optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(
                f"optimization must be one of {list(OPTIMIZATION_LEVELS)}, got {optimization!r}"
            )
        ort = import_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxModelError(f"{self.path}: no such ONNX model file")
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization]
        )
        if threads is not None:
            options.intra_op_num_threads = threads
        # The sharpened attention softmax underflows into subnormals, which slow CPU products
        # tens of times (model/attention.py's flush_subnormal_ does the same in PyTorch).
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        # That option also flushes subnormals on the thread that creates the session, for good:
        # the caller's own floats (Python's, numpy's, any library's) would lose them. One
        # thread of our own creates and runs the session, so the setting stays on it.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")
        try:
            self.session = self._thread.submit(
                ort.InferenceSession, str(self.path), options, providers=["CPUExecutionProvider"]
            ).result()
        except Exception as err:  # onnxruntime raises its own exception types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise OnnxModelError(f"{self.path}: not a loadable ONNX model ({first})") from None
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = tuple(o.name for o in self.session.get_outputs())
        metadata = self.session.get_modelmeta().custom_metadata_map
        if inputs != INPUT_NAMES or outputs != OUTPUT_NAMES or "multiple" not in metadata:
            raise OnnxModelError(
                f"{self.path}: not an `inpaintkit export` model (inputs {list(inputs)}, "
                f"outputs {list(outputs)})"
            )
        self.metadata = dict(metadata)
        self.multiple = int(metadata["multiple"])

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, return_offsets: bool = False
    ) -> GeneratorOutput:
        height, width = image.shape[-2:]
        if height % self.multiple or width % self.multiple:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of {self.multiple}; "
                "pad it first (tensors.pad_to_multiple) or use inpaintkit.inpaint.inpaint"
            )
        pad = (0, max(MIN_SIDE - width, 0), 0, max(MIN_SIDE - height, 0))
        feed = {
            "image": F.pad(image.float(), pad, mode="replicate").cpu().numpy(),
            "mask": F.pad(mask.float(), pad, mode="replicate").cpu().numpy(),
        }
        refined, coarse = (
            torch.from_numpy(np.ascontiguousarray(out[:, :, :height, :width]))
            for out in self._thread.submit(self.session.run, list(OUTPUT_NAMES), feed).result()
        )
        return GeneratorOutput(coarse=coarse, refined=refined, offsets=None)


class OnnxMethod:
    """DeepFill from an exported model, run by onnxruntime on the CPU (the method interface).

    ``model``: a file written by ``inpaintkit export``. ``blend`` as
    :class:`~inpaintkit.methods.DeepFillMethod`'s. Fills match ``DeepFillMethod(...,
    precision="fp32")`` on the same checkpoint to float rounding (tests/test_export.py); it
    computes no attention offsets, so it is not an ``AttentionMethod``.
    """

    name = "deepfill-onnx"

    def __init__(
        self,
        model: str | os.PathLike,
        blend: str = DEFAULT_BLEND,
        optimization: str = "all",
        threads: int | None = None,
    ) -> None:
        check_blend(blend)
        self.generator = OnnxGenerator(model, optimization, threads)
        self.model = self.generator.path
        self.blend = blend
        self.device = torch.device("cpu")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        result = inpaint(self.generator, images.cpu(), masks.cpu(), blend=self.blend)
        # As DeepFillMethod: composited against the caller's own tensor, on its device.
        return composite(images, result.image.to(images.device), masks)

    def settings(self) -> dict[str, str]:
        """What changes this method's fills (``evaluate`` keeps results of different ones apart)."""
        return {
            "checkpoint_sha256": self.generator.metadata.get("checkpoint_sha256", ""),
            "blend": self.blend,
            "runtime": "onnxruntime",
        }
