"""Merging the shard reports of a job array into the report one run would have written.

Each shard of ``evaluate --shard K/N`` writes a whole report into ``REPORT_DIR/shards/K-of-N/``
(:mod:`inpaintkit.evaluate`); :func:`merge_shards` checks that every shard finished with the
same methods and writes, from their results logs, masks and tiles, the report in ``REPORT_DIR``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from inpaintkit import io
from inpaintkit.evaluate_folder import (
    check_identity,
    check_method_settings,
    read_rows,
    run_config,
    sample_paths,
    write_report,
)
from inpaintkit.evaluate_options import (
    MASKS_DIR,
    RESULTS_LOG,
    SHARDS_DIR,
    EvaluateError,
    EvaluateOptions,
    EvaluateResult,
)
from inpaintkit.evaluate_samples import GroundTruth
from inpaintkit.methods import InpaintMethod
from inpaintkit.sharding import Shard, shard_of


def shard_folders(output: Path) -> tuple[int, dict[int, Path]]:
    """The shard reports of a job array under ``output/shards``: N, and each shard's folder.

    Every shard ``0 .. N-1`` must have a folder, and all of one N.
    """
    found: dict[int, dict[int, Path]] = {}
    for path in sorted((output / SHARDS_DIR).glob("*-of-*")):
        match = re.fullmatch(r"(\d+)-of-(\d+)", path.name)
        if match and path.is_dir():
            found.setdefault(int(match[2]), {})[int(match[1])] = path
    if not found:
        raise EvaluateError(
            f"{output / SHARDS_DIR}: no shard reports; run evaluate --shard K/N -o {output} first"
        )
    if len(found) > 1:
        counts = ", ".join(str(n) for n in sorted(found))
        raise EvaluateError(
            f"{output / SHARDS_DIR}: holds shards of job arrays of different sizes (N = {counts}); "
            "keep the folders of one"
        )
    ((count, folders),) = found.items()
    missing = [f"{k}/{count}" for k in range(count) if k not in folders]
    if missing:
        raise EvaluateError(f"{output}: no report yet from shard {', '.join(missing)}; run it")
    return count, folders


def _finished_config(folder: Path, shard: Shard) -> dict:
    """The config of the last run of ``shard`` that finished (its metrics.json)."""
    path = folder / "metrics.json"
    if not path.exists():
        raise EvaluateError(
            f"{folder}: shard {shard} has not finished (no metrics.json); re-run it with --shard {shard}"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))["config"]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise EvaluateError(f"{path}: unreadable ({err}); re-run shard {shard}") from None


def _copy(source: Path, target: Path) -> None:
    """Copy a file, atomically."""
    with io.atomic_write(target) as tmp:
        shutil.copyfile(source, tmp)


def merge_shards(options: EvaluateOptions, methods: dict[str, InpaintMethod]) -> EvaluateResult:
    """Write into ``options.output`` the report one run would have written, from its shards'.

    ``options`` and ``methods`` are those the shards ran with (``--shard`` aside). Every
    shard must have finished with these methods and ``--limit``, and together they must hold
    a result for every (image, method) but the images they skipped; otherwise an error names
    the shard to re-run. results.jsonl gets the shards' rows in the order one run logs them
    (image by image, methods in order), so every mean and deviation is one run's to the
    last bit (s/image aside, which differs between any two runs); generated masks and the
    sheet's tiles are copied from the shards. A row the report already holds and the shards
    do not (an earlier run without --shard) is never dropped: that is an error.
    """
    if not methods:
        raise EvaluateError("nothing to evaluate")
    if options.shard is not None:
        raise EvaluateError("merging takes every shard: leave --shard out")
    truth = GroundTruth(options)
    names = list(methods)
    count, folders = shard_folders(options.output)
    rows: dict[tuple[int, int], dict] = {}
    problems: dict[str, str] = {}  # skipped image -> why
    for index, folder in sorted(folders.items()):
        shard = Shard(index, count)
        config = _finished_config(folder, shard)
        check_identity(options, folder)
        check_method_settings(folder, methods, record=False)
        if (
            sorted(config.get("methods", [])) != sorted(names)
            or config.get("limit") != options.limit
        ):
            raise EvaluateError(
                f"{folder}: the last finished run evaluated {config.get('methods')} with limit "
                f"{config.get('limit')}, not {names} with limit {options.limit}; re-run shard "
                f"{shard} with these methods"
            )
        problems.update((entry["image"], entry["reason"]) for entry in config["skipped"])
        for row in read_rows(folder / RESULTS_LOG, names, len(truth)):
            rows.setdefault((row["index"], names.index(row["method"])), row)
    for i, key in enumerate(truth.keys):
        for position, name in enumerate(names):
            if key not in problems and (i, position) not in rows:
                raise EvaluateError(
                    f"{folders[shard_of(key, count)]}: no result for {key} with {name}; "
                    "re-run that shard"
                )

    output = options.output
    check_identity(options, output)
    check_method_settings(output, methods)
    merged = [rows[position] for position in sorted(rows)]
    _refuse_to_drop(output / RESULTS_LOG, {(row["image"], row["method"]) for row in merged})
    with io.atomic_write(output / RESULTS_LOG) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in merged:
            f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
    if options.masks is None:  # generated masks, for --masks REPORT_DIR/masks
        for folder in folders.values():
            for mask in sorted((folder / MASKS_DIR).rglob("*.png")):
                target = output / MASKS_DIR / mask.relative_to(folder / MASKS_DIR)
                if not io.is_temporary(mask) and not target.exists():
                    _copy(mask, target)
    sample_keys = [key for key in truth.keys[: options.samples] if key not in problems]
    for key in sample_keys:
        shard_tiles = sample_paths(folders[shard_of(key, count)], key, names)
        for what, target in sample_paths(output, key, names).items():
            if not shard_tiles[what].exists():
                raise EvaluateError(
                    f"{shard_tiles[what]}: missing; re-run its shard with --samples {options.samples}"
                )
            _copy(shard_tiles[what], target)
    skipped = [(key, problems[key]) for key in truth.keys if key in problems]
    run = run_config(options, len(truth), names, skipped)
    summary = write_report(output, run, len(truth), sample_keys)
    return EvaluateResult(summary=summary, images=len(truth), computed=0, skipped=skipped)


def _refuse_to_drop(log: Path, merged: set[tuple[str, str]]) -> None:
    """Raise if the results.jsonl at ``log`` holds a result that ``merged`` lacks."""
    if not log.exists():
        return
    with open(log, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            row = json.loads(line)
            if (row["image"], row["method"]) not in merged:
                raise EvaluateError(
                    f"{log}: holds a result the shards do not ({row['image']} with "
                    f"{row['method']}); merge into another -o, or delete it"
                )
