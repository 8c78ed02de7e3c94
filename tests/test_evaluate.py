"""evaluate on tiny folders and HDF5 files of scikit-image photos: numbers, resume, masks, sheet."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import click
import numpy as np
import pytest
import skimage.data
import torch
from click.testing import CliRunner
from PIL import Image

from inpaintkit import io
from inpaintkit.cli import main
from inpaintkit.evaluate import build_methods, evaluate, name_checkpoints
from inpaintkit.evaluate_options import EvaluateError, EvaluateOptions
from inpaintkit.geometry import resize_and_crop
from inpaintkit.methods import MeanColorMethod
from inpaintkit.metrics import METRICS, image_metrics
from inpaintkit.prepare import prepare_dataset
from inpaintkit.prepare_options import PrepareOptions
from inpaintkit.report import LABEL_HEIGHT
from inpaintkit.tensors import (
    composite,
    image_to_tensor,
    mask_to_tensor,
    tensor_to_image,
    uint8_to_unit,
)

SIZE = 32
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Four photos at 48 px on the shorter side (so evaluate really resizes and crops)."""
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        image = Image.fromarray(getattr(skimage.data, name)())
        scale = 48 / min(image.size)
        image.resize((round(image.width * scale), round(image.height * scale))).save(
            folder / f"{name}.png"
        )
    return folder


class Identity:
    """Returns its input: the hole stays as erased (0), known pixels stay exact."""

    name = "identity"

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return images.clone()


def floors() -> dict:
    return build_methods(floors=True, device="cpu")


def options(photos: Path, out: Path, **kw) -> EvaluateOptions:
    return EvaluateOptions(data=photos, output=out, size=SIZE, samples=2, warmup=False, **kw)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_results_agree_with_metrics_computed_directly(photos, tmp_path) -> None:
    out = tmp_path / "report"
    result = evaluate(options(photos, out), floors(), progress=False)
    assert result.images == 4 and result.computed == 8 and not result.skipped
    data = json.loads((out / "metrics.json").read_text())
    assert len(data["images"]) == 8
    ground_truth = {p.name: p for p in io.list_images(photos)}
    for row in data["images"]:
        if row["method"] != "mean-color":
            continue
        picture = Image.open(ground_truth[row["image"]]).convert("RGB")
        # The geometry evaluate documents: prepare's shorter-side resize and centre crop.
        image = np.array(resize_and_crop(picture, SIZE))  # prepare --resize shorter --size SIZE
        hole = io.read_mask(out / "masks" / Path(row["image"]).with_suffix(".png"))
        assert hole.shape == (SIZE, SIZE) and 0 < hole.mean() < 1
        x, m = image_to_tensor(image), mask_to_tensor(hole)
        filled = MeanColorMethod()(composite(x, torch.zeros_like(x), m), m)
        expected = image_metrics(
            uint8_to_unit(tensor_to_image(filled)), uint8_to_unit(image), m.double()
        )
        for spec in METRICS:
            assert row[spec.key] == pytest.approx(expected[spec.key].item(), rel=1e-9), spec.key
    # Summary = mean and population std of the per-image rows; the CSV says the same.
    for method in ("mean-color", "biharmonic"):
        values = [r["hole_psnr"] for r in data["images"] if r["method"] == method]
        assert data["summary"][method]["hole_psnr"]["mean"] == pytest.approx(np.mean(values))
        assert data["summary"][method]["hole_psnr"]["std"] == pytest.approx(np.std(values))
    with open(out / "metrics.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    means = {line["method"]: line for line in lines if line["row"] == "mean"}
    assert float(means["biharmonic"]["l1"]) == pytest.approx(
        data["summary"]["biharmonic"]["l1"]["mean"]
    )
    assert sum(line["row"] == "image" for line in lines) == 8
    # Floors are floors: diffusion beats a flat colour on this smooth-ish content on average.
    assert (
        data["summary"]["biharmonic"]["hole_l2"]["mean"]
        < data["summary"]["mean-color"]["hole_l2"]["mean"]
    )


def test_sheet_has_one_tile_per_sample_and_column(photos, tmp_path) -> None:
    out = tmp_path / "report"
    evaluate(options(photos, out), floors(), progress=False)
    sheet = io.read_rgb(out / "comparison.png")
    columns = 1 + 2 + 1  # input | mean-color | biharmonic | ground truth
    assert sheet.shape == (LABEL_HEIGHT + 2 * SIZE, columns * SIZE, 3)
    # The last column of the first row is that image's ground truth.
    truth = io.read_rgb(out / "samples" / "ground_truth" / "astronaut.png")
    assert np.array_equal(sheet[LABEL_HEIGHT : LABEL_HEIGHT + SIZE, 3 * SIZE :], truth)
    page = (out / "comparison.html").read_text()
    assert page.count("data:image/png;base64,") == 2 * columns
    assert not [p for p in out.rglob("*") if io.is_temporary(p)]


def test_resume_skips_finished_work_and_recovers_a_cut_line(photos, tmp_path) -> None:
    out = tmp_path / "report"
    first = evaluate(options(photos, out, limit=2), floors(), progress=False)
    assert first.computed == 4
    log = out / "results.jsonl"
    before = read_log(out)
    with open(log, "a") as f:
        f.write('{"image": "coffee.png", "index": 2, "meth')  # an interrupted write
    second = evaluate(options(photos, out), floors(), progress=False)
    assert second.computed == 4  # only the two new images, for both methods
    rows = read_log(out)
    assert rows[:4] == before
    # No pair twice.
    assert sorted((r["image"], r["method"]) for r in rows) == sorted(
        {(r["image"], r["method"]) for r in rows}
    )
    assert len(rows) == 8
    third = evaluate(options(photos, out), floors(), progress=False)
    assert third.computed == 0
    assert len(json.loads((out / "metrics.json").read_text())["images"]) == 8
    # A shorter --limit reports only its images, without forgetting the others.
    evaluate(options(photos, out, limit=1), floors(), progress=False)
    assert len(json.loads((out / "metrics.json").read_text())["images"]) == 2
    assert len(read_log(out)) == 8


def test_masks_are_written_and_reused_by_another_run(photos, tmp_path) -> None:
    first = tmp_path / "first"
    evaluate(
        options(photos, first, mask_kind="freeform", seed=3),
        {"mean-color": MeanColorMethod()},
        progress=False,
    )
    masks = sorted(p.name for p in (first / "masks").iterdir())
    assert masks == sorted(f"{name}.png" for name in PHOTOS)
    second = tmp_path / "second"
    evaluate(
        options(photos, second, masks=first / "masks"),
        {"mean-color": MeanColorMethod()},
        progress=False,
    )
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_log(first)) == strip(read_log(second))
    # A different mask set must not be mixed into the first report folder.
    with pytest.raises(EvaluateError, match="seed"):
        evaluate(
            options(photos, first, mask_kind="freeform", seed=4),
            {"mean-color": MeanColorMethod()},
            progress=False,
        )


def test_identity_on_empty_masks_has_zero_error(photos, tmp_path) -> None:
    masks = tmp_path / "empty"
    masks.mkdir()
    for name in PHOTOS:
        Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(masks / f"{name}.png")
    out = tmp_path / "report"
    result = evaluate(options(photos, out, masks=masks), {"identity": Identity()}, progress=False)
    stats = result.summary["identity"].metrics
    assert stats["l1"].mean == 0.0 and stats["l1"].count == 4
    assert stats["psnr"].count == 0 and stats["psnr"].infinite == 4
    assert stats["hole_l1"].undefined == 4
    assert stats["ssim"].mean == pytest.approx(1.0)
    row = read_log(out)[0]
    assert row["psnr"] == "inf" and row["hole_l1"] is None


def test_identity_is_penalised_in_the_hole(photos, tmp_path) -> None:
    # The method sees erased holes (0 in [-1, 1] = mid-grey), never the ground truth.
    result = evaluate(
        options(photos, tmp_path / "r", limit=1), {"identity": Identity()}, progress=False
    )
    assert result.summary["identity"].metrics["hole_l1"].mean > 5.0


def test_missing_mask_is_skipped_with_its_name(photos, tmp_path) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((SIZE, SIZE), 255, np.uint8)).save(masks / "astronaut.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(masks / "chelsea_mask.png")  # wrong size
    result = evaluate(
        options(photos, tmp_path / "r", masks=masks),
        {"mean-color": MeanColorMethod()},
        progress=False,
    )
    reasons = dict(result.skipped)
    assert set(reasons) == {"chelsea.png", "coffee.png", "rocket.png"}
    assert "5x5" in reasons["chelsea.png"] and "no mask found" in reasons["coffee.png"]
    assert result.summary["mean-color"].metrics["hole_l1"].count == 1


def test_hdf5_split(photos, tmp_path) -> None:
    h5 = tmp_path / "set.h5"
    prepare_dataset(photos, h5, PrepareOptions(size=SIZE, val_count=2, seed=0), workers=1)
    result = evaluate(
        EvaluateOptions(data=h5, output=tmp_path / "r", size=SIZE, samples=1, warmup=False),
        {"mean-color": MeanColorMethod()},
        progress=False,
    )
    rows = read_log(tmp_path / "r")
    val = (tmp_path / "set.val.txt").read_text().split()
    assert result.images == 2 and sorted(r["image"] for r in rows) == sorted(val)
    assert all(math.isfinite(r["hole_l1"]) for r in rows)


def test_cli(photos, tmp_path) -> None:
    out = tmp_path / "report"
    args = [
        "evaluate",
        str(photos),
        "-o",
        str(out),
        "--size",
        str(SIZE),
        "--limit",
        "2",
        "--samples",
        "1",
        "--quiet",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "mean-color" in result.output and "biharmonic" in result.output
    for name in (
        "metrics.json",
        "metrics.csv",
        "comparison.png",
        "comparison.html",
        "results.jsonl",
    ):
        assert (out / name).is_file()
    nothing = CliRunner().invoke(main, ["evaluate", str(photos), "-o", str(out), "--no-floors"])
    assert nothing.exit_code != 0 and "nothing to evaluate" in nothing.output


def test_patchmatch_runs_on_the_same_masks(photos, tmp_path) -> None:
    methods = build_methods(patchmatch=True, floors=True, device="cpu")
    result = evaluate(options(photos, tmp_path / "r", limit=2), methods, progress=False)
    assert list(result.summary) == ["mean-color", "biharmonic", "patchmatch"]
    rows = read_log(tmp_path / "r")
    assert {r["method"] for r in rows} == {"mean-color", "biharmonic", "patchmatch"}
    assert all(r["seconds"] > 0 for r in rows)
    assert methods["patchmatch"].patch_size is None  # the library default
    assert build_methods(patchmatch=True, patch_size=9)["patchmatch"].patch_size == 9


def test_checkpoints_are_named_by_stem_run_folder_or_explicitly(photos, tmp_path) -> None:
    from inpaintkit import checkpoint
    from inpaintkit.model.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    path = tmp_path / "tiny-model.safetensors"
    checkpoint.save_generator(path, Generator(GeneratorConfig(channels=4)))
    methods = build_methods([path], floors=False, device="cpu")
    assert list(methods) == ["tiny-model"]
    evaluate(options(photos, tmp_path / "r", limit=1), methods, progress=False)
    row = read_log(tmp_path / "r")[0]
    assert row["method"] == "tiny-model" and math.isfinite(row["hole_l1"])
    # Two runs' generator.safetensors: the stem is ambiguous, the run folders are not.
    runs = []
    for run in ("a", "b"):
        (tmp_path / "runs" / run).mkdir(parents=True)
        runs.append(tmp_path / "runs" / run / "generator.safetensors")
        runs[-1].write_bytes(path.read_bytes())
    a, b = runs
    assert [name for name, _ in name_checkpoints([a, b, path])] == ["a", "b", "tiny-model"]
    assert name_checkpoints([("best", a), b]) == [("best", a), ("b", b)]
    assert name_checkpoints([("best", a), path]) == [("best", a), ("tiny-model", path)]
    with pytest.raises(EvaluateError, match=r"named 'a' like .*NAME=FILE"):
        name_checkpoints([a, b, ("a", path)])
    with pytest.raises(EvaluateError, match="built-in"):
        name_checkpoints([("patchmatch", a)])
    (tmp_path / "runs" / "a" / "patchmatch.safetensors").write_bytes(path.read_bytes())
    assert name_checkpoints([tmp_path / "runs" / "a" / "patchmatch.safetensors"])[0][0] == "a"
    # The command line: FILE and NAME=FILE.
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(photos),
            "-o",
            str(out),
            "--size",
            str(SIZE),
            "--limit",
            "1",
            "--samples",
            "0",
            "--no-floors",
            "--quiet",
            "--device",
            "cpu",
            "--checkpoint",
            str(a),
            "--checkpoint",
            f"mine={b}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["config"]["methods"] == ["a", "mine"]
    missing = CliRunner().invoke(
        main, ["evaluate", str(photos), "-o", str(out), "--checkpoint", "x=nope.safetensors"]
    )
    assert missing.exit_code == 2 and "nope.safetensors: no such file" in missing.output


def test_blend_is_a_setting_a_report_never_mixes(photos, tmp_path) -> None:
    """--blend reaches every DeepFill method; a re-run under the same name with another blend
    (or checkpoint file) is refused instead of reporting a mix of both."""
    from inpaintkit import checkpoint
    from inpaintkit.model.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    checkpoint.save_generator(path, Generator(GeneratorConfig(channels=4)))
    blended = build_methods([path], floors=False, device="cpu")
    pasted = build_methods([("pasted", path)], floors=False, device="cpu", blends=["none"])
    assert blended["tiny"].blend == "poisson" and pasted["pasted"].blend == "none"
    out = tmp_path / "r"
    evaluate(options(photos, out, limit=2), blended, progress=False)
    evaluate(options(photos, out, limit=2), pasted, progress=False)  # another name: fine
    rows = {(row["image"], row["method"]): row for row in read_log(out)}
    assert {method for _, method in rows} == {"tiny", "pasted"}
    assert any(
        rows[(image, "tiny")]["hole_l1"] != rows[(image, "pasted")]["hole_l1"]
        for image, method in rows
        if method == "tiny"
    )
    recorded = json.loads((out / "methods.json").read_text())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert recorded["tiny"] == {"checkpoint_sha256": digest, "blend": "poisson"}
    evaluate(options(photos, out, limit=2), blended, progress=False)  # same settings: resumes
    mixed = build_methods([("tiny", path)], floors=False, device="cpu", blends=["none"])
    with pytest.raises(EvaluateError, match=r"'tiny' with other settings \(blend='poisson' there"):
        evaluate(options(photos, out, limit=2), mixed, progress=False)
    # Other weights written over the same file are another method too.
    checkpoint.save_generator(path, Generator(GeneratorConfig(channels=4)))
    with pytest.raises(EvaluateError, match="checkpoint_sha256="):
        evaluate(options(photos, out, limit=2), build_methods([path], floors=False), progress=False)
    # Both blends at once: two rows per DeepFill method, the pasted one named NAME-pasted.
    both = build_methods([path], floors=False, device="cpu", blends=["poisson", "none"])
    assert {name: m.blend for name, m in both.items()} == {"tiny": "poisson", "tiny-pasted": "none"}
    other = tmp_path / "other.safetensors"
    other.write_bytes(path.read_bytes())
    with pytest.raises(EvaluateError, match="would be named 'tiny-pasted' like another"):
        build_methods([path, ("tiny-pasted", other)], floors=False, blends=["poisson", "none"])
    with pytest.raises(EvaluateError, match="blends must be some of"):
        build_methods([path], blends=["seamless"])


def test_hdf5_without_val_falls_back_to_train_unless_split_is_given(photos, tmp_path) -> None:
    h5 = tmp_path / "photos.h5"
    prepare_dataset(photos, h5, PrepareOptions(size=SIZE), workers=1)  # prepare's default: no val
    args = ["evaluate", str(h5), "--size", str(SIZE), "--limit", "1", "--samples", "0"]
    fallback = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "r1")])
    assert fallback.exit_code == 0, fallback.output
    assert "━" not in fallback.stderr  # no progress bar when stderr is not a terminal
    (note,) = [line for line in fallback.stderr.splitlines() if "no val split" in line]
    assert "evaluating its 4 train images" in note
    assert json.loads((tmp_path / "r1" / "evaluation.json").read_text())["split"] == "train"
    asked = CliRunner().invoke(
        main, [*args, "--split", "val", "--no-progress", "-o", str(tmp_path / "r2")]
    )
    assert asked.exit_code == 1
    (line,) = [line for line in asked.stderr.splitlines() if line.startswith("Error: ")]
    assert f"{h5}: split 'val' is empty" in line
    assert "train 4, val 0, all 4" in line and "--split train" in line
    assert not (tmp_path / "r2").exists()


def test_a_method_failing_on_one_image_skips_that_image_not_the_run(photos, tmp_path) -> None:
    # PatchMatch cannot fill a hole covering the whole crop: that image is skipped (for every
    # method, so all are compared on the same images) and the others are still evaluated.
    masks = tmp_path / "masks"
    masks.mkdir()
    hole = np.zeros((SIZE, SIZE), np.uint8)
    hole[8:20, 8:20] = 255
    for name in PHOTOS:
        Image.fromarray(np.full_like(hole, 255) if name == "astronaut" else hole).save(
            masks / f"{name}.png"
        )
    out = tmp_path / "r"
    methods = build_methods(patchmatch=True, floors=True, device="cpu")
    result = evaluate(options(photos, out, masks=masks, limit=2), methods, progress=False)
    reasons = dict(result.skipped)
    assert set(reasons) == {"astronaut.png"} and "patchmatch failed" in reasons["astronaut.png"]
    assert {r["image"] for r in read_log(out)} == {"chelsea.png"}
    assert all(result.summary[m].metrics["hole_l1"].count == 1 for m in methods)
    assert (out / "comparison.png").is_file()


def test_a_bundled_model_is_named_by_its_name():
    from inpaintkit.checkpoint import DEFAULT_MODEL, default_checkpoint
    from inpaintkit.cli.evaluate import CheckpointParam

    assert CheckpointParam().convert(DEFAULT_MODEL, None, None) == (
        DEFAULT_MODEL,
        default_checkpoint(),
    )
    with pytest.raises(click.BadParameter, match="no such file"):
        CheckpointParam().convert("not-a-model", None, None)
