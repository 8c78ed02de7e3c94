"""PatchMatch on an eval set, broken down by hole-ratio bin and category: ours against
pypatchmatch (and any variant of ours), per image, side by side.

Each method's per-image scores (hole PSNR, hole l1, seconds) are cached as JSON lines under
``--cache``, so a method is run once per set and a new variant costs only its own run; the
tables then compare every requested method on the images all of them have scored. Timings in
one table come from different runs only when the cache was filled at different times; pass
``--fresh`` to recompute every requested method in this run (the speed comparison the issue
asks for).

    python benchmarks/patchmatch_bins.py --set free256 -m pypatchmatch -m ours
    python benchmarks/patchmatch_bins.py --set free256 -m pypatchmatch -m ours -m "ours:patch_size=7"
    python benchmarks/patchmatch_bins.py --set free256 -m pypatchmatch@timing -m ours@timing --every 8 --fresh
    python benchmarks/patchmatch_bins.py --set free256 -m pypatchmatch -m ours --worst 8 \
        --figure docs/images/patchmatch_worst_free256.png

A method spec is ``pypatchmatch`` (its default patch radius, 15), ``pypatchmatch:k=3``, ``ours``
(``patchmatch_inpaint`` at its defaults) or ``ours:key=value,...`` with keyword arguments of
``patchmatch_inpaint`` (ints, floats and strings are parsed as such). A suffix ``@tag`` only
names a separate cache, to keep the scores of an earlier version of the code beside the
current one (``ours@before-pyramid-fix``, tabulated with ``--no-score``).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from bench_patchmatch import hole_scores
from patchmatch import patch_match

from inpaintkit.io import list_images, read_mask, read_rgb
from inpaintkit.patchmatch import patchmatch_inpaint
from inpaintkit.report import comparison_sheet, masked_input, write_png

EVAL = Path("/work/shared/data/eval")
DEFAULT_CACHE = Path.home() / ".cache" / "inpaintkit" / "patchmatch-bins"


def parse_value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def method_from_spec(spec: str):
    """``name[:key=value,...]`` -> a function ``(image uint8 HxWx3, mask bool HxW) -> uint8``."""
    name, _, rest = spec.split("@")[0].partition(":")
    options = {
        k: parse_value(v) for k, v in (item.split("=", 1) for item in rest.split(",") if item)
    }
    if name == "pypatchmatch":
        k = int(options.pop("k", 15))
        if options:
            raise SystemExit(f"pypatchmatch takes only k=, got {sorted(options)}")
        return lambda image, mask: patch_match.inpaint(image, mask, patch_size=k)
    if name == "ours":
        return lambda image, mask: patchmatch_inpaint(image, mask, **options)
    raise SystemExit(f"unknown method {spec!r}: use pypatchmatch[:k=K] or ours[:key=value,...]")


def load_set(name: str, limit: int | None) -> list[dict]:
    """Rows of the set: stem, file paths, category and hole-ratio bin (index.tsv where it exists)."""
    root = EVAL / name
    index = {}
    if (root / "index.tsv").is_file():
        with open(root / "index.tsv", newline="") as f:
            index = {row["stem"]: row for row in csv.DictReader(f, delimiter="\t")}
    rows = []
    for path in list_images(root / "images")[:limit]:
        info = index.get(path.stem, {})
        rows.append(
            {
                "stem": path.stem,
                "image": path,
                "mask": root / "masks" / path.name,
                "category": info.get("category", "all"),
                "bin": info.get("hole_ratio_bin_of_source_mask", "all"),
            }
        )
    return rows


def cache_file(cache: Path, set_name: str, spec: str) -> Path:
    safe = spec.replace(":", "__").replace(",", "_").replace("=", "-").replace("/", "_")
    return cache / set_name / f"{safe}.jsonl"


def read_cache(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    scores = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            scores[record["stem"]] = record
    return scores


def score_method(
    spec: str, rows: list[dict], path: Path, fresh: bool, score: bool = True
) -> dict[str, dict]:
    """Score ``spec`` on every row not yet cached, appending each image's line as it finishes
    (an interrupted run keeps what it scored and a re-run resumes)."""
    if fresh and path.exists():
        path.unlink()
    done = read_cache(path)
    todo = [row for row in rows if row["stem"] not in done]
    if not todo or not score:
        return done
    method = method_from_spec(spec)
    method(np.zeros((64, 64, 3), np.uint8), np.pad(np.ones((16, 16), bool), 24))  # JIT warm-up
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as log:
        for i, row in enumerate(todo):
            image, mask = read_rgb(row["image"]), read_mask(row["mask"])
            start = time.perf_counter()
            filled = method(image, mask)
            seconds = time.perf_counter() - start
            hole_psnr, hole_l1 = hole_scores(filled, image, mask)
            record = {"stem": row["stem"], "hole_psnr": hole_psnr, "hole_l1": hole_l1}
            record |= {"seconds": seconds, "hole_ratio": float(mask.mean())}
            log.write(json.dumps(record) + "\n")
            log.flush()
            done[row["stem"]] = record
            print(f"\r{spec}: {i + 1}/{len(todo)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return done


def bin_order(name: str) -> tuple:
    head = name.split("-")[0].rstrip("%")
    return (0, float(head), name) if head.replace(".", "").isdigit() else (1, 0.0, name)


def table(title: str, groups: dict[str, list[str]], specs: list[str], scores: dict) -> None:
    """One Markdown table: per group, each method's mean hole PSNR / l1 and its image count, and
    the second method's difference from the first."""
    reference, compared = specs[0], specs[1:2]  # the delta column: second method vs first
    print(f"#### {title}\n")
    head = " | ".join(f"{s} PSNR / ℓ1" for s in specs)
    deltas = " | ".join(f"Δ {s} − {reference} (dB / ℓ1)" for s in compared)
    print(f"| group | images | {head} | {deltas} |")
    print("|---" * (2 + len(specs) + len(compared)) + "|")
    for group in sorted(groups, key=bin_order):
        stems = groups[group]
        means = {
            s: (
                np.mean([scores[s][t]["hole_psnr"] for t in stems]),
                np.mean([scores[s][t]["hole_l1"] for t in stems]),
            )
            for s in specs
        }
        cells = " | ".join(f"{p:.2f} / {l1:.2f}" for p, l1 in means.values())
        diff = " | ".join(
            f"{means[s][0] - means[reference][0]:+.2f} / {means[s][1] - means[reference][1]:+.2f}"
            for s in compared
        )
        print(f"| {group} | {len(stems)} | {cells} | {diff} |")
    print()


def worst_figure(path: Path, rows: list[dict], specs: list[str]) -> None:
    """Rows of input | each method | ground truth for the given images, as evaluate's sheet."""
    methods = [method_from_spec(s) for s in specs]
    tiles = []
    for row in rows:
        image, mask = read_rgb(row["image"]), read_mask(row["mask"])
        tiles.append([masked_input(image, mask), *(m(image, mask) for m in methods), image])
    write_png(path, comparison_sheet(tiles, ["input", *specs, "ground truth"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="free256", help="a folder of ../shared/data/eval")
    parser.add_argument(
        "-m",
        "--method",
        dest="methods",
        action="append",
        required=True,
        help="method spec (repeatable); the first is the reference for the deltas",
    )
    parser.add_argument("--limit", type=int, help="first N images only")
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help="every K-th image (a subset across all categories, for timing runs)",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--fresh", action="store_true", help="recompute every requested method")
    parser.add_argument(
        "--no-score",
        dest="score",
        action="store_false",
        help="only tabulate what the cache holds (on the images all methods have)",
    )
    parser.add_argument(
        "--worst",
        type=int,
        default=0,
        help="list the N images where the last method trails the first most",
    )
    parser.add_argument(
        "--figure", type=Path, help="draw the --worst (or --sample) images side by side here"
    )
    parser.add_argument(
        "--sample", type=int, default=0, help="draw N evenly spaced images instead of the worst"
    )
    parser.add_argument("--category", help="with --sample: only this index.tsv category")
    args = parser.parse_args()

    rows = load_set(args.set, args.limit)[:: args.every]
    scores = {
        spec: score_method(
            spec, rows, cache_file(args.cache, args.set, spec), args.fresh, args.score
        )
        for spec in args.methods
    }
    # Compare on the images every method has scored (all of them unless --no-score).
    rows = [row for row in rows if all(row["stem"] in scores[s] for s in args.methods)]
    stems = [row["stem"] for row in rows]
    print(f"### PatchMatch on {args.set}: {len(stems)} images, hole region\n")
    print(
        f"`python {' '.join(shlex.quote(a) for a in sys.argv)}` on {platform.processor() or platform.machine()}.\n"
    )
    by_bin, by_category = defaultdict(list), defaultdict(list)
    for row in rows:
        by_bin[row["bin"]].append(row["stem"])
        by_category[row["category"]].append(row["stem"])
    table("Overall", {"all": stems}, args.methods, scores)
    if len(by_bin) > 1:
        table("By hole-ratio bin (index.tsv)", by_bin, args.methods, scores)
        table("By category (index.tsv)", by_category, args.methods, scores)
    print("#### Seconds per image (mean)\n")
    for spec in args.methods:
        print(f"- {spec}: {np.mean([scores[spec][t]['seconds'] for t in stems]):.3f}")
    print()
    if args.sample:
        category = [row for row in rows if args.category in (None, row["category"])]
        shown = category[:: max(1, len(category) // args.sample)][: args.sample]
        if args.figure:
            worst_figure(args.figure, shown, args.methods)
            print(
                f"Figure: `{args.figure}` — {len(shown)} evenly spaced images"
                f"{f' of {args.category}' if args.category else ''}: input | "
                f"{' | '.join(args.methods)} | ground truth.\n"
            )
    if args.worst:
        reference, last = args.methods[0], args.methods[-1]
        gap = sorted(
            rows,
            key=lambda r: (
                scores[last][r["stem"]]["hole_psnr"] - scores[reference][r["stem"]]["hole_psnr"]
            ),
        )
        worst = gap[: args.worst]
        print(f"#### The {args.worst} images where {last} trails {reference} most (hole PSNR)\n")
        for row in worst:
            a, b = scores[reference][row["stem"]], scores[last][row["stem"]]
            print(
                f"- {row['stem']} ({row['category']}, {row['bin']}, hole {b['hole_ratio']:.1%}): "
                f"{b['hole_psnr']:.2f} vs {a['hole_psnr']:.2f} dB"
            )
        print()
        if args.figure and not args.sample:
            worst_figure(args.figure, worst, args.methods)
            print(
                f"Figure: `{args.figure}` — columns: input | {' | '.join(args.methods)} | ground truth.\n"
            )


if __name__ == "__main__":
    main()
