"""``inpaintkit prepare``: parse options, call :func:`inpaintkit.prepare.prepare_dataset`."""

from __future__ import annotations

import os
import re
import sys
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
from inpaintkit.prepare import (
    ENCODE_FORMATS,
    PrepareError,
    PrepareOptions,
    describe_dataset,
    prepare_dataset,
)


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


@click.command("prepare")
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
    help="raw uint8 pixels (fastest to load) or encoded bytes (several times smaller).",
)
@click.option(
    "--encode",
    "encode_format",
    type=click.Choice(ENCODE_FORMATS),
    default="png",
    show_default=True,
    help="Format for --store encoded when an image must be re-encoded (png is lossless).",
)
@click.option(
    "--quality",
    type=click.IntRange(1, 100),
    default=95,
    show_default=True,
    help="JPEG quality for --encode jpeg.",
)
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
    help="Decoding processes.",
)
@click.option(
    "--resume", is_flag=True,
    help="Continue an interrupted run from its .OUT.h5.partial file (a finished OUT.h5 is kept as is).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.h5 (refused otherwise).")
@click.option(
    "--info",
    is_flag=True,
    help="Print what a prepared file holds: inpaintkit prepare --info OUT.h5",
)
def prepare(
    paths: tuple[Path, ...],
    size: int | None,
    resize: str,
    resize_to: str | None,
    store: str,
    encode_format: str,
    quality: int,
    val_fraction: float,
    val_count: int | None,
    seed: int,
    train_list: str | None,
    val_list: str | None,
    max_pixels: int,
    workers: int,
    resume: bool,
    overwrite: bool,
    info: bool,
) -> None:
    """Pack images into one HDF5 file for training: inpaintkit prepare SRC OUT.h5

    SRC is a folder (searched recursively) or a file list (.txt/.flist, one path per line).
    Writes OUT.h5 plus train.txt and val.txt beside it. Unreadable images are skipped and
    named; the exit code is 0 (with a warning count) unless no image could be read.
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
        options = PrepareOptions(
            size=size if size is not None or resize != "shorter" else 256,
            resize=resize,
            resize_to=_parse_hw(resize_to),
            store=store,
            encode_format=encode_format,
            quality=quality,
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
        TextColumn("prepare"), BarColumn(), MofNCompleteColumn(), _RateColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )  # fmt: skip
    task = progress.add_task("prepare", total=None)
    start = time.perf_counter()
    try:
        with progress:
            summary = prepare_dataset(
                src, out, options, workers=workers, resume=resume, overwrite=overwrite,
                # escape(): a file name with [brackets] is not markup; soft_wrap: one line each.
                on_skip=lambda path, reason: progress.console.print(
                    f"[yellow]skipped[/] {escape(str(path))}: {escape(reason)}", soft_wrap=True
                ),
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )  # fmt: skip
    except PrepareError as err:
        console.print(f"[red]error:[/] {escape(str(err))}", soft_wrap=True)
        sys.exit(1)
    except OSError as err:  # e.g. OUT's folder cannot be made (a file is in the way), disk full
        console.print(f"[red]error:[/] cannot write {escape(str(out))}: {escape(str(err))}", soft_wrap=True)
        sys.exit(1)
    seconds = time.perf_counter() - start
    new = summary.written - summary.resumed
    warnings = len(summary.unreadable) + len(summary.duplicates)
    if resume and new == 0:
        console.print(f"{summary.output} is complete: {summary.written} images ({summary.train} train, "
                      f"{summary.val} val); nothing left to resume", soft_wrap=True)  # fmt: skip
    else:
        console.print(
            f"wrote {summary.output}: {summary.written} images ({summary.train} train, {summary.val} val)"
            + (f", {summary.resumed} from the interrupted run" if summary.resumed else "")
            + f"; {new / max(seconds, 1e-9):.1f} images/s over {seconds:.1f} s",
            soft_wrap=True,
        )
    if warnings:
        console.print(
            f"[yellow]{warnings} warning(s):[/] {len(summary.unreadable)} unreadable, "
            f"{len(summary.duplicates)} duplicate(s) skipped"
        )


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
