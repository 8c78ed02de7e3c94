"""``inpaintkit prepare``: parse options, call :func:`inpaintkit.prepare.prepare_dataset`."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from inpaintkit import io
from inpaintkit.prepare import PrepareSummary, describe_dataset, prepare_dataset
from inpaintkit.prepare_options import PrepareError, PrepareOptions, parse_encode


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} img/s" if speed else "   -- img/s")


def _parse_hw(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX×,]\s*(\d+)\s*", value)
    if not match:
        raise click.BadParameter(
            f"expected HxW such as 315x256, got {value!r}", param_hint="--resize-to"
        )
    return int(match.group(1)), int(match.group(2))


@click.command("prepare", short_help="Pack images into an HDF5 file with train/val splits.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--size",
    type=click.IntRange(min=1),
    help="Output side S: centre crop S x S (default 256 with --resize shorter).",
)
@click.option(
    "--resize",
    type=click.Choice(["shorter", "celeba", "fixed", "none"]),
    default="shorter",
    show_default=True,
    help="shorter: shorter side to S, then centre crop; celeba: to 315x256 (HxW, appendix A), "
    "then a centre crop only if --size is given (leave it out: training takes random 256x256 crops, "
    "as the paper); fixed: to --resize-to, then crop to --size if given; none: keep sizes.",
)
@click.option("--resize-to", help="HxW for --resize fixed, e.g. 315x256.")
@click.option(
    "--store",
    type=click.Choice(["raw", "encoded"]),
    default="raw",
    show_default=True,
    help="raw uint8 pixels (fastest to load) or encoded file bytes (several times smaller).",
)
@click.option(
    "--encode",
    default="png",
    show_default=True,
    metavar="png|webp|jpeg:Q|webp:Q",
    help="With --store encoded, how images whose pixels changed (resized, cropped, rotated, not "
    "8-bit RGB) are stored: png or webp (lossless), jpeg:Q or webp:Q (lossy, quality Q 1-100; "
    "jpeg = jpeg:95). JPEG/PNG/WebP files that need no change are stored as their own bytes.",
)
# Deprecated spelling of --encode jpeg:Q, kept working.
@click.option("--quality", type=click.IntRange(1, 100), hidden=True)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    show_default=True,
    help="Share of images for the val split, chosen by --seed.",
)
@click.option(
    "--val-count",
    type=click.IntRange(min=0),
    help="Exact number of val images (overrides --val-fraction).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option(
    "--train-list",
    type=click.Path(exists=True, dir_okay=False),
    help="File list (.txt/.flist) of the train split; with --val-list, replaces SRC.",
)
@click.option(
    "--val-list", type=click.Path(exists=True, dir_okay=False), help="File list of the val split."
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=io.DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse larger images (decompression bombs).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default=True,
    help="Processes decoding and resizing images (default: all CPU cores); one process writes.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted (even killed) run from the parts it committed in .OUT.h5.parts/ "
    "(a finished OUT.h5 is kept as is).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.h5 (refused otherwise).")
@click.option(
    "--quiet", is_flag=True, help="No progress bar (there is none when stderr is not a terminal)."
)
@click.option(
    "--info",
    is_flag=True,
    help="Print what a prepared file holds: inpaintkit prepare --info OUT.h5",
)
def prepare_command(
    paths: tuple[Path, ...],
    size: int | None,
    resize: str,
    resize_to: str | None,
    store: str,
    encode: str,
    quality: int | None,
    val_fraction: float,
    val_count: int | None,
    seed: int,
    train_list: str | None,
    val_list: str | None,
    max_pixels: int,
    workers: int,
    resume: bool,
    overwrite: bool,
    quiet: bool,
    info: bool,
) -> None:
    """Pack images into one HDF5 file for training: inpaintkit prepare SRC OUT.h5

    SRC is a folder (searched recursively) or a file list (.txt/.flist, one path per line).
    Writes OUT.h5 plus its key lists OUT.train.txt and OUT.val.txt beside it. Unreadable
    images are skipped and named; the exit code is 0 (with a warning count) unless no image
    could be read.
    """
    console = Console(stderr=True)
    if info:
        if len(paths) != 1:
            raise click.UsageError(
                "--info takes exactly one file: inpaintkit prepare --info OUT.h5"
            )
        _print_info(paths[0])
        return
    if not paths or len(paths) > 2:
        raise click.UsageError("expected SRC OUT.h5 (or OUT.h5 with --train-list/--val-list)")
    src, out = (paths[0], paths[1]) if len(paths) == 2 else (None, paths[0])
    if resize == "celeba":
        resize, resize_to = "fixed", "315x256"
    try:
        if quality is not None:
            encode = _fold_quality(encode, quality)
            console.print(
                f"--quality is deprecated: use --encode {encode}", markup=False, highlight=False
            )
        options = PrepareOptions(
            size=size if size is not None or resize != "shorter" else 256,
            resize=resize,
            resize_to=_parse_hw(resize_to),
            store=store,
            encode=encode,
            val_fraction=val_fraction,
            val_count=val_count,
            seed=seed,
            max_pixels=max_pixels,
            train_list=train_list,
            val_list=val_list,
        )
    except PrepareError as err:
        raise click.UsageError(str(err)) from None

    progress = Progress(
        TextColumn("prepare"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=quiet or not console.is_terminal,  # no bar in logs
    )
    task = progress.add_task("prepare", total=None)

    def on_progress(done: int, total: int) -> None:
        # The bar starts with the first report, so a refusal (OUT exists, no images) comes first.
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)

    start = time.perf_counter()
    try:
        summary = prepare_dataset(
            src,
            out,
            options,
            workers=workers,
            resume=resume,
            overwrite=overwrite,
            # escape(): a file name with [brackets] is not markup; soft_wrap: one line each.
            on_skip=lambda path, reason: progress.console.print(
                f"[yellow]skipped[/] {escape(str(path))}: {escape(reason)}", soft_wrap=True
            ),
            on_progress=on_progress,
        )
    except PrepareError as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:  # e.g. OUT's folder cannot be made (a file is in the way), disk full
        raise click.ClickException(f"cannot write {out}: {err}") from None
    finally:
        progress.stop()
    seconds = time.perf_counter() - start
    new = summary.written - summary.resumed
    warnings = len(summary.unreadable) + len(summary.duplicates)
    if resume and new == 0:
        console.print(
            f"{summary.output} is complete: {summary.written} images ({summary.train} train, "
            f"{summary.val} val); nothing left to resume",
            soft_wrap=True,
        )
    else:
        console.print(
            f"wrote {summary.output}: {summary.written} images ({summary.train} train, {summary.val} val)"
            + (f", {summary.resumed} from the interrupted run" if summary.resumed else "")
            + f"; {new / max(seconds, 1e-9):.1f} images/s over {seconds:.1f} s",
            soft_wrap=True,
        )
        if new:
            console.print(
                _storage_line(summary, options), markup=False, highlight=False, soft_wrap=True
            )
    if warnings:
        console.print(
            f"[yellow]{warnings} warning(s):[/] {len(summary.unreadable)} unreadable, "
            f"{len(summary.duplicates)} duplicate(s) skipped"
        )


def _fold_quality(encode: str, quality: int) -> str:
    """The deprecated ``--encode jpeg --quality Q`` as ``--encode jpeg:Q``."""
    try:
        fmt, _ = parse_encode(encode)
    except PrepareError as err:
        raise click.UsageError(str(err)) from None
    if ":" in encode or fmt == "png":
        raise click.UsageError(
            f"--quality {quality} does not apply to --encode {encode}; "
            "give the quality in --encode, e.g. --encode jpeg:90"
        )
    return f"{fmt}:{quality}"


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"


def _storage_line(summary: PrepareSummary, options: PrepareOptions) -> str:
    """How many bytes this run stored for how many source bytes, and how."""
    ratio = summary.stored_bytes / max(summary.source_bytes, 1)
    new = summary.written - summary.resumed
    if options.store == "raw":
        how = "raw pixels"
    else:
        encoded = new - summary.kept_original
        how = f"{summary.kept_original} of {new} as their own file bytes, {encoded} encoded as {options.encode}"
    line = (
        f"stored {_megabytes(summary.stored_bytes)} for {_megabytes(summary.source_bytes)} of source files "
        f"({ratio:.2f}x the source size; {how})"
    )
    if options.store == "encoded" and ratio > 1 and ":" not in options.encode:
        line += "; lossy --encode jpeg:95 or webp:90 stores less"
    return line


def _print_info(path: Path) -> None:
    try:
        info = describe_dataset(path)
    except PrepareError as err:
        raise click.ClickException(str(err)) from None
    table = Table(title=str(path), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in info.items():
        table.add_row(key, str(value))
    Console().print(table)
