"""A memory budget: what a job will hold, estimated from its size before any pixel is decoded.

Pillow's decompression-bomb limit counts pixels, not bytes, and a 20 KB 1-bit PNG of
13000 x 13000 passes it; filling it at full size with PatchMatch needs tens of gigabytes.
So ``fill`` and ``serve`` estimate a job's peak memory from the image header (its size) and
the method, and refuse a job over the budget with one line that names the size, the estimate
and the option that lets it run (a working size, or a higher budget).

The budget defaults to a share of the memory available when the command starts
(``MemAvailable`` in ``/proc/meminfo``), and is overridden by ``--memory-budget`` or the
``INPAINTKIT_MEMORY_BUDGET`` environment variable (``8G``, ``512M``, bytes). The per-pixel
costs below were measured (peak RSS over the process's RSS before the call; docs/reliability.md,
"Memory"); the estimates round them up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

#: Environment variable overriding the default budget (``--memory-budget`` overrides it).
BUDGET_ENV = "INPAINTKIT_MEMORY_BUDGET"
#: Share of the available memory a command plans to use by default: the rest is the headroom
#: for the process itself (Python, torch, the model) and for everything else on the machine.
DEFAULT_SHARE = 0.5
#: Used when the available memory cannot be read (not Linux, no /proc).
FALLBACK_BUDGET = 4 * 1024**3

#: Peak bytes per pixel of the image at full size: the decoded image, its RGB copy, the mask,
#: the hole, the pasted result and its encoding (``fill`` with a working size; measured 18-21).
FULL_SIZE_BYTES_PER_PIXEL = 24
#: Peak bytes per pixel of decoding one image file to uint8 RGB (Pillow's 4-byte pixels, the
#: converted copy, the array) or a mask file to bool.
DECODE_BYTES_PER_PIXEL = 12
#: Peak bytes per working pixel that each method adds while it runs (CPU; measured on noise
#: images with a small hole: mean-color 56, PatchMatch 121-169, DeepFill ~1,000; the texture
#: transfer 143-150, its float copies of the photo, structure, detail and descriptions).
METHOD_BYTES_PER_PIXEL: dict[str, int] = {
    "mean-color": 64,
    "biharmonic": 64,
    "patchmatch": 192,
    "transfer": 192,
    "deepfill": 1280,
    "deepfill-onnx": 1280,
}
#: Peak bytes per *squared* working pixel, for a method whose memory grows with the area
#: squared: the ONNX model's contextual attention scores every position against every patch
#: over the whole grid (inpaintkit/export.py). Measured peak RSS 1.22 GiB at 512², 11.9 GiB at
#: 1024² (docs/benchmarks.md, "ONNX Runtime against PyTorch"); 0.0105 fits 1024² after the
#: linear part.
METHOD_BYTES_PER_SQUARED_PIXEL: dict[str, float] = {"deepfill-onnx": 0.0105}
#: For a method not listed above: the largest cost listed.
UNKNOWN_METHOD_BYTES_PER_PIXEL = max(METHOD_BYTES_PER_PIXEL.values())
#: Host bytes per working pixel of a method running on a GPU: its float input and output
#: copies (measured 56 for mean colour, which is nothing else). Its activations live in GPU
#: memory, which this budget does not cover.
GPU_HOST_BYTES_PER_PIXEL = 64

_SIZE = re.compile(r"([0-9]{1,15})(\.[0-9]{1,6})?\s*([KMGT]?)(I?B?)", re.IGNORECASE)


class MemoryBudgetError(ValueError):
    """A job would need more memory than the budget allows (or a budget cannot be parsed)."""


def parse_bytes(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5GiB"``, ``"300000000"`` -> bytes (powers of 1024; ASCII digits)."""
    found = _SIZE.fullmatch(str(text).strip())
    if found is None:
        raise MemoryBudgetError(
            f"expected a size such as 8G, 512M or a number of bytes, got {text!r}"
        )
    whole, fraction, unit, _ = found.groups()
    scale = 1024 ** " KMGT".index(unit.upper() or " ")
    value = int(float(whole + (fraction or "")) * scale)
    if value <= 0:
        raise MemoryBudgetError(f"a memory budget must be positive, got {text!r}")
    return value


def available_memory() -> int | None:
    """Bytes of memory available to new work now (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def default_budget(environ: Mapping[str, str] = os.environ) -> int:
    """The budget when none is given: ``INPAINTKIT_MEMORY_BUDGET``, else a share of what is available."""
    if environ.get(BUDGET_ENV):
        try:
            return parse_bytes(environ[BUDGET_ENV])
        except MemoryBudgetError as err:
            raise MemoryBudgetError(f"{BUDGET_ENV}: {err}") from None
    available = available_memory()
    return FALLBACK_BUDGET if available is None else int(available * DEFAULT_SHARE)


def format_bytes(count: float) -> str:
    """``1.2 GB``, ``340 MB`` (decimal units, as people read sizes)."""
    if count >= 1e9:
        return f"{count / 1e9:.1f} GB"
    return f"{count / 1e6:.0f} MB"


def method_bytes_per_pixel(method: str, device: str = "cpu") -> int:
    """Host bytes per working pixel that ``method`` adds while it runs on ``device``."""
    if not str(device).startswith("cpu"):
        return GPU_HOST_BYTES_PER_PIXEL
    # A chain such as "deepfill+patchmatch" (fill --texture) runs its parts one after another:
    # its peak is its largest part's.
    return max(
        METHOD_BYTES_PER_PIXEL.get(part, UNKNOWN_METHOD_BYTES_PER_PIXEL)
        for part in method.split("+")
    )


def method_bytes_per_squared_pixel(method: str, device: str = "cpu") -> float:
    """Host bytes per squared working pixel that ``method`` adds on ``device`` (0: linear)."""
    if not str(device).startswith("cpu"):
        return 0.0
    return max(METHOD_BYTES_PER_SQUARED_PIXEL.get(part, 0.0) for part in method.split("+"))


def fill_need(
    size: tuple[int, int], work_size: tuple[int, int], method: str, device: str = "cpu"
) -> int:
    """Estimated peak host bytes of filling one ``(H, W)`` image at working size ``(h, w)``."""
    per_pixel = method_bytes_per_pixel(method, device)
    pixels = work_size[0] * work_size[1]
    squared = method_bytes_per_squared_pixel(method, device)
    return int(
        FULL_SIZE_BYTES_PER_PIXEL * size[0] * size[1] + per_pixel * pixels + squared * pixels**2
    )


def largest_working_side(
    size: tuple[int, int], method: str, budget: int, device: str = "cpu"
) -> int | None:
    """The largest longer side of a working size whose fill fits ``budget`` (None: none fits)."""
    per_pixel = method_bytes_per_pixel(method, device)
    left = budget - FULL_SIZE_BYTES_PER_PIXEL * size[0] * size[1]
    if left <= 0:
        return None
    aspect = min(size) / max(size)  # working pixels = side * side * aspect
    squared = method_bytes_per_squared_pixel(method, device)
    # The working pixels p that fit: per_pixel * p + squared * p**2 = left.
    pixels = (
        ((per_pixel**2 + 4 * squared * left) ** 0.5 - per_pixel) / (2 * squared)
        if squared
        else left / per_pixel
    )
    side = int((pixels / aspect) ** 0.5)
    return None if side < 8 else min(side, max(size))


def check_fill(
    size: tuple[int, int],
    work_size: tuple[int, int],
    method: str,
    budget: int,
    size_option: str = "--max-size",
    budget_option: str = "--memory-budget",
    device: str = "cpu",
) -> None:
    """Raise :class:`MemoryBudgetError` (one line) if this fill's estimate passes ``budget``.

    The line names the size, the estimate and the budget, the working size that would fit
    (``size_option``) and ``budget_option``, so that the user can choose.
    """
    need = fill_need(size, work_size, method, device)
    if need <= budget:
        return
    height, width = size
    fits = largest_working_side(size, method, budget, device)
    remedy = (
        f"pass {size_option} {fits // 8 * 8} (a working size) or "
        if fits is not None and fits < max(work_size)
        else ""
    )
    raise MemoryBudgetError(
        f"{width}x{height} image: filling it with {method}"
        + (f" at {work_size[1]}x{work_size[0]}" if work_size != size else "")
        + f" needs about {format_bytes(need)}, over the {format_bytes(budget)} memory budget; "
        f"{remedy}raise the budget ({budget_option} SIZE or {BUDGET_ENV})"
    )
