"""fill and evaluate spread over processes: torchrun ranks, job-array shards, the shard merge.

Every split must add up to one process's run: the same bytes in every output, no output
written twice, nothing lost when a shard is killed and re-run, and a merged evaluate report
with one run's numbers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from click.testing import CliRunner
from conftest import child_env, cli_argv, files_below
from PIL import Image

from inpaintkit.checkpoint import save_generator
from inpaintkit.cli import main
from inpaintkit.cli.fill import fill_command
from inpaintkit.evaluate import build_methods, evaluate
from inpaintkit.evaluate_options import EvaluateError, EvaluateOptions
from inpaintkit.evaluate_shards import merge_shards as merge
from inpaintkit.io import is_temporary
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.sharding import Shard, ShardError, parse_shard, shard_of

# --------------------------------------------------------------------------- the split


def test_parse_shard_k_of_n_and_slurm_arrays() -> None:
    assert parse_shard("2/8") == Shard(2, 8) and parse_shard(" 0 / 1 ") == Shard(0, 1)
    assert str(Shard(2, 8)) == "2/8" and Shard(2, 8).name == "2-of-8"
    # --array=0-7, --array=1-8 (ids from 1) and --array=0-30:10 (a step): the task's position.
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == (
        Shard(3, 8)
    )
    one_based = {"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_COUNT": "8"}
    assert parse_shard("auto", {**one_based, "SLURM_ARRAY_TASK_MIN": "1"}) == Shard(7, 8)
    stepped = {"SLURM_ARRAY_TASK_ID": "20", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert parse_shard("auto", {**stepped, "SLURM_ARRAY_TASK_STEP": "10"}) == Shard(2, 4)
    for text, env, message in [
        ("8/8", {}, "0 <= K < N"),
        ("1/0", {}, "N >= 1"),
        ("a/b", {}, "expected K/N"),
        ("auto", {}, "SLURM_ARRAY_TASK_ID"),
        ("auto", one_based, "0 <= K < N"),  # ids 1-8 without the MIN would give 8/8
    ]:
        with pytest.raises(ShardError, match=message):
            parse_shard(text, env)


def test_shards_partition_any_keys_the_same_way_every_time() -> None:
    keys = [f"sub{i % 7}/photo_{i}.jpg" for i in range(300)]
    owners = [[k for k in keys if Shard(s, 3).owns(k)] for s in range(3)]
    assert sorted(sum(owners, [])) == sorted(keys)  # every key in exactly one shard
    assert all(len(part) > 60 for part in owners)  # and roughly a third each
    assert [shard_of(k, 3) for k in keys[:5]] == [1, 1, 1, 0, 1]  # pinned: not a salted hash()


# --------------------------------------------------------------------------- fill


def _photo(i: int, h: int, w: int) -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[9 * i : 9 * i + h, 7 * i : 7 * i + w])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """11 small photos of three sizes in two folders, masks beside (one missing), a tiny model."""
    root = tmp_path_factory.mktemp("fill")
    torch.manual_seed(0)
    save_generator(root / "tiny.safetensors", Generator(GeneratorConfig(channels=4)))
    for i in range(11):
        h, w = [(24, 24), (32, 40), (40, 32)][i % 3]
        rel = Path("sub" if i % 2 else ".") / f"p{i}.png"
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(i, h, w)).save(root / "images" / rel)
        hole = np.zeros((h, w), np.uint8)
        hole[h // 4 : h // 2 + 1, w // 3 : w // 2 + 2] = 255
        if i != 4:  # p4 has no mask: it fails, in every split
            (root / "masks" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(hole).save(root / "masks" / rel)
    return root


def _fill_args(root: Path, out: Path) -> list[str]:
    return [
        str(root / "images"),
        "--masks",
        str(root / "masks"),
        "-o",
        str(out),
        "--checkpoint",
        str(root / "tiny.safetensors"),
        "--device",
        "cpu",
        "--precision",
        "fp32",
    ]


@pytest.fixture(scope="module")
def single(folder) -> dict[str, bytes]:
    """One process's outputs (one thread, as every rank and shard below runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(fill_command, _fill_args(folder, folder / "single"))
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 1, result.output  # p4's missing mask
    assert "filled 10, skipped 0 (already done), failed 1" in result.output
    return _contents(folder / "single")


def _contents(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in files_below(out)}


def _torchrun(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS...``, one thread per rank, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + [str(a) for a in args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=300,
    )


# Run by torchrun in each rank: the CLI, recording every file this rank renames into place.
RANK_SCRIPT = """
import json, os, sys
renamed, replace = [], os.replace
def recording(src, dst, *args, **kwargs):
    replace(src, dst, *args, **kwargs)
    renamed.append(os.fspath(dst))
os.replace = recording
from inpaintkit.cli import main
try:
    main(sys.argv[2:])
finally:
    with open(f"{sys.argv[1]}/rank{os.environ['RANK']}.json", "w") as f:
        json.dump(renamed, f)
"""


def test_torchrun_two_ranks_write_each_output_once_as_one_process_does(folder, single, tmp_path):
    out = tmp_path / "out"
    # An output that exists already is skipped (and counted once), not written again.
    done = next(iter(single))
    (out / done).parent.mkdir(parents=True)
    (out / done).write_bytes(single[done])
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    run = _torchrun(tmp_path / "rank.py", tmp_path, "fill", *_fill_args(folder, out))
    output = run.stdout + run.stderr
    assert run.returncode != 0, output  # a file failed: exit 1, as one process
    assert output.count("filled 9, skipped 1 (already done), failed 1") == 1, output  # rank 0
    assert output.count("error: ") == 1 and "p4.png: no mask found" in output
    assert _contents(out) == single
    renamed = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    written = sorted(Path(p).relative_to(out).as_posix() for p in renamed[0] + renamed[1])
    assert written == sorted(set(single) - {done})  # each once, by one rank
    assert all(renamed)  # both ranks worked


def test_three_shards_write_each_output_once_as_one_process_does(
    folder, single, tmp_path, monkeypatch
):
    out, renamed = tmp_path / "out", []
    replace = os.replace

    def recording(src, dst, *args, **kwargs):
        replace(src, dst, *args, **kwargs)
        renamed.append(Path(dst).relative_to(out).as_posix())

    monkeypatch.setattr(os, "replace", recording)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    counts = []
    try:
        for k in range(3):
            result = CliRunner().invoke(
                fill_command, [*_fill_args(folder, out), "--shard", f"{k}/3"]
            )
            said = re.search(
                rf"shard {k}/3: filled (\d+), skipped (\d+) \(already done\), failed (\d+)",
                result.output,
            )
            assert said, result.output
            counts.append([int(n) for n in said.groups()])
            # Exit 1 for the shard holding the failed file only.
            assert result.exit_code == (1 if counts[-1][2] else 0), result.output
    finally:
        torch.set_num_threads(threads)
    assert np.sum(counts, axis=0).tolist() == [10, 0, 1]
    assert sorted(renamed) == sorted(single)  # each output once
    assert _contents(out) == single


def test_a_shard_killed_with_sigkill_then_rerun_loses_nothing(tmp_path):
    count, size = 24, 48
    photos, images = skimage.data.coffee(), tmp_path / "images"
    images.mkdir()
    for i in range(count):
        crop = np.ascontiguousarray(photos[5 * i : 5 * i + size, 11 * i : 11 * i + size])
        Image.fromarray(crop).save(images / f"{i:02d}.png")
    hole = np.zeros((size, size), np.uint8)
    hole[12:30, 14:34] = 255
    Image.fromarray(hole).save(tmp_path / "hole.png")
    args = ["--masks", tmp_path / "hole.png", "--method", "patchmatch", "--device", "cpu"]
    args = [*args, "--workers", "1", "--shard", "0/2"]
    out = tmp_path / "out"
    mine = [f"{i:02d}.png" for i in range(count) if Shard(0, 2).owns(f"{i:02d}.png")]
    child = subprocess.Popen(
        cli_argv("fill", images, "-o", out, *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    deadline = time.monotonic() + 120

    def finished() -> bool:  # a whole output, not only atomic_write's temporary
        return out.is_dir() and any(not is_temporary(p) for p in out.glob("*.png"))

    while not finished() and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    before = sorted(p.name for p in out.iterdir() if not is_temporary(p))
    assert 0 < len(before) < len(mine), "the shard finished before the kill; give it more images"

    rerun = CliRunner().invoke(main, ["fill", str(images), "-o", str(out), *map(str, args)])
    assert rerun.exit_code == 0, rerun.output
    assert f"shard 0/2: filled {len(mine) - len(before)}, skipped {len(before)}" in rerun.output
    assert sorted(p.name for p in files_below(out)) == mine  # no temporary left, none missing
    # The same bytes as the shard run whole, in one go.
    whole = tmp_path / "whole"
    again = CliRunner().invoke(main, ["fill", str(images), "-o", str(whole), *map(str, args)])
    assert again.exit_code == 0, again.output
    assert _contents(out) == _contents(whole)


# --------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Seven photos at 40 px on the shorter side, one of them all black (a PSNR of +inf)."""
    folder = tmp_path_factory.mktemp("photos")
    names = ("astronaut", "chelsea", "coffee", "rocket", "camera", "brick", "grass")
    for name in names:
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        scale = 40 / min(image.size)
        image.resize((round(image.width * scale), round(image.height * scale))).save(
            folder / f"{name}.png"
        )
    Image.new("RGB", (40, 40)).save(folder / "zblack.png")
    return folder


def _options(photos: Path, out: Path, **kw) -> EvaluateOptions:
    return EvaluateOptions(data=photos, output=out, size=32, samples=3, warmup=False, **kw)


def _without_seconds(value):
    """A metrics.json / CSV row with the timings (the one thing two runs never share) dropped."""
    if isinstance(value, dict):
        return {
            k: _without_seconds(v)
            for k, v in value.items()
            if k not in ("seconds", "seconds_per_image")
        }
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def test_merged_shard_reports_are_the_single_run_report(photos, tmp_path):
    methods = build_methods(floors=True, device="cpu")
    single = tmp_path / "single"
    evaluate(_options(photos, single, mask_kind="freeform", seed=3), methods, progress=False)
    sharded = tmp_path / "sharded"
    images = []
    for k in range(3):
        result = evaluate(
            _options(photos, sharded, mask_kind="freeform", seed=3, shard=Shard(k, 3)),
            methods,
            progress=False,
        )
        images.append(result.images)
        assert (sharded / "shards" / f"{k}-of-3" / "metrics.json").exists()
    assert sum(images) == 8 and all(images)  # the shards split the images

    merged = merge(_options(photos, sharded, mask_kind="freeform", seed=3), methods)
    assert merged.images == 8
    one, many = (json.loads((d / "metrics.json").read_text()) for d in (single, sharded))
    assert many["summary"]["mean-color"]["psnr"]["infinite"] == 1  # the black image counted
    assert _without_seconds(many) == _without_seconds(one)  # every number, to the last bit
    assert [r["image"] for r in many["images"]] == [r["image"] for r in one["images"]]
    for name in ("comparison.png", "evaluation.json", "methods.json"):
        assert (sharded / name).read_bytes() == (single / name).read_bytes(), name
    masks = sorted(p.relative_to(single).as_posix() for p in (single / "masks").rglob("*.png"))
    assert masks and all((sharded / m).read_bytes() == (single / m).read_bytes() for m in masks)

    # A shard without its report, or with other methods, is named, not merged over.
    (sharded / "shards" / "1-of-3" / "metrics.json").unlink()
    with pytest.raises(EvaluateError, match="shard 1/3 has not finished"):
        merge(_options(photos, sharded, mask_kind="freeform", seed=3), methods)
    with pytest.raises(EvaluateError, match="no shard reports"):
        merge(_options(photos, tmp_path / "nothing", mask_kind="freeform", seed=3), methods)


def test_evaluate_command_shard_auto_then_merge(photos, tmp_path):
    out = tmp_path / "report"
    base = ["evaluate", str(photos), "-o", str(out), "--size", "32", "--limit", "4", "--quiet"]
    for task in ("1", "2"):  # --array=1-2
        env = {"SLURM_ARRAY_TASK_ID": task, "SLURM_ARRAY_TASK_COUNT": "2"}
        env["SLURM_ARRAY_TASK_MIN"] = "1"
        result = CliRunner(env=env).invoke(main, [*base, "--shard", "auto"])
        assert result.exit_code == 0, result.output
        assert f"shards/{int(task) - 1}-of-2" in result.output
    result = CliRunner().invoke(main, [*base, "--merge-shards"])
    assert result.exit_code == 0, result.output
    assert "4 images, merged from the shards, 0 skipped" in result.output
    rows = json.loads((out / "metrics.json").read_text())["images"]
    assert [(r["index"], r["method"]) for r in rows] == [
        (i, m) for i in range(4) for m in ("mean-color", "biharmonic")
    ]
    both = CliRunner().invoke(main, [*base, "--merge-shards", "--shard", "0/2"])
    assert both.exit_code == 2 and "leave --shard out" in both.output


def test_evaluate_under_torchrun_is_shards_that_rank_0_merges(photos, tmp_path):
    args = ["--size", "32", "--limit", "5", "--samples", "2", "--quiet"]
    single = CliRunner().invoke(main, ["evaluate", str(photos), "-o", str(tmp_path / "one"), *args])
    assert single.exit_code == 0, single.output
    run = _torchrun("-m", "inpaintkit.cli", "evaluate", photos, "-o", tmp_path / "two", *args)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert output.count("5 images, merged from the shards, 0 skipped") == 1, output
    assert sorted(p.name for p in (tmp_path / "two" / "shards").iterdir()) == ["0-of-2", "1-of-2"]
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert _without_seconds(two) == _without_seconds(one)
