"""Typed recipes: YAML loading, base includes, overrides, errors naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inpaintkit.config import (
    RECIPE_DIR,
    ConfigError,
    Recipe,
    load_recipe,
    packaged_recipes,
    recipe_from_dict,
    recipe_to_yaml,
    resolve_recipe,
    to_dict,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_loads_and_round_trips(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe_from_dict(yaml.safe_load(recipe_to_yaml(recipe))) == recipe


def test_paper_values_and_baselines():
    full = load_recipe(RECIPES / "places2.yaml")
    assert (full.loss.l1_loss_alpha, full.loss.ae_loss_alpha, full.loss.coarse_l1_alpha) == (
        1.2,
        1.2,
        1.2,
    )
    assert (
        full.loss.gan_loss_alpha,
        full.loss.wgan_gp_lambda,
        full.loss.global_wgan_loss_alpha,
    ) == (0.001, 10.0, 1.0)
    assert (full.optimizer.lr, full.optimizer.betas, full.optimizer.critic_steps) == (
        1e-4,
        (0.5, 0.9),
        5,
    )
    assert (full.data.batch_size, full.data.image_size) == (16, 256)
    assert full == Recipe()  # the dataclass defaults are the paper's recipe, spelled out in YAML
    for dataset in ("places2", "celeba", "celebahq", "dtd", "imagenet"):
        a, b = (
            to_dict(load_recipe(RECIPES / f"{dataset}.yaml")),
            to_dict(load_recipe(RECIPES / f"{dataset}-baseline.yaml")),
        )
        assert a["model"].pop("contextual_attention") and not b["model"].pop("contextual_attention")
        assert b.pop("name") == f"{dataset}-baseline" and a.pop("name") == dataset
        assert a == b


def test_overrides_are_typed():
    recipe = load_recipe(
        RECIPES / "tiny.yaml",
        [
            "loss.gan_loss_alpha=2e-3",
            "optimizer.betas=[0.1, 0.2]",
            "data.random_flip=false",
            "schedule.steps=1_000",
            "masks.kind=mixed",
        ],
    )
    assert recipe.loss.gan_loss_alpha == 0.002 and recipe.optimizer.betas == (0.1, 0.2)
    assert (
        recipe.data.random_flip is False
        and recipe.schedule.steps == 1000
        and recipe.masks.kind == "mixed"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.gan_los_alpha=1", r"loss\.gan_los_alpha: unknown key"),
        ("data.batch_size=abc", r"data\.batch_size: expected int, got 'abc'"),
        ("data.random_crop=maybe", r"data\.random_crop: expected bool"),
        ("optimizer.betas=[0.5]", r"optimizer\.betas: expected 2 values"),
        ("loss.spatial_discount_mode=gauss", r"loss\.spatial_discount_mode: expected one of"),
        ("model.channels=3", r"model: channels must be an even number"),
        ("schedule.steps", r"expected key\.sub=value"),
        ("data.image_size=60", r"data\.image_size: 60 is not a positive multiple of 8"),
        ("loss.lattice_alpha=-1", r"loss\.lattice_alpha: must be >= 0"),
        ("loss.feature_matching_alpha=-1", r"loss\.feature_matching_alpha: must be >= 0"),
        ("loss.periodicity_alpha=-1", r"loss\.periodicity_alpha: must be >= 0"),
        ("loss.detail_excess_alpha=-1", r"loss\.detail_excess_alpha: must be >= 0"),
        ("loss.chroma_excess_alpha=-1", r"loss\.chroma_excess_alpha: must be >= 0"),
        ("loss.detail_deficit_alpha=-1", r"loss\.detail_deficit_alpha: must be >= 0"),
        ("loss.detail_deficit_fraction=-1", r"loss\.detail_deficit_fraction: must be >= 0"),
        ("loss.flat_gate_alpha=-1", r"loss\.flat_gate_alpha: must be >= 0"),
        ("loss.flat_gate_detail=-1", r"loss\.flat_gate_detail: must be >= 0"),
        ("loss.flat_gate_alpha=0.1", r"loss\.flat_gate_alpha: needs model\.noise_gates"),
        ("loss.lattice_periods=[8, 1]", r"loss\.lattice_periods: must be periods of at least 2 px"),
        ("loss.lattice_periods=[]", r"loss\.lattice_periods: must be periods of at least 2 px"),
        (
            "schedule.lr_cooldown_steps=1001",
            r"schedule\.lr_cooldown_steps: must be in 0\.\.schedule",
        ),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(RECIPES / "tiny.yaml", [override])


def test_file_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: data\.batch_sise: unknown key"):
        load_recipe(bad)
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_recipe(bad)
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_recipe(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")


def test_base_include_merges_sections(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\ndata:\n  batch_size: 4\n  image_size: 64\ncritics:\n  local_size: 32\n"
    )
    (tmp_path / "top.yaml").write_text("base: base.yaml\nname: top\ndata:\n  batch_size: 8\n")
    recipe = load_recipe(tmp_path / "top.yaml")
    assert (recipe.name, recipe.data.batch_size, recipe.data.image_size) == ("top", 8, 64)


def test_recipes_ship_in_the_package_and_resolve_by_name(tmp_path, monkeypatch):
    # The repository's recipes/ is the packaged folder, so a non-editable install has them all.
    assert RECIPES.resolve() == RECIPE_DIR.resolve()
    assert RECIPE_DIR.parent.name == "inpaintkit"
    monkeypatch.chdir(tmp_path)  # names work from any folder
    assert resolve_recipe("places2") == RECIPE_DIR / "places2.yaml"
    assert resolve_recipe("tiny.yaml") == RECIPE_DIR / "tiny.yaml"
    assert load_recipe("default-baseline").model.contextual_attention is False
    # A file of that name in the working folder wins over the packaged one.
    own = tmp_path / "places2.yaml"
    own.write_text("base: " + str(RECIPE_DIR / "places2.yaml") + "\nname: mine\n")
    assert load_recipe("places2.yaml").name == "mine"
    with pytest.raises(
        ConfigError, match="no such recipe file, nor a packaged recipe .*places2.*tiny"
    ):
        resolve_recipe("nosuch")
    with pytest.raises(ConfigError, match="nor a packaged recipe"):
        resolve_recipe("sub/tiny.yaml")  # a path that does not exist is not looked up by name


def test_every_packaged_recipe_has_a_one_line_description():
    recipes = packaged_recipes()
    assert (
        set(recipes)
        == {p.stem for p in RECIPE_DIR.glob("*.yaml")}
        >= {"places2", "default", "tiny"}
    )
    for name, description in recipes.items():
        assert description and description.endswith(".") and "\n" not in description, name


def test_train_cli_lists_recipes_and_takes_steps_and_batch_size(monkeypatch):
    from click.testing import CliRunner

    import inpaintkit.cli.train as cli_train
    from inpaintkit.cli import main

    listing = CliRunner().invoke(main, ["train", "--list-recipes"])
    assert listing.exit_code == 0
    assert [line.split()[0] for line in listing.output.splitlines()] == list(packaged_recipes())
    assert "KEY.SUB=VALUE" in CliRunner().invoke(main, ["train", "--help"]).output
    seen = {}

    def fake_train(config, data, out, **kwargs):
        seen["recipe"] = config
        raise cli_train.TrainingError("stop here")

    monkeypatch.setattr(cli_train, "train", fake_train)
    result = CliRunner().invoke(
        main,
        [
            "train",
            "tiny",
            "optimizer.lr=0.5",
            "--data",
            __file__,
            "--out",
            "x",
            "--steps",
            "17",
            "--batch-size",
            "3",
        ],
    )
    assert result.exit_code == 1 and "stop here" in result.output
    recipe = seen["recipe"]
    assert (recipe.schedule.steps, recipe.data.batch_size, recipe.optimizer.lr) == (17, 3, 0.5)
