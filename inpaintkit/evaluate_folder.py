"""The report folder of an evaluation: what it holds and the report written from it.

``evaluation.json`` (the run's identity) and ``methods.json`` (each method's settings) keep a
re-run from mixing results of another dataset, mask set or checkpoint into the folder;
``results.jsonl`` (:class:`ResultsLog`) holds one durable row per finished (image, method);
``samples/`` the comparison sheet's tiles; :func:`write_report` writes metrics.json,
metrics.csv and the comparison sheet from them (:mod:`inpaintkit.report`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from inpaintkit import io
from inpaintkit.evaluate_options import (
    METHODS_FILE,
    RESULTS_LOG,
    RUN_FILE,
    SAMPLES_DIR,
    EvaluateError,
    EvaluateOptions,
)
from inpaintkit.evaluate_samples import mask_file_name
from inpaintkit.methods import InpaintMethod
from inpaintkit.report import (
    MethodSummary,
    comparison_html,
    comparison_sheet,
    summarize,
    write_metrics_csv,
    write_metrics_json,
    write_png,
)

# --------------------------------------------------------------------------- the results log


class ResultsLog:
    """``results.jsonl``: one JSON row per finished (image, method), durable once written.

    A last line cut short by an interruption is dropped (the file is truncated back to the
    last complete line) before new rows are appended.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[tuple[str, str]] = set()
        if path.exists():
            self._recover()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def _recover(self) -> None:
        good_end = 0
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    break  # truncated by an interruption: redo that result
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise EvaluateError(
                        f"{self.path}: line {number} is not JSON; delete the file to start over"
                    ) from None
                self.done.add((row["image"], row["method"]))
                good_end += len(line)
        if good_end != self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def append(self, row: dict) -> None:
        """Write one row and make it durable before returning."""
        self._file.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done.add((row["image"], row["method"]))

    def close(self) -> None:
        self._file.close()

    def rows(self, methods: Sequence[str], images: int) -> Iterator[dict]:
        """Rows of ``methods`` for the first ``images`` images (as stored), in log order."""
        return read_rows(self.path, methods, images)


def read_rows(path: Path, methods: Sequence[str], images: int) -> Iterator[dict]:
    """Rows of ``methods`` for the first ``images`` images of the log at ``path``, in log order.

    Complete lines only: a last line cut short by an interruption is not a result.
    """
    wanted = set(methods)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            row = json.loads(line)
            if row["method"] in wanted and row["index"] < images:
                yield row


# --------------------------------------------------------------------------- identity and settings


def check_identity(options: EvaluateOptions, folder: Path) -> None:
    """Refuse to mix results of a different dataset or mask set into ``folder``."""
    path = folder / RUN_FILE
    identity = options.identity()
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise EvaluateError(f"{path}: unreadable ({err}); delete it to start over") from None
        for key in sorted(set(identity) | set(previous)):
            if identity.get(key) != previous.get(key):
                raise EvaluateError(
                    f"{folder}: holds an evaluation with {key}={previous.get(key)!r}, "
                    f"not {identity.get(key)!r}; use another output folder"
                )
        return
    io.write_text(path, json.dumps(identity, indent=1) + "\n")


def method_settings(method: InpaintMethod) -> dict[str, str]:
    """What a method's results depend on beyond its name (a DeepFill checkpoint and blend)."""
    settings = getattr(method, "settings", None)
    return settings() if callable(settings) else {}


def check_method_settings(
    output: Path, methods: dict[str, InpaintMethod], record: bool = True
) -> None:
    """Refuse to add results under a name the report holds with other settings, then record them.

    Without this a re-run with another ``--checkpoint`` file or ``--blend`` under the same name
    would skip the images already done and report a mix of two methods as one. ``record``:
    write the settings into ``output``'s methods.json (a shard report being merged is only read).
    """
    path = output / METHODS_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, json.JSONDecodeError) as err:
        raise EvaluateError(f"{path}: unreadable ({err}); delete it to start over") from None
    for name, method in methods.items():
        settings = method_settings(method)
        if name in recorded and recorded[name] != settings:
            differences = ", ".join(
                f"{key}={recorded[name].get(key)!r} there, {settings.get(key)!r} now"
                for key in sorted(set(settings) | set(recorded[name]))
                if settings.get(key) != recorded[name].get(key)
            )
            raise EvaluateError(
                f"{output}: holds results of {name!r} with other settings ({differences}); "
                "name it differently (--checkpoint NAME=FILE) or use another output folder"
            )
        recorded[name] = settings
    if record:
        io.write_text(path, json.dumps(recorded, indent=1, sort_keys=True) + "\n")


def sample_paths(output: Path, key: str, names: Sequence[str]) -> dict[str, Path]:
    """Where the comparison-sheet tiles of image ``key`` live: input, each method, ground truth."""
    name = mask_file_name(key)
    folder = output / SAMPLES_DIR
    paths = {"input": folder / "input" / name}
    paths.update({method: folder / "methods" / method / name for method in names})
    paths["ground truth"] = folder / "ground_truth" / name
    return paths


# --------------------------------------------------------------------------- the report


def run_config(
    options: EvaluateOptions, images: int, names: list[str], skipped: list[tuple[str, str]]
) -> dict:
    """metrics.json's ``config``: what was evaluated, on how many images, what was skipped."""
    return {
        **options.identity(),
        "limit": options.limit,
        "images": images,
        "methods": names,
        "skipped": [{"image": k, "reason": r} for k, r in skipped],
    }


def write_report(
    folder: Path, run: dict, images: int, sample_keys: Sequence[str]
) -> dict[str, MethodSummary]:
    """metrics.json, metrics.csv and the comparison sheet of ``folder``, from its results.jsonl.

    ``run``: the run's config (metrics.json's ``config``; its ``methods`` are the report's
    rows); ``images``: rows of images from this index on (past ``--limit``) are left out;
    ``sample_keys``: the images of the sheet, whose tiles are in ``folder/samples``.
    """
    names = run["methods"]
    log = folder / RESULTS_LOG
    summary = summarize(read_rows(log, names, images), names)
    write_metrics_json(folder / "metrics.json", run, summary, lambda: read_rows(log, names, images))
    write_metrics_csv(folder / "metrics.csv", summary, lambda: read_rows(log, names, images))
    if sample_keys:
        labels = ["input", *names, "ground truth"]
        tiles = [
            [io.read_rgb(path) for path in sample_paths(folder, key, names).values()]
            for key in sample_keys
        ]
        write_png(folder / "comparison.png", comparison_sheet(tiles, labels))
        io.write_text(
            folder / "comparison.html", comparison_html(tiles, labels, sample_keys, summary)
        )
    return summary
