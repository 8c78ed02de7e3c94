"""What an evaluation leaves behind: the terminal table, metrics.json/.csv and the comparison sheet.

Per-image rows are plain dicts (one per image and method, as ``evaluate`` appends them to its
JSONL log)::

    {"image": key, "index": i, "method": name, "seconds": s, "tv_ground_truth": x,
     "l1": ..., "l2": ..., ...every key of metrics.METRICS}

In files, +inf is written as the string ``"inf"`` (JSON) / ``inf`` (CSV) and an undefined
value (NaN: a hole metric of an image without a hole) as ``null`` / an empty cell, so every
file is standard JSON/CSV. Everything is written through :func:`inpaintkit.io.atomic_write`;
the row writers stream, so memory does not grow with the number of images.
"""

from __future__ import annotations

import base64
import csv
import html
import io as _bytes_io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich import box
from rich.table import Table

from inpaintkit import __version__
from inpaintkit.io import atomic_write
from inpaintkit.metrics import HOLE_L1_NOTE, METRICS, MetricSpec, RunningStats

#: Height in pixels of the label band above the tiles of the comparison sheet PNG.
LABEL_HEIGHT = 16


def encode_value(value: float) -> float | str | None:
    """A float as stored in JSON: itself, ``"inf"``/``"-inf"``, or ``None`` for NaN."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def decode_value(value: float | str | None) -> float:
    """Inverse of :func:`encode_value`."""
    return math.nan if value is None else float(value)


@dataclass
class MethodSummary:
    """Running statistics of one method: every metric, seconds per image, ground-truth TV."""

    metrics: dict[str, RunningStats] = field(
        default_factory=lambda: {s.key: RunningStats() for s in METRICS}
    )
    seconds: RunningStats = field(default_factory=RunningStats)
    tv_ground_truth: RunningStats = field(default_factory=RunningStats)

    def add(self, row: dict) -> None:
        """Include one per-image row (values decoded or as stored)."""
        for key, stats in self.metrics.items():
            stats.add(decode_value(row[key]))
        self.seconds.add(decode_value(row["seconds"]))
        self.tv_ground_truth.add(decode_value(row["tv_ground_truth"]))

    def as_dict(self) -> dict:
        """JSON-ready: ``{metric: {mean, std, count, infinite, undefined}, "seconds_per_image": ...}``."""
        out = {key: _encoded(stats) for key, stats in self.metrics.items()}
        out["seconds_per_image"] = _encoded(self.seconds)
        out["tv_ground_truth"] = _encoded(self.tv_ground_truth)
        return out


def _encoded(stats: RunningStats) -> dict:
    return {k: encode_value(v) if isinstance(v, float) else v for k, v in stats.as_dict().items()}


def summarize(rows: Iterable[dict], methods: Sequence[str]) -> dict[str, MethodSummary]:
    """Stream ``rows`` into one :class:`MethodSummary` per name in ``methods`` (others ignored)."""
    summary = {name: MethodSummary() for name in methods}
    for row in rows:
        if row["method"] in summary:
            summary[row["method"]].add(row)
    return summary


def format_stats(stats: RunningStats, digits: int) -> str:
    """``"mean ±std"`` (a narrow terminal wraps the std below the mean), with ``(+k inf)`` when some values were infinite; ``"inf"``/``"—"`` if none finite."""
    if stats.count == 0:
        return "inf" if stats.infinite else "—"
    text = f"{stats.mean:.{digits}f} ±{stats.std:.{digits}f}"
    return f"{text} (+{stats.infinite} inf)" if stats.infinite else text


def _best(summary: dict[str, MethodSummary], spec: MetricSpec) -> str | None:
    """The method with the best mean for ``spec`` (None when there is no direction or no value)."""
    if spec.higher_is_better is None:
        return None
    candidates = [
        (s.metrics[spec.key].mean, name) for name, s in summary.items() if s.metrics[spec.key].count
    ]
    if len(candidates) < 2:
        return None
    pick = max if spec.higher_is_better else min
    return pick(candidates)[1]


def summary_table(summary: dict[str, MethodSummary], title: str = "Evaluation") -> Table:
    """A rich table shaped like the paper's Table 1: rows = methods, columns = metrics, s/image.

    Each cell is the mean over images with ``±std`` below it; the best mean of each column
    with a direction is green. The caption gives the image count and the ground truth's TV,
    the reference for the TV column.
    """
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1)
    )
    table.add_column("method", style="bold", no_wrap=True)
    for spec in METRICS:
        table.add_column(spec.label, justify="right")
    table.add_column("s/image", justify="right")
    best = {spec.key: _best(summary, spec) for spec in METRICS}
    for name, method in summary.items():
        cells = []
        for spec in METRICS:
            text = format_stats(method.metrics[spec.key], spec.digits).replace(" ±", "\n±")
            cells.append(f"[bold green]{text}[/]" if best[spec.key] == name else text)
        cells.append(format_stats(method.seconds, 3).replace(" ±", "\n±"))
        table.add_row(name, *cells)
    if summary:
        first = next(iter(summary.values()))
        table.caption = (
            f"{first.seconds.count} images. TV of the ground truth: "
            f"{format_stats(first.tv_ground_truth, 2)} % (lower TV is smoother, not better). "
            f"{HOLE_L1_NOTE}"
        )
        table.caption_justify = "left"
    return table


def write_metrics_json(
    path: str | Path,
    config: dict,
    summary: dict[str, MethodSummary],
    rows: Callable[[], Iterable[dict]],
) -> None:
    """Write ``{"inpaintkit", "config", "metrics", "summary", "images": [rows...]}`` to ``path``.

    ``rows`` is called once and its rows (already encoded as in the JSONL log) streamed out.
    """
    head = {
        "inpaintkit": __version__,
        "config": config,
        "metrics": [
            {"key": s.key, "label": s.label, "higher_is_better": s.higher_is_better}
            for s in METRICS
        ],
        "summary": {name: method.as_dict() for name, method in summary.items()},
    }
    opening = json.dumps(head, indent=1, ensure_ascii=False, allow_nan=False)[:-2]  # drop "\n}"
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        out.write(opening + ',\n "images": [')
        for i, row in enumerate(rows()):
            out.write(
                ("\n  " if i == 0 else ",\n  ")
                + json.dumps(row, ensure_ascii=False, allow_nan=False)
            )
        out.write("\n ]\n}\n")


def _csv_cell(value: float | str | None) -> str:
    value = decode_value(value)
    return "" if math.isnan(value) else repr(value)


CSV_FIXED_COLUMNS = ("row", "method", "image", "index", "seconds", "tv_ground_truth")


def write_metrics_csv(
    path: str | Path, summary: dict[str, MethodSummary], rows: Callable[[], Iterable[dict]]
) -> None:
    """Write one line per (image, method) (``row = image``), then ``mean`` and ``std`` lines per method."""
    keys = [s.key for s in METRICS]
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([*CSV_FIXED_COLUMNS, *keys])
        for row in rows():
            writer.writerow(
                [
                    "image",
                    row["method"],
                    row["image"],
                    row["index"],
                    _csv_cell(row["seconds"]),
                    _csv_cell(row["tv_ground_truth"]),
                    *(_csv_cell(row[k]) for k in keys),
                ]
            )
        for name, method in summary.items():
            for what in ("mean", "std"):

                def pick(stats: RunningStats, what: str = what) -> str:
                    return _csv_cell(getattr(stats, what))

                writer.writerow(
                    [
                        what,
                        name,
                        "",
                        "",
                        pick(method.seconds),
                        pick(method.tv_ground_truth),
                        *(pick(method.metrics[k]) for k in keys),
                    ]
                )


def masked_input(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The input as the figures show it: uint8 ``(H, W, 3)`` with hole pixels white."""
    return np.where(hole[..., None], np.uint8(255), image)


def comparison_sheet(tiles: Sequence[Sequence[np.ndarray]], labels: Sequence[str]) -> np.ndarray:
    """Grid of equal-size uint8 ``(S, S, 3)`` tiles under a band of column labels.

    ``tiles[r][c]`` is row ``r`` (a sample image), column ``c`` (input | methods... | ground
    truth). Returns uint8 ``(LABEL_HEIGHT + rows * S, columns * S, 3)``.
    """
    if not tiles or not labels:
        raise ValueError("a comparison sheet needs at least one row and one column")
    height, width = tiles[0][0].shape[:2]
    for row in tiles:
        if len(row) != len(labels) or any(tile.shape != (height, width, 3) for tile in row):
            raise ValueError(
                f"every sheet row needs {len(labels)} tiles of shape {(height, width, 3)}"
            )
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in tiles], axis=0)
    band = Image.new("RGB", (grid.shape[1], LABEL_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    font = ImageFont.load_default()
    for c, label in enumerate(labels):
        text = label
        # Shorten labels that would run into the next column.
        while text and draw.textlength(text, font=font) > width - 4:
            text = text[:-1]
        draw.text((c * width + 2, 2), text, fill=(0, 0, 0), font=font)
    return np.concatenate([np.asarray(band), grid], axis=0)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Save uint8 ``(H, W, 3)`` (or bool/uint8 ``(H, W)``) as PNG, atomically."""
    with atomic_write(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def _png_data_uri(image: np.ndarray) -> str:
    buffer = _bytes_io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def comparison_html(
    tiles: Sequence[Sequence[np.ndarray]],
    labels: Sequence[str],
    row_names: Sequence[str],
    summary: dict[str, MethodSummary],
    title: str = "inpaintkit evaluation",
) -> str:
    """A self-contained HTML page: the summary table, then the sheet with every tile inlined (base64 PNG)."""
    e = html.escape
    head = "".join(f"<th>{e(s.label)}</th>" for s in METRICS)
    summary_rows = "".join(
        "<tr><td>"
        + e(name)
        + "</td>"
        + "".join(f"<td>{e(format_stats(m.metrics[s.key], s.digits))}</td>" for s in METRICS)
        + f"<td>{e(format_stats(m.seconds, 3))}</td><td>{m.seconds.count}</td></tr>"
        for name, m in summary.items()
    )
    sheet_head = "<th>image</th>" + "".join(f"<th>{e(label)}</th>" for label in labels)
    sheet_rows = "".join(
        f"<tr><td>{e(name)}</td>"
        + "".join(
            f'<td><img src="{_png_data_uri(tile)}" alt="{e(label)}"></td>'
            for tile, label in zip(row, labels, strict=True)
        )
        + "</tr>"
        for name, row in zip(row_names, tiles, strict=True)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
td img {{ display: block; image-rendering: pixelated; }}
</style></head><body>
<h1>{e(title)}</h1>
<p>Mean ± standard deviation over images (docs/metrics.md). {e(HOLE_L1_NOTE)}</p>
<table><tr><th>method</th>{head}<th>s/image</th><th>images</th></tr>{summary_rows}</table>
<table><tr>{sheet_head}</tr>{sheet_rows}</table>
</body></html>
"""
