"""ONNX export of the whole generator, contextual attention included (``inpaintkit export``).

The exported graph is the generator's forward with one substitution: contextual attention runs
as :class:`WholeGridAttention`, the layer's maths over the whole matching grid written in
shape-polymorphic operations (unfold, batched products, constant pads and slices), instead of
:class:`~inpaintkit.model.attention.ContextualAttention`'s eager form. The eager form is built
for speed in PyTorch: it reads the hole's bounding box from the mask (a host synchronisation
and data-dependent shapes) and sums shifted slices in place with Python arithmetic on the
sizes. Neither exporter follows that: the TorchScript tracer fails on it
(``divmod(int, Tensor)``), and ``torch.export`` (the dynamo exporter) needs the window computed
over the whole grid, then spent 120-230 s on the 2-core machine resolving the symbolic sizes
of its ~400 slice operations for a 4-channel generator, and the ONNX file it gave was wrong
(docs/deploy.md, "Which exporter").

With ``attention_foreground="hole"`` the layer keeps the input features outside the hole and
its hole window is exact, so rebuilding the whole grid and compositing with the hole gives the
same features (tested against the eager layer: tests/test_export.py). The price is memory and
time that grow with the image's area squared instead of the hole's area times the image's:
measured in docs/benchmarks.md, "ONNX Runtime".

Graph: inputs ``image (N, 3, H, W)`` float32 in ``[-1, 1]`` and ``mask (N, 1, H, W)`` float32,
1 = hole; outputs ``prediction (N, 3, H, W)`` in ``[-1, 1]``, the refinement network's raw
(not composited) output, and ``coarse``, the first stage's. N, H and W are dynamic; H and W must be multiples of
:func:`input_multiple` (8) and at least :data:`MIN_SIDE` (72).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inpaintkit.checkpoint import load_generator, resolve_checkpoint
from inpaintkit.io import atomic_write
from inpaintkit.model.attention import (
    ContextualAttention,
    mask_at,
    paste_window,
    valid_background,
)
from inpaintkit.model.generator import Generator
from inpaintkit.tensors import composite

#: ONNX opset of the export: 20, the newest the TorchScript-based exporter writes (torch's
#: ``ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET``); onnxruntime runs it from 1.17 on.
OPSET = 20

#: Input and output names of the exported graph.
INPUT_NAMES = ("image", "mask")
OUTPUT_NAMES = ("prediction", "coarse")

#: The smallest H and W the graph computes like the PyTorch generator. The generator's
#: dilation-16 layer mirror-pads its H/4 x W/4 features by 16 pixels, which needs H/4 > 16;
#: smaller inputs take the eager code's edge-repeating fallback, a branch that tracing cannot
#: keep beside the other (docs/deploy.md). 72 is the first multiple of 8 above 64.
MIN_SIDE = 72

#: Written into the model's metadata (``metadata_props``): how to call it without inpaintkit.
CONVENTION = {
    "image": "float32 (N, 3, H, W) RGB in [-1, 1]: uint8 v -> v / 127.5 - 1",
    "mask": "float32 (N, 1, H, W) in {{0, 1}}: 1 = hole (unknown), 0 = known",
    "prediction": "float32 (N, 3, H, W) in [-1, 1], raw: composite it into the holes yourself",
    "coarse": "float32 (N, 3, H, W) in [-1, 1]: the first stage's raw output",
    "size": "H and W multiples of {multiple}, at least {min_side}; pad the bottom and right edges "
    "by mirroring and crop the prediction back",
}

# Released code: ``tf.maximum(norm, 1e-4)`` (as model/attention.py).
_NORM_EPS = 1e-4


class ExportError(ValueError):
    """The model cannot be exported; the message names the file and why."""


def input_multiple(generator: Generator) -> int:
    """The multiple H and W must have: the generator's 8, and whole blocks of attention's rate.

    The attention features are H/4 x W/4; :class:`WholeGridAttention` pads and crops them by
    constant amounts, which needs them to split into ``rate x rate`` blocks exactly.
    """
    rate = generator.config.attention_rate if generator.config.contextual_attention else 1
    return math.lcm(Generator.multiple, 4 * rate)


class WholeGridAttention(nn.Module):
    """:class:`ContextualAttention`'s forward over the whole grid, for export (§4.1).

    Same arguments and result as the wrapped layer's ``forward`` without offsets:
    ``foreground, background (N, C, H, W)`` float32 features, ``mask (N, 1, h, w)``, 1 = hole
    -> ``(N, C, H, W)``; H and W multiples of ``rate``. Every foreground position is scored
    against every background patch, as the released code did::

        scores     = <k x k foreground patch, k x k background patch / max(|.|, eps)>   (unfold, bmm)
        scores     = propagate(scores)        (left-right, then top-down; shifted slices)
        attention  = softmax(lambda * scores * valid) * valid
        out        = paste of raw 2r x 2r background patches, stride r, overlaps averaged

    All sizes are read from tensors and all pads and slices are by constants, so the traced
    graph holds for every input size.
    """

    def __init__(self, layer: ContextualAttention) -> None:
        super().__init__()
        self.patch_size = layer.patch_size
        self.propagate_size = layer.propagate_size if layer.fuse else 1
        self.softmax_scale = layer.softmax_scale
        self.rate = layer.rate
        self.stride = layer.stride
        self.foreground = layer.foreground
        axis_weights = paste_window(layer.rate, layer.paste)
        # (2, r, 2, r) weights of a patch's pixels as _paste splits them, or None (the box).
        window = None
        if axis_weights is not None:
            window = torch.outer(axis_weights, axis_weights).float().view(2, layer.rate, 2, -1)
        self.register_buffer("paste_weights", window, persistent=False)

    def forward(
        self,
        foreground: torch.Tensor,
        background: torch.Tensor,
        mask: torch.Tensor,
        return_offsets: bool = False,
    ) -> torch.Tensor:
        if return_offsets:
            raise ValueError("the export form of contextual attention computes no offsets")
        n, _, height, width = foreground.shape
        r, s, k = self.rate, self.stride, self.patch_size
        hole = mask_at(mask, n, height, width)
        fg_small = foreground[:, :, ::r, ::r]
        bg_small = background[:, :, ::r, ::r]
        fg_patches = F.unfold(fg_small, k, padding=k // 2)  # (N, C·k², Lf)
        bg_patches = F.unfold(bg_small, k, padding=k // 2, stride=s)  # (N, C·k², Lb)
        norms = bg_patches.square().sum(dim=1, keepdim=True).clamp_min(_NORM_EPS**2).sqrt()
        scores = torch.bmm(fg_patches.transpose(1, 2), bg_patches) / norms  # (N, Lf, Lb)
        if self.propagate_size > 1:
            bg_grid = bg_small[:, :1, ::s, ::s]  # only its (hb, wb) shape is read
            scores = self.propagate(scores, fg_small.shape[-2:], bg_grid.shape[-2:])
        valid = valid_background(hole, r, k, s)  # (N, 1, Lb)
        attention = torch.softmax(scores * (valid * self.softmax_scale), dim=2) * valid
        out = self.reconstruct(attention, background, fg_small.shape[-2:])
        return composite(foreground, out, hole) if self.foreground == "hole" else out

    def propagate(
        self, scores: torch.Tensor, fg_size: torch.Size, bg_size: torch.Size
    ) -> torch.Tensor:
        """Attention propagation as :func:`~inpaintkit.model.attention.propagate`.

        Left-right sums the score image's diagonals over row-major indices, top-down the same
        over column-major ones (both grids transposed), wrapping between rows (columns) as
        released.
        """
        n, lf, lb = scores.shape
        (hf, wf), (hb, wb) = fg_size, bg_size
        scores = _diagonal_sum(scores, self.propagate_size)
        columns = scores.view(n, hf, wf, hb, wb).transpose(1, 2).transpose(3, 4)
        columns = _diagonal_sum(columns.reshape(n, lf, lb), self.propagate_size)
        return columns.view(n, wf, hf, wb, hb).transpose(1, 2).transpose(3, 4).reshape(n, lf, lb)

    def reconstruct(
        self, attention: torch.Tensor, background: torch.Tensor, fg_size: torch.Size
    ) -> torch.Tensor:
        """Paste raw background patches as :func:`~inpaintkit.model.attention.reconstruct`.

        ``attention (N, Lf, Lb)`` -> ``(N, C, H, W)``. Background patch ``q`` is the
        ``2r x 2r`` window starting ``lead = r // 2`` pixels before its block (edge pixels
        replicated); it is pasted at the same place around each foreground block, and each
        pixel divided by the number of patches covering it (or, with the tent, each patch's
        pixels weighted and each pixel divided by the weights covering it).
        """
        r, lead = self.rate, self.rate // 2
        n, c = background.shape[:2]
        padded = F.pad(background, (lead, r - lead, lead, r - lead), mode="replicate")
        raw = F.unfold(padded, 2 * r, stride=r * self.stride)  # (N, C·(2r)², Lb)
        columns = torch.bmm(raw, attention.transpose(1, 2))  # (N, C·(2r)², Lf)
        patches = columns.view(n, c, 2, r, 2, r, *fg_size)
        ones = columns.new_ones(1, 1, 2, r, 2, r, *fg_size)
        if self.paste_weights is not None:
            weights = self.paste_weights.to(columns.dtype)[:, :, :, :, None, None]
            patches, ones = patches * weights, ones * weights
        canvas = _paste(patches, r)
        coverage = _paste(ones, r)
        out = canvas / coverage  # canvas pixel t is image pixel t - lead
        return out[:, :, lead : lead - r, lead : lead - r]


def _diagonal_sum(scores: torch.Tensor, kernel: int) -> torch.Tensor:
    """``out[n, i, j] = sum over |d| <= kernel // 2 of scores[n, i + d, j + d]``, zeros beyond.

    The released code's convolution of the ``(Lf, Lb)`` score image with a ``kernel x kernel``
    identity matrix, as slices of one zero-padded copy (a one-channel convolution of a
    multi-megapixel image would unfold it ``kernel²`` times).
    """
    p = kernel // 2
    padded = F.pad(scores, (p, p, p, p))
    out = None
    for d in range(-p, p + 1):
        start, end = p + d, d - p  # end < 0 counts from the end, 0 means "to the end"
        term = padded[:, start : end or None, start : end or None]
        out = term if out is None else out + term
    return out


def _paste(patches: torch.Tensor, rate: int) -> torch.Tensor:
    """Overlap-add ``2r x 2r`` patches at stride r: ``(N, C, 2, r, 2, r, h, w)`` -> ``(N, C, r(h+1), r(w+1))``.

    Patch ``(y, x)``'s quarter ``(a, b)`` lands on block ``(y + a, x + b)`` of the canvas, so
    each quarter is a pixel shuffle of the patches shifted by whole blocks (``F.fold`` with
    kernel 2r and stride r, without its output-size argument, which would freeze the size).
    """
    n, c, _, r, _, _, h, w = patches.shape
    canvas = None
    for a in (0, 1):
        for b in (0, 1):
            quarter = patches[:, :, a, :, b]  # (N, C, r, r, h, w)
            blocks = quarter.permute(0, 1, 4, 2, 5, 3).reshape(n, c, h * r, w * r)
            shifted = F.pad(blocks, (b * r, (1 - b) * r, a * r, (1 - a) * r))
            canvas = shifted if canvas is None else canvas + shifted
    return canvas


class PredictionGraph(nn.Module):
    """What is exported: ``(image, mask) -> (prediction, coarse)``, attention as :class:`WholeGridAttention`.

    A copy of ``generator``; the original is unchanged.
    """

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = copy.deepcopy(generator).eval()
        branch = self.generator.refine.attention
        if branch is not None:
            branch.attention = WholeGridAttention(branch.attention)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.generator(image, mask)
        return output.refined, output.coarse


@dataclass
class ExportSummary:
    """What :func:`export_onnx` wrote: the file, its size, the checkpoint's digest, the multiple."""

    path: Path
    size_bytes: int
    checkpoint_sha256: str
    multiple: int

    def __str__(self) -> str:
        return (
            f"Wrote {self.path} ({self.size_bytes / 1e6:.1f} MB, opset {OPSET}); inputs "
            f"H and W: multiples of {self.multiple}, at least {MIN_SIDE}"
        )


def model_metadata(generator: Generator, checkpoint_sha256: str) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (all strings)."""
    multiple = input_multiple(generator)
    convention = {
        key: text.format(multiple=multiple, min_side=MIN_SIDE) for key, text in CONVENTION.items()
    }
    return {
        "producer": "inpaintkit export",
        "checkpoint_sha256": checkpoint_sha256,
        "generator_config": json.dumps(generator.config.__dict__, sort_keys=True),
        "inputs": ",".join(INPUT_NAMES),
        "outputs": ",".join(OUTPUT_NAMES),
        "multiple": str(multiple),
        "min_side": str(MIN_SIDE),
        **{f"convention.{key}": text for key, text in convention.items()},
    }


def export_onnx(
    output: str | os.PathLike, checkpoint: str | os.PathLike | None = None
) -> ExportSummary:
    """Export the generator of ``checkpoint`` (a file, a bundled model's name, or None: the
    default bundled model) to ``output``.

    Written atomically; the file is checked with ``onnx.checker`` before it is renamed into
    place. Raises :class:`ExportError` (onnx missing) or
    :class:`~inpaintkit.checkpoint.CheckpointError` (the checkpoint).
    """
    onnx = import_onnx()
    checkpoint = resolve_checkpoint(checkpoint)
    generator = load_generator(checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    multiple = input_multiple(generator)
    # The traced sizes must take the branches every input of MIN_SIDE or more takes; batch 2
    # so that nothing can fold the batch size into a constant.
    side = max(MIN_SIDE, multiple) + multiple
    image = torch.zeros(2, 3, side, side)
    mask = torch.zeros(2, 1, side, side)
    mask[:, :, side // 4 : side // 2, side // 4 : side // 2] = 1.0
    axes = {0: "batch", 2: "height", 3: "width"}
    with atomic_write(output) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The tracer warns at each Python branch on a size it freezes: the generator's input
        # checks, the mirror padding's mode (reflect from MIN_SIDE on), the attention mask's
        # resize (always, the features being smaller than the mask); all the same for every
        # input the graph accepts. And constant folding skips the strided slices, as it should.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding", UserWarning)
        # The TorchScript-based exporter: it exports the whole graph with dynamic sizes in
        # seconds; the dynamo exporter's size reasoning takes minutes (docs/deploy.md).
        torch.onnx.export(
            PredictionGraph(generator),
            (image, mask),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: axes for name in (*INPUT_NAMES, *OUTPUT_NAMES)},
        )
        model = onnx.load(str(tmp))
        onnx.helper.set_model_props(model, model_metadata(generator, digest))
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(tmp))
        size = Path(tmp).stat().st_size
    return ExportSummary(Path(output), size, digest, multiple)


def import_onnx():
    """The ``onnx`` package, or :class:`ExportError` saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ExportError(
            "exporting needs the onnx package: pip install 'inpaintkit[onnx]'"
        ) from None
    return onnx
