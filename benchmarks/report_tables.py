"""Markdown tables from an ``inpaintkit evaluate`` report folder, as docs/results.md shows them.

The summary table (every metric, mean ± standard deviation, and seconds per image), and with
``--index`` a per-group table of hole PSNR / hole l1 for each method, grouped by the index's
category and hole-ratio bin columns (free256's index.tsv); with ``--pair A B`` the per-image
difference between two methods (Table 1's full model against its baseline).

    python benchmarks/report_tables.py ~/.cache/inpaintkit/reports/free256 \
        --index ../shared/data/eval/free256/index.tsv
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

METRICS = ["l1", "l2", "psnr", "tv", "ssim", "hole_l1", "hole_l2", "hole_psnr"]


def image_rows(report: Path) -> list[dict]:
    with open(report / "metrics.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["row"] == "image"]


def summary_table(report: Path) -> str:
    summary = json.loads((report / "metrics.json").read_text())["summary"]
    seconds = defaultdict(list)
    for row in image_rows(report):
        seconds[row["method"]].append(float(row["seconds"]))
    lines = [
        "| method | ℓ1 (%) | ℓ2 (%) | PSNR (dB) | TV (%) | SSIM | hole ℓ1 (%)† | hole ℓ2 (%) "
        "| hole PSNR (dB) | s/image |",
        "|---" * 10 + "|",
    ]
    for name, stats in summary.items():
        cells = []
        for key in METRICS:
            digits = 3 if key == "ssim" else 2
            cells.append(f"{stats[key]['mean']:.{digits}f} ±{stats[key]['std']:.{digits}f}")
        mean_seconds = sum(seconds[name]) / len(seconds[name])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean_seconds:.3f} |")
    return "\n".join(lines)


def group_table(report: Path, index: Path) -> str:
    """Hole PSNR / hole l1 per method for every value of the index's non-key columns."""
    with open(index, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        key = reader.fieldnames[0]
        columns = [
            c for c in reader.fieldnames[1:] if c in ("category", "hole_ratio_bin_of_source_mask")
        ]
        groups_of = {row[key]: [row[c] for c in columns] for row in reader}
    scores = defaultdict(list)
    methods: list[str] = []
    for row in image_rows(report):
        if row["method"] not in methods:
            methods.append(row["method"])
        for group in groups_of[Path(row["image"]).stem]:
            scores[(row["method"], group)].append((float(row["hole_psnr"]), float(row["hole_l1"])))
    groups = sorted({g for _, g in scores}, key=lambda g: (g[0].isdigit(), g))
    lines = [
        "| group | images | " + " | ".join(methods) + " |",
        "|---|---:|" + "---|" * len(methods),
    ]
    for group in groups:
        count = len(scores[(methods[0], group)])
        cells = []
        for method in methods:
            values = scores[(method, group)]
            cells.append(
                f"{sum(p for p, _ in values) / count:.2f} / {sum(e for _, e in values) / count:.1f}"
            )
        lines.append(f"| {group} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_difference(report: Path, first: str, second: str, index: Path | None) -> str:
    """Per-image hole PSNR and hole l1 of ``first`` minus ``second``: mean, 95 % interval of
    the mean (normal approximation, 1.96 standard errors) and how many images ``first`` wins,
    overall and per index group. Paired, so the spread between images cancels."""
    by_method = defaultdict(dict)
    for row in image_rows(report):
        by_method[row["method"]][Path(row["image"]).stem] = (
            float(row["hole_psnr"]),
            float(row["hole_l1"]),
        )
    groups: dict[str, list[str]] = {"all": sorted(by_method[first])}
    if index is not None:
        with open(index, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                groups.setdefault(row["category"], []).append(row["stem"])
    lines = [
        f"| group | images | Δ hole PSNR (dB), {first} − {second} | 95 % interval | "
        f"{first} higher PSNR | Δ hole ℓ1 (points) | 95 % interval |",
        "|---|---:|---|---|---|---|---|",
    ]
    for name, stems in groups.items():
        pairs = [(by_method[first][t], by_method[second][t]) for t in stems]
        psnr = [a[0] - b[0] for a, b in pairs]
        l1 = [a[1] - b[1] for a, b in pairs]
        cells = []
        for values in (psnr, l1):
            mean = sum(values) / len(values)
            spread = (sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5
            half = 1.96 * spread / len(values) ** 0.5
            cells.append((mean, half))
        wins = sum(v > 0 for v in psnr)
        lines.append(
            f"| {name} | {len(stems)} | {cells[0][0]:+.2f} | ±{cells[0][1]:.2f} | "
            f"{wins} of {len(stems)} | {cells[1][0]:+.2f} | ±{cells[1][1]:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", type=Path, help="an `inpaintkit evaluate -o` folder")
    parser.add_argument("--index", type=Path, help="a TSV: stem, category, hole-ratio bin, ...")
    parser.add_argument(
        "--pair", nargs=2, metavar=("A", "B"), help="also the per-image difference A − B"
    )
    args = parser.parse_args()
    print(summary_table(args.report))
    if args.index:
        print("\nhole PSNR (dB) / hole ℓ1 (%)\n")
        print(group_table(args.report, args.index))
    if args.pair:
        print()
        print(paired_difference(args.report, *args.pair, args.index))


if __name__ == "__main__":
    main()
