"""Report files: JSON/CSV encoding, the summary, the terminal table and the comparison sheet."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from rich.console import Console

from inpaintkit.metrics import METRICS
from inpaintkit.report import (
    LABEL_HEIGHT,
    comparison_html,
    comparison_sheet,
    decode_value,
    encode_value,
    format_stats,
    masked_input,
    summarize,
    summary_table,
    write_metrics_csv,
    write_metrics_json,
)


def row(method: str, image: str, index: int, base: float) -> dict:
    out = {
        "image": image,
        "index": index,
        "method": method,
        "seconds": 0.5 + index,
        "tv_ground_truth": 10.0,
    }
    out.update({spec.key: base + index for spec in METRICS})
    return out


ROWS = [
    row("a", "x.png", 0, 1.0),
    row("b", "x.png", 0, 2.0),
    row("a", "y.png", 1, 1.0),
    row("b", "y.png", 1, 2.0),
]
ROWS[1]["psnr"] = "inf"  # b reproduced x exactly
ROWS[3]["hole_l1"] = None  # y had no hole


def test_encode_decode_round_trip() -> None:
    for value in (1.5, 0.0, math.inf, -math.inf):
        assert decode_value(encode_value(value)) == value
    assert encode_value(math.nan) is None and math.isnan(decode_value(None))


def test_summary_means_stds_and_counts() -> None:
    summary = summarize(ROWS, ["a", "b"])
    a, b = summary["a"], summary["b"]
    assert a.metrics["l1"].mean == pytest.approx(1.5) and a.metrics["l1"].std == pytest.approx(0.5)
    assert b.metrics["psnr"].mean == pytest.approx(3.0) and b.metrics["psnr"].infinite == 1
    assert b.metrics["hole_l1"].count == 1 and b.metrics["hole_l1"].undefined == 1
    assert a.seconds.mean == pytest.approx(1.0)
    assert list(summarize(ROWS, ["b"])) == ["b"]  # other methods ignored
    assert format_stats(b.metrics["psnr"], 2) == "3.00 ±0.00 (+1 inf)"


def test_json_and_csv_contents(tmp_path) -> None:
    summary = summarize(ROWS, ["a", "b"])
    write_metrics_json(tmp_path / "m.json", {"data": "d"}, summary, lambda: iter(ROWS))
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["config"] == {"data": "d"}
    assert data["images"] == ROWS
    assert data["summary"]["a"]["l2"]["mean"] == pytest.approx(1.5)
    assert data["summary"]["b"]["psnr"]["infinite"] == 1
    assert [m["key"] for m in data["metrics"]] == [s.key for s in METRICS]
    write_metrics_csv(tmp_path / "m.csv", summary, lambda: iter(ROWS))
    with open(tmp_path / "m.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert [line["row"] for line in lines] == ["image"] * 4 + ["mean", "std", "mean", "std"]
    assert lines[1]["psnr"] == "inf" and lines[3]["hole_l1"] == ""
    assert float(lines[4]["l1"]) == pytest.approx(1.5) and float(lines[5]["l1"]) == pytest.approx(
        0.5
    )
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_table_rows_and_best_marking() -> None:
    console = Console(width=200, record=True)
    console.print(summary_table(summarize(ROWS, ["a", "b"]), title="T"))
    text = console.export_text()
    assert "a" in text and "b" in text and "1.50" in text and "+1 inf" in text
    assert "MMagic" in text and "TV of the ground truth: 10.00" in text


def test_sheet_layout_and_html() -> None:
    rng = np.random.default_rng(0)
    tiles = [
        [rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(4)] for _ in range(3)
    ]
    labels = ["input", "m1", "m2 with a very long name", "ground truth"]
    sheet = comparison_sheet(tiles, labels)
    assert sheet.shape == (LABEL_HEIGHT + 3 * 20, 4 * 20, 3)
    assert np.array_equal(sheet[LABEL_HEIGHT + 20 : LABEL_HEIGHT + 40, 40:60], tiles[1][2])
    page = comparison_html(tiles, labels, ["r0", "r1", "r2"], summarize(ROWS, ["a"]))
    assert page.count("data:image/png;base64,") == 12
    assert 'src="http' not in page and "<link" not in page  # self-contained
    with pytest.raises(ValueError, match="tiles"):
        comparison_sheet([tiles[0][:3]], labels)


def test_masked_input_whitens_holes_only() -> None:
    image = np.full((2, 2, 3), 7, np.uint8)
    hole = np.array([[True, False], [False, False]])
    out = masked_input(image, hole)
    assert out[0, 0].tolist() == [255] * 3 and out[1, 1].tolist() == [7] * 3
