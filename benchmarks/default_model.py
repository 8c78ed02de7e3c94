"""The default model's learning curve and its packaging (docs/model-card.md).

    python benchmarks/default_model.py curve RUN [--eval ../shared/data/eval] [--free-every N]
                                                 [--earlier RUN2 --earlier-label TEXT]
    python benchmarks/default_model.py raw RUN OUT.safetensors
    python benchmarks/default_model.py keep RUN/generator.safetensors OUT.safetensors
    python benchmarks/default_model.py ship RUN/generator.safetensors [--eval ../shared/data/eval]
    python benchmarks/default_model.py precision [--checkpoint FILE] [--eval ../shared/data/eval]
    python benchmarks/default_model.py sharpness CHECKPOINT... [--free-every N] [--patchmatch]
                                                 [--by-distance] [--by-detail]
    python benchmarks/default_model.py adversarial LABEL=RUN[@FIRST_STEP][+OFFSET]...

``curve`` scores every kept snapshot of a training run (``RUN/generator-STEP.safetensors``,
written every ``schedule.keep_every`` steps) and its latest ``RUN/generator.safetensors`` with :func:`inpaintkit.evaluate.evaluate` on the
rect256 set, and on free256 every ``--free-every`` steps (471 images: minutes per snapshot on
2 cores); reports are cached under ``RUN/curve/``, so a re-run scores only new snapshots. It draws docs/images/model_curve.png: the run's own validation log
(``RUN/validation.jsonl``, hole PSNR and hole ℓ1 on 64 held-out training photos) and the
evaluation sets' scores against generator steps and training hours. ``--earlier RUN2`` draws an
earlier run's validation log and cached scores beside it, faint, with crosses (e.g. the run it
replaced).

``raw`` writes a run's raw generator weights (the training state's, not the weight average
that ``RUN/generator.safetensors`` holds) with the run's metadata: what ``ship`` packs when the
raw weights validate better, as after a learning-rate cool-down.

``keep`` writes a run's generator as fp16 with its metadata, to commit at the end of a stint
(``checkpoints/``): run state lives outside the work tree and a new machine starts without
it, so the next stint restarts from that file with ``--init-from`` (fresh critics, warmed up
alone again) instead of from the shipped weights.

``ship`` writes the generator as fp16 into the package (``inpaintkit/weights/``) after
measuring, on both evaluation sets, what fp16 storage costs against the fp32 file; it refuses
when hole PSNR moves by 0.1 dB or more on either set.

``precision`` decides ``fill``'s CPU defaults: the forward time of the default model at 512²
(a centred 256² hole, batch 1) in fp32 and bf16 autocast, NCHW and channels_last, side by side
in one run; and the hole PSNR / ℓ1 of fp32 against bf16 on both evaluation sets.

``sharpness`` puts checkpoints, each Poisson-blended (``fill``'s default) and pasted (the
paper's), side by side with the floors (and ``--patchmatch``) on rect256 and every
``--free-every``-th free256 image: hole PSNR, hole ℓ1 and hole TV
(:func:`inpaintkit.metrics.hole_tv`) against the ground truth's — how much detail a fill has,
which PSNR and ℓ1 do not see, and the share of that detail that is colour
(:func:`colour_share`); ``--by-distance`` adds hole ℓ1 by distance from the known
pixels, where blending acts (docs/model.md, "Blending"); ``--by-detail`` adds the fills' mean
local detail (``losses.local_detail``) in quintiles of the photos' over the holes: whether a
fill is clean where its photo is flat and busy where it is busy.

``adversarial`` draws docs/images/adversarial_chain.png from the runs' own validation logs
(no scoring): hole PSNR, hole TV over the ground truth's, periodicity and alternation
(``inpaintkit/periodicity.py``) of the 64 validation fills against generator steps, one line
per run from its ``@FIRST_STEP`` on (a branch's folder holds the log of the runs it was
copied from), shifted by ``+OFFSET`` steps (a run started with ``--init-from`` counts from 0:
the offset is the step of the run it started from), with the shipped model's values and the
photos' own as references. It is how
the adversarial phase's recipes are compared: sharpness bought, PSNR paid, pattern grown.

Needs matplotlib for ``curve`` and ``adversarial`` (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from inpaintkit.checkpoint import DEFAULT_CHECKPOINT, load_generator, read_metadata, save_generator
from inpaintkit.evaluate import EvaluateOptions, evaluate
from inpaintkit.methods import DeepFillMethod

ROOT = Path(__file__).resolve().parents[1]
SETS = ("rect256", "free256")
CURVE_IMAGE = ROOT / "docs" / "images" / "model_curve.png"
ADVERSARIAL_IMAGE = ROOT / "docs" / "images" / "adversarial_chain.png"
# Reference rows from ../shared/data/README.md and docs/results.md (same sets, same metrics).
REFERENCES = {
    "rect256": {
        "target": (13.8, 15.0),
        "OpenCV Telea": (13.69, 15.31),
        "pypatchmatch": (12.31, 18.95),
    },
    "free256": {"target": (18.6, 8.5), "OpenCV Telea": (18.33, 8.7), "pypatchmatch": (17.27, 10.9)},
}


def score(
    checkpoint: Path,
    eval_root: Path,
    name: str,
    report: Path,
    precision: str = "auto",
    blend: str = "none",
) -> dict[str, float]:
    """Hole PSNR / hole ℓ1 / PSNR / ℓ1 of ``checkpoint`` on one evaluation set (resumable report).

    ``precision``: DeepFillMethod's autocast (``"auto"``: what ``fill`` uses by default).
    ``blend``: ``"none"`` by default, so the learning curve and the fp16 check measure the
    network itself, as they did before ``fill`` blended (and cached scores stay comparable).
    """
    options = EvaluateOptions(
        data=eval_root / name / "images",
        masks=eval_root / name / "masks",
        output=report,
        samples=4,
        warmup=False,
    )
    method = DeepFillMethod(checkpoint, device="cpu", precision=precision, blend=blend)
    result = evaluate(options, {"model": method}, progress=False)
    metrics = result.summary["model"].metrics
    return {key: metrics[key].mean for key in ("hole_psnr", "hole_l1", "psnr", "l1")} | {
        "images": result.images
    }


def snapshot_step(path: Path) -> int:
    return int(re.fullmatch(r"generator-(\d+)\.safetensors", path.name).group(1))


def _scores_path(run: Path) -> Path:
    """Where ``curve`` caches a run's evaluation scores."""
    return run / "curve" / "scores.json"


def _scores(run: Path) -> dict:
    path = _scores_path(run)
    return json.loads(path.read_text()) if path.is_file() else {}


def curve(
    run: Path, eval_root: Path, free_every: int, earlier: Path | None = None, label: str = ""
) -> None:
    cache_path = _scores_path(run)
    cache = _scores(run)
    # The kept snapshots, and the run's latest generator (both sets, whatever its step).
    snapshots = {snapshot_step(p): p for p in run.glob("generator-*.safetensors")}
    latest = int(read_metadata(run / "generator.safetensors")["step"])
    snapshots.setdefault(latest, run / "generator.safetensors")
    for step, snapshot in sorted(snapshots.items()):
        meta = read_metadata(snapshot)
        for name in SETS:
            key = f"{step}/{name}"
            if key in cache or (name == "free256" and step % free_every and step != latest):
                continue
            cache[key] = score(snapshot, eval_root, name, run / "curve" / f"{step:08d}-{name}")
            cache[key]["hours"] = float(meta.get("train_seconds", "nan")) / 3600
            print(
                f"step {step:6d} {name}: hole PSNR {cache[key]['hole_psnr']:.2f} dB, "
                f"hole l1 {cache[key]['hole_l1']:.2f} %",
                flush=True,
            )
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cache, indent=1))
    draw(run, cache, earlier, label)


def _validation_log(run: Path) -> list[dict]:
    """The run's validation lines; a line repeated after a resume keeps its last value."""
    rows: dict[int, dict] = {}
    path = run / "validation.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        rows[row["step"]] = row
    return [rows[s] for s in sorted(rows)]


def draw(run: Path, cache: dict, earlier: Path | None = None, label: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # (folder, scores, marker, alpha, legend suffix): an earlier run is drawn faint, with crosses.
    runs = [(run, cache, "o", 1.0, "")]
    if earlier is not None:
        runs.append((earlier, _scores(earlier), "x", 0.4, f" ({label or earlier.name})"))
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharey="row")
    metrics = (("hole_psnr", "hole PSNR (dB)"), ("hole_l1", "hole ℓ1 (%)"))
    for col, (xkey, xlabel) in enumerate(
        (("step", "generator steps"), ("hours", "training hours (2 CPU cores)"))
    ):
        for row, (key, axis_label) in enumerate(metrics):
            ax = axes[row, col]
            for source, scores, marker, alpha, suffix in runs:
                validation = _validation_log(source)
                xs = [
                    r["step"] if xkey == "step" else r["train_seconds"] / 3600 for r in validation
                ]
                ax.plot(
                    xs,
                    [r[key] for r in validation],
                    color="0.6",
                    alpha=alpha,
                    lw=1,
                    label=f"validation (64 held-out photos){suffix}",
                )
                for name, colour in zip(SETS, ("tab:blue", "tab:orange"), strict=True):
                    points = sorted(
                        (int(k.split("/")[0]), v) for k, v in scores.items() if k.endswith(name)
                    )
                    if points:
                        x = [s if xkey == "step" else v["hours"] for s, v in points]
                        y = [v[key] for _, v in points]
                        ax.plot(x, y, marker + "-", color=colour, alpha=alpha, label=name + suffix)
            for name, colour in zip(SETS, ("tab:blue", "tab:orange"), strict=True):
                for ref, value in REFERENCES[name].items():
                    style = "--" if ref == "target" else ":"
                    ax.axhline(value[row], color=colour, ls=style, lw=0.8)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(axis_label)
            ax.grid(alpha=0.3)
    axes[1, 0].legend(fontsize=8, loc="upper right")  # the ℓ1 panel has room above its curves
    title = "Default model: hole metrics while training (dashed: issue targets; dotted: pypatchmatch / Telea)"
    save_figure(fig, title, CURVE_IMAGE)


def save_figure(fig, title: str, path: Path) -> None:
    """Title, lay out and write a figure (docs/images/...)."""
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def draw_adversarial(runs: list[tuple[str, Path, int, int]], out: Path = ADVERSARIAL_IMAGE) -> None:
    """Validation hole PSNR, TV ratio, periodicity and alternation against step, one line per
    labelled run ``(label, folder, first step, offset)`` from its own step on (a branch's
    folder holds the log of the runs it was copied from), its steps shifted by the offset,
    with the shipped model's values (the first step 0) and the photos' own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Each panel's metric, its axis label, and the photos' value (a logged key, or a constant).
    panels = (
        ("hole_psnr", "hole PSNR (dB)", None),
        ("hole_tv_ratio", "hole TV / ground truth's", 1.0),
        ("hole_periodicity", "periodicity (largest autocorrelation)", "truth_periodicity"),
        ("hole_alternation", "alternation (minus the smallest)", "truth_alternation"),
    )
    logs: dict[str, list[dict]] = {}
    for label, run, first, offset in runs:
        logs[label] = [
            {**row, "step": row["step"] + offset}
            for row in _validation_log(run)
            if row["step"] >= first
        ]
        if not logs[label]:
            raise SystemExit(f"{run}: no validation from step {first} on")
    every_row = [row for validation in logs.values() for row in validation]
    shipped = next((row for row in every_row if row["step"] == 0), None)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.7 * len(panels), 4.2), sharex=True)
    for index, (label, validation) in enumerate(logs.items()):
        for ax, (key, _, _) in zip(axes, panels, strict=True):
            rows = [r for r in validation if key in r]
            xs, ys = [r["step"] for r in rows], [r[key] for r in rows]
            # tab20's ten dark hues, then its ten light ones: the default cycle has only ten,
            # and the chain of runs outgrew it (its 11th took the 1st's colour).
            colour = plt.cm.tab20((2 * index + index // 10) % 20)
            ax.plot(xs, ys, "o-", ms=3, color=colour, label=label)
    for ax, (key, axis_label, photos) in zip(axes, panels, strict=True):
        if shipped is not None and key in shipped:
            ax.axhline(shipped[key], color="0.5", ls=":", lw=0.8, label="shipped (step 0)")
        if isinstance(photos, str):  # the same 64 photos every time: any logged value
            photos = next((row[photos] for row in every_row if photos in row), None)
        if photos is not None:
            ax.axhline(photos, color="k", ls="--", lw=0.8, label="photos")
        ax.set_xlabel("generator steps")
        ax.set_ylabel(axis_label)
        ax.grid(alpha=0.3)
    # Every run and both references, where periodicity (logged since stint 14) leaves room.
    axes[2].legend(*axes[1].get_legend_handles_labels(), fontsize=8, loc="upper left")
    title = "Adversarial phase: validation fills (64 held-out photos) against step"
    save_figure(fig, title, out)


def packed_metadata(source: Path) -> dict[str, str]:
    """What a packed copy of ``source`` keeps of its metadata, and the source's sha256."""
    meta = read_metadata(source)
    metadata = {
        key: meta[key]
        for key in ("recipe", "step", "samples", "train_seconds", "weights", "init_from")
        if key in meta
    }
    metadata["source_sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
    return metadata


def keep(source: Path, out: Path) -> None:
    """``source`` (a run's generator) as fp16 at ``out``: small enough to commit, so a run whose
    state is lost with its machine restarts from it with ``--init-from`` (docs/training.md)."""
    metadata = packed_metadata(source)
    save_generator(out, load_generator(source), metadata=metadata, dtype=torch.float16)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, step {metadata.get('step')})")


def ship(source: Path, eval_root: Path) -> None:
    generator = load_generator(source)
    metadata = packed_metadata(source)
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / "half.safetensors"
        save_generator(half, generator, metadata=metadata, dtype=torch.float16)
        for name in SETS:
            full = score(source, eval_root, name, Path(tmp) / f"fp32-{name}")
            packed = score(half, eval_root, name, Path(tmp) / f"fp16-{name}")
            delta = packed["hole_psnr"] - full["hole_psnr"]
            print(
                f"{name}: fp32 {full['hole_psnr']:.3f} dB / {full['hole_l1']:.3f} %, "
                f"fp16 {packed['hole_psnr']:.3f} dB / {packed['hole_l1']:.3f} % (delta {delta:+.3f} dB)"
            )
            if abs(delta) >= 0.1:
                sys.exit(f"fp16 storage moves hole PSNR by {delta:+.3f} dB on {name}; not shipped")
        DEFAULT_CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
        save_generator(DEFAULT_CHECKPOINT, generator, metadata=metadata, dtype=torch.float16)
    size = DEFAULT_CHECKPOINT.stat().st_size
    print(
        f"wrote {DEFAULT_CHECKPOINT} ({size / 1e6:.1f} MB, step {metadata.get('step')}, "
        f"sha256 {hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes()).hexdigest()})"
    )


def precision(checkpoint: Path | None, eval_root: Path, repeats: int = 5) -> None:
    import platform
    import time

    from inpaintkit.inpaint import inpaint
    from inpaintkit.methods import PRECISIONS

    print("## fill precision on the CPU (benchmarks/default_model.py precision)\n")
    print(
        f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
        f"torch {torch.__version__}; model: {checkpoint or 'the packaged default'}"
    )
    print(
        f"- forward: 512x512, one centred 256x256 hole, batch 1, median of {repeats} after one untimed\n"
    )
    print("| precision | layout | forward (s) | vs fp32 NCHW |")
    print("|---|---|---:|---:|")
    image = torch.rand(1, 3, 512, 512) * 2 - 1
    mask = torch.zeros(1, 1, 512, 512)
    mask[..., 128:384, 128:384] = 1
    base = None
    for name, layout in (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)):
        generator = load_generator(checkpoint)
        x, m = image, mask
        if layout:
            generator = generator.to(memory_format=torch.channels_last)
            x, m = (
                x.contiguous(memory_format=torch.channels_last),
                m.contiguous(memory_format=torch.channels_last),
            )
        inpaint(generator, x, m, autocast_dtype=PRECISIONS[name])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            inpaint(generator, x, m, autocast_dtype=PRECISIONS[name])
            times.append(time.perf_counter() - start)
        seconds = sorted(times)[repeats // 2]
        base = base or seconds
        print(
            f"| {name} | {'channels_last' if layout else 'NCHW'} | {seconds:.3f} | {base / seconds:.2f}x |",
            flush=True,
        )
    print("\n| set | fp32 hole PSNR | bf16 hole PSNR | delta | fp32 hole ℓ1 | bf16 hole ℓ1 |")
    print("|---|---:|---:|---:|---:|---:|")
    source = checkpoint or DEFAULT_CHECKPOINT
    with tempfile.TemporaryDirectory() as tmp:
        for name in SETS:
            f, b = (
                score(source, eval_root, name, Path(tmp) / f"{mode}-{name}", mode)
                for mode in ("fp32", "bf16")
            )
            print(
                f"| {name} | {f['hole_psnr']:.3f} | {b['hole_psnr']:.3f} | "
                f"{b['hole_psnr'] - f['hole_psnr']:+.3f} | {f['hole_l1']:.3f} | {b['hole_l1']:.3f} |",
                flush=True,
            )


def eval_tensors(eval_root: Path, name: str, every: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``every``-th image of an evaluation set (sorted names) and its mask, as tensors."""
    from inpaintkit.io import list_images, read_mask, read_rgb
    from inpaintkit.tensors import image_to_tensor, mask_to_tensor

    paths = list_images(eval_root / name / "images")[::every]
    images = torch.cat([image_to_tensor(read_rgb(path)) for path in paths])
    masks = torch.cat(
        [mask_to_tensor(read_mask(eval_root / name / "masks" / path.name)) for path in paths]
    )
    return images, masks


class EvalSet(NamedTuple):
    """One evaluation set as issue #25 scores it, loaded: ``images (N, 3, H, W)`` in [-1, 1],
    ``masks (N, 1, H, W)`` (1 = hole), ``truth`` the images in [0, 1] and ``truth_tv`` their
    hole TV ``(N,)``, which every fill's TV ratio divides by."""

    name: str
    every: int
    images: torch.Tensor
    masks: torch.Tensor
    truth: torch.Tensor
    truth_tv: torch.Tensor


def eval_sets(eval_root: Path, free_every: int) -> Iterator[EvalSet]:
    """rect256 whole, then every ``free_every``-th free256 image, each loaded when reached."""
    from inpaintkit.metrics import hole_tv
    from inpaintkit.tensors import signed_to_unit

    for name, every in (("rect256", 1), ("free256", free_every)):
        images, masks = eval_tensors(eval_root, name, every)
        truth = signed_to_unit(images)
        yield EvalSet(name, every, images, masks, truth, hole_tv(truth, masks))


#: Quantile bins of the photos' local detail over a set's hole pixels (``--by-detail``).
DETAIL_BINS = 5


def detail_bins(
    truth: torch.Tensor, masks: torch.Tensor, bins: int = DETAIL_BINS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each hole pixel's bin of the photos' local detail (``losses.local_detail`` of ``truth
    (N, 3, H, W)`` in [0, 1]), quantiles over all the hole pixels of ``masks (N, 1, H, W)`` ->
    the ``bins + 1`` edges and, per hole pixel (``masks[:, 0] > 0.5`` order), its bin."""
    from inpaintkit.losses import local_detail

    detail = local_detail(truth)[masks[:, 0] > 0.5].double()
    edges = torch.quantile(detail, torch.linspace(0, 1, bins + 1, dtype=detail.dtype))
    return edges, torch.bucketize(detail, edges[1:-1])


#: Bins of the distance (pixels, Euclidean) from a hole pixel to the nearest known pixel.
DISTANCE_BINS = ((1, 2), (2, 3), (3, 4), (4, 6), (6, 9), (9, 17), (17, 33), (33, 10**6))


class HoleScores(NamedTuple):
    """A set of fills' means per image: hole PSNR (dB, over the images where it is finite),
    hole ℓ1 (%), hole TV (%) and hole TV over the ground truth's (docs/metrics.md); and,
    pooled over the set's hole pixels, the colour share (:func:`colour_share`)."""

    psnr: float
    l1: float
    tv: float
    tv_ratio: float
    colour_share: float


def colour_share(images: torch.Tensor, masks: torch.Tensor) -> float:
    """How much of the holes' local detail is colour: the mean over every hole pixel of
    ``images (N, 3, H, W)`` of the local detail of its colour (``losses.chroma``) over that of
    its grey (``losses.local_detail``, the grey on every channel, so that the two add up in
    squares). Photos' detail is mostly grey (0.13-0.28 on the evaluation sets); a fill's pink
    and green speckles raise it (stint 22)."""
    from inpaintkit.losses import chroma, local_detail

    grey = images.mean(dim=1, keepdim=True).expand_as(images)
    hole = masks[:, 0] > 0.5
    colour, luminance = local_detail(chroma(images))[hole], local_detail(grey)[hole]
    return float(colour.double().mean() / luminance.double().mean())


def hole_scores(
    filled: torch.Tensor, truth: torch.Tensor, masks: torch.Tensor, truth_tv: torch.Tensor
) -> HoleScores:
    """The scores of ``filled (N, 3, H, W)`` against ``truth`` (both in [0, 1]) in the holes of
    ``masks (N, 1, H, W)``; ``truth_tv``: ``hole_tv(truth, masks)``, computed once per set."""
    from inpaintkit.metrics import hole_tv, mean_l1_error, psnr

    fill_tv = hole_tv(filled, masks)
    hole_psnr = psnr(filled, truth, masks)
    return HoleScores(
        float(hole_psnr[hole_psnr.isfinite()].mean()),
        float(mean_l1_error(filled, truth, masks).mean()),
        float(fill_tv.mean()),
        float((fill_tv / truth_tv).mean()),
        colour_share(filled, masks),
    )


def fill_all(method, images: torch.Tensor, masks: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """``method``'s fills of a whole set in batches, in [0, 1]."""
    from inpaintkit.tensors import signed_to_unit

    parts = [
        method(images[i : i + batch], masks[i : i + batch]) for i in range(0, len(images), batch)
    ]
    return signed_to_unit(torch.cat(parts))


def sharpness(
    checkpoints: list[Path],
    eval_root: Path,
    free_every: int,
    patchmatch: bool,
    by_distance: bool,
    by_detail: bool = False,
) -> None:
    from scipy.ndimage import distance_transform_edt

    from inpaintkit.evaluate import build_methods
    from inpaintkit.losses import local_detail

    # Each checkpoint twice, NAME blended and NAME-pasted, named as `evaluate` names them.
    methods = build_methods(
        checkpoints, patchmatch=patchmatch, device="cpu", blends=("poisson", "none")
    )
    for name, every, images, masks, truth, truth_tv in eval_sets(eval_root, free_every):
        fills = {label: fill_all(method, images, masks) for label, method in methods.items()}
        print(f"\n### {name}: {len(images)} images (every {every}), mean per image\n")
        print(
            "| method | hole PSNR (dB) | hole ℓ1 (%) | hole TV (%) | hole TV / ground truth's "
            "| colour share of detail |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        print(
            f"| ground truth | | | {truth_tv.mean():.3f} | 1.000 | "
            f"{colour_share(truth, masks):.3f} |"
        )
        for label, filled in fills.items():
            scores = hole_scores(filled, truth, masks, truth_tv)
            print(
                f"| {label} | {scores.psnr:.2f} | {scores.l1:.2f} | {scores.tv:.3f} | "
                f"{scores.tv_ratio:.3f} | {scores.colour_share:.3f} |",
                flush=True,
            )
        if by_detail:
            # A fill whose detail follows the photo's is clean where the photo is flat (a sky)
            # and busy where it is busy; grain drawn everywhere alike reads as a flat row.
            edges, which = detail_bins(truth, masks)
            hole = masks[:, 0] > 0.5
            rows = {"ground truth": truth, **fills}
            print(f"\nmean local detail by quintile of the photos' local detail, {name}\n")
            spans = [f"{edges[b]:.3f}–{edges[b + 1]:.3f}" for b in range(DETAIL_BINS)]
            print("| method | " + " | ".join(spans) + " | busiest / flattest |")
            print("|---|" + "---:|" * (DETAIL_BINS + 1))
            for label, images_ in rows.items():
                detail = local_detail(images_)[hole].double()
                means = [detail[which == b].mean() for b in range(DETAIL_BINS)]
                cells = " | ".join(f"{m:.3f}" for m in means)
                print(f"| {label} | {cells} | {means[-1] / means[0]:.1f} |", flush=True)
        if not by_distance:
            continue
        # Hole ℓ1 (%) pooled over the set's hole pixels at each distance from the known ones.
        distance = torch.from_numpy(
            np.stack([distance_transform_edt(m[0].numpy() > 0.5) for m in masks])
        )
        bins = [(distance >= low) & (distance < high) for low, high in DISTANCE_BINS]
        names = [
            f"{low}" if high == low + 1 else f"{low}–{high - 1}" for low, high in DISTANCE_BINS
        ]
        names[-1] = f"≥ {DISTANCE_BINS[-1][0]}"
        print(f"\nhole ℓ1 (%) by distance to the nearest known pixel (px), {name}\n")
        print("| method | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        print(
            "| share of hole pixels | "
            + " | ".join(f"{b.double().mean() / (distance > 0).double().mean():.1%}" for b in bins)
            + " |"
        )
        for label, filled in fills.items():
            error = (filled - truth).abs().mean(dim=1).double()
            print(f"| {label} | " + " | ".join(f"{100 * error[b].mean():.2f}" for b in bins) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("curve", help="score a run's snapshots and draw docs/images/model_curve.png")
    c.add_argument("run", type=Path)
    c.add_argument(
        "--earlier", type=Path, default=None, help="an earlier run to draw faint, with crosses"
    )
    c.add_argument("--earlier-label", default="", help="its legend label (default: its folder)")
    c.add_argument(
        "--free-every",
        type=int,
        default=5000,
        help="score free256 at snapshots whose step is a multiple of N",
    )
    r = sub.add_parser("raw", help="write a run's raw (not averaged) generator weights")
    r.add_argument("run", type=Path)
    r.add_argument("out", type=Path)
    k = sub.add_parser("keep", help="pack a run's generator as fp16 to commit (--init-from)")
    k.add_argument("source", type=Path)
    k.add_argument("out", type=Path)
    s = sub.add_parser("ship", help="pack a generator into inpaintkit/weights as fp16")
    s.add_argument("source", type=Path)
    q = sub.add_parser(
        "precision", help="fp32 vs bf16, NCHW vs channels_last: speed and hole metrics"
    )
    q.add_argument("--checkpoint", type=Path, default=None, help="default: the packaged model")
    h = sub.add_parser("sharpness", help="hole PSNR, ℓ1 and hole TV against the ground truth's")
    h.add_argument("checkpoints", type=Path, nargs="+")
    h.add_argument("--free-every", type=int, default=5, help="every N-th free256 image")
    h.add_argument("--patchmatch", action="store_true", help="also our PatchMatch")
    h.add_argument(
        "--by-distance", action="store_true", help="also hole ℓ1 by distance to the known pixels"
    )
    h.add_argument(
        "--by-detail",
        action="store_true",
        help="also the fills' local detail by quintile of the photos'",
    )
    a = sub.add_parser(
        "adversarial", help="draw the adversarial runs' validation curves (no scoring)"
    )
    a.add_argument(
        "runs",
        nargs="+",
        help="LABEL=RUN_FOLDER[@FIRST_STEP][+OFFSET], one per run, in branch order",
    )
    a.add_argument("--out", type=Path, default=ADVERSARIAL_IMAGE, help="the figure's file")
    for p in (c, s, q, h):
        p.add_argument(
            "--eval", dest="eval_root", type=Path, default=ROOT.parent / "shared" / "data" / "eval"
        )
    args = parser.parse_args()
    if args.command == "curve":
        curve(args.run, args.eval_root, args.free_every, args.earlier, args.earlier_label)
    elif args.command == "raw":
        from inpaintkit.train import export_raw_generator

        step = export_raw_generator(args.run, args.out)
        print(f"wrote {args.out}: the raw generator of {args.run} at step {step}")
    elif args.command == "keep":
        keep(args.source, args.out)
    elif args.command == "ship":
        ship(args.source, args.eval_root)
    elif args.command == "adversarial":
        runs = []
        for item in args.runs:
            label, sep, folder = item.partition("=")
            folder, plus, offset = folder.rpartition("+") if "+" in folder else (folder, "", "0")
            folder, at, first = folder.rpartition("@") if "@" in folder else (folder, "", "0")
            if not sep or not label or not first.isdigit() or not offset.isdigit():
                raise SystemExit(f"{item}: each run is LABEL=RUN_FOLDER[@FIRST_STEP][+OFFSET]")
            runs.append((label, Path(folder), int(first), int(offset)))
        draw_adversarial(runs, args.out)
    elif args.command == "sharpness":
        sharpness(
            args.checkpoints,
            args.eval_root,
            args.free_every,
            args.patchmatch,
            args.by_distance,
            args.by_detail,
        )
    else:
        precision(args.checkpoint, args.eval_root)


if __name__ == "__main__":
    main()
