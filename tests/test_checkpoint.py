"""Generator checkpoints: round trip, fp16, and every refusal (one line naming the file)."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from inpaintkit import checkpoint
from inpaintkit.checkpoint import (
    BUNDLED_MODELS,
    DEFAULT_MODEL,
    CheckpointError,
    default_checkpoint,
    load_generator,
    read_metadata,
    resolve_checkpoint,
    save_generator,
)
from inpaintkit.model.generator import Generator, GeneratorConfig

CONFIG = GeneratorConfig(channels=4)


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(CONFIG).eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    image = torch.rand(1, 3, 32, 40) * 2 - 1
    mask = torch.zeros(1, 1, 32, 40)
    mask[..., 8:20, 10:30] = 1
    return image, mask


def header(config: dict | None = None, **extra: str) -> dict[str, str]:
    config = dataclasses.asdict(CONFIG) if config is None else config
    return {
        "format": "inpaintkit.generator",
        "format_version": "1",
        "config": json.dumps(config),
        **extra,
    }


def state(generator: Generator) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in generator.state_dict().items()}


def refused(path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        load_generator(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_round_trip_identical_outputs(tmp_path, generator):
    path = tmp_path / "g.safetensors"
    save_generator(path, generator, metadata={"step": "1200", "recipe": "places2"})
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # no temp file left behind
    loaded = load_generator(path)
    assert loaded.config == CONFIG and not loaded.training
    image, mask = inputs()
    with torch.no_grad():
        a, b = generator(image, mask), loaded(image, mask)
    assert torch.equal(a.refined, b.refined) and torch.equal(a.coarse, b.coarse)
    meta = read_metadata(path)
    assert meta["step"] == "1200" and meta["format"] == "inpaintkit.generator"
    assert json.loads(meta["config"]) == dataclasses.asdict(CONFIG)


def test_round_trip_baseline(tmp_path):
    g = Generator(GeneratorConfig(channels=4, contextual_attention=False))
    save_generator(tmp_path / "b.safetensors", g)
    loaded = load_generator(tmp_path / "b.safetensors")
    assert loaded.refine.attention is None
    for k, v in g.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_fp16_weights_are_cast_to_fp32(tmp_path, generator):
    half = {k: v.half() for k, v in state(generator).items()}
    save_file(half, str(tmp_path / "h.safetensors"), metadata=header())
    loaded = load_generator(tmp_path / "h.safetensors")
    for k, v in loaded.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, half[k].float())


def test_save_rejects_reserved_or_non_string_metadata(tmp_path, generator):
    with pytest.raises(ValueError, match="reserved"):
        save_generator(tmp_path / "x.safetensors", generator, metadata={"config": "{}"})
    with pytest.raises(TypeError, match="str"):
        save_generator(tmp_path / "x.safetensors", generator, metadata={"step": 3})
    assert list(tmp_path.iterdir()) == []


def test_refuses_torch_pt_without_unpickling(tmp_path, generator):
    path = tmp_path / "model.pt"
    # The fixture is written by torch; it is never read back.
    torch.save(generator.state_dict(), path)
    refused(path, "pickle")


def test_refuses_raw_pickle(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    refused(path, "pickle")


def test_refuses_truncated_and_empty_files(tmp_path, generator):
    path = tmp_path / "g.safetensors"
    save_generator(path, generator)
    blob = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(blob[: len(blob) // 2])
    refused(tmp_path / "cut.safetensors", "safetensors")
    (tmp_path / "head.safetensors").write_bytes(blob[:5])
    refused(tmp_path / "head.safetensors", "safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    refused(tmp_path / "empty.safetensors", "safetensors")
    refused(tmp_path / "missing.safetensors", "no such")


def test_refuses_foreign_or_future_format(tmp_path, generator):
    save_file(state(generator), str(tmp_path / "plain.safetensors"))
    refused(tmp_path / "plain.safetensors", "not an inpaintkit generator")
    save_file(
        state(generator),
        str(tmp_path / "v2.safetensors"),
        metadata={**header(), "format_version": "2"},
    )
    refused(tmp_path / "v2.safetensors", "format_version")


def test_a_checkpoint_from_before_the_paste_option_pastes_with_the_box(tmp_path, generator):
    config = {k: v for k, v in dataclasses.asdict(CONFIG).items() if k != "attention_paste"}
    path = tmp_path / "old.safetensors"
    save_file(state(generator), str(path), metadata=header(config))
    assert load_generator(path).config.attention_paste == "box"


def test_a_checkpoint_from_before_the_upsample_option_resizes_by_nearest(tmp_path, generator):
    config = {k: v for k, v in dataclasses.asdict(CONFIG).items() if k != "upsample"}
    path = tmp_path / "old.safetensors"
    save_file(state(generator), str(path), metadata=header(config))
    assert load_generator(path).config.upsample == "nearest"


def test_a_checkpoint_from_before_the_noise_inputs_has_none(tmp_path, generator):
    config = {k: v for k, v in dataclasses.asdict(CONFIG).items() if k != "noise_inputs"}
    path = tmp_path / "old.safetensors"
    save_file(state(generator), str(path), metadata=header(config))
    assert load_generator(path).config.noise_inputs is False


def test_noise_strengths_round_trip(tmp_path):
    torch.manual_seed(2)
    noisy = Generator(dataclasses.replace(CONFIG, noise_inputs=True)).eval()
    for strength in noisy.refine.noise.strengths:
        strength.data.uniform_(-1, 1)
    path = tmp_path / "noisy.safetensors"
    save_generator(path, noisy)
    loaded = load_generator(path)
    assert loaded.config.noise_inputs
    for a, b in zip(loaded.refine.noise.strengths, noisy.refine.noise.strengths, strict=True):
        assert torch.equal(a, b)
    image, mask = inputs()
    with torch.no_grad():
        assert torch.equal(loaded(image, mask).refined, noisy(image, mask).refined)


def test_refuses_bad_config(tmp_path, generator):
    config = dataclasses.asdict(CONFIG)
    cases = {
        "missing": (
            {k: v for k, v in config.items() if k != "attention_rate"},
            "missing keys: attention_rate",
        ),
        "unknown": ({**config, "dropout": 0.1}, "dropout: unknown key"),
        "type": ({**config, "channels": "many"}, "channels"),
        "value": ({**config, "channels": 3}, "even"),
    }
    for name, (bad, match) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(state(generator), str(path), metadata=header(bad))
        refused(path, match)
    path = tmp_path / "json.safetensors"
    save_file(state(generator), str(path), metadata={**header(), "config": "{not json"})
    refused(path, "not valid JSON")
    path = tmp_path / "noconfig.safetensors"
    save_file(
        state(generator), str(path), metadata={k: v for k, v in header().items() if k != "config"}
    )
    refused(path, "no 'config'")


def test_refuses_wrong_missing_or_extra_tensors(tmp_path, generator):
    tensors = state(generator)
    name = "coarse.encoder.0.conv.weight"

    wrong = dict(tensors, **{name: torch.zeros(3, 3)})
    save_file(wrong, str(tmp_path / "shape.safetensors"), metadata=header())
    message = refused(tmp_path / "shape.safetensors", "shape")
    assert name in message

    missing = {k: v for k, v in tensors.items() if k != name}
    save_file(missing, str(tmp_path / "missing.safetensors"), metadata=header())
    assert name in refused(tmp_path / "missing.safetensors", "missing tensors")

    extra = dict(tensors, **{"refine.extra.weight": torch.zeros(2)})
    save_file(extra, str(tmp_path / "extra.safetensors"), metadata=header())
    refused(tmp_path / "extra.safetensors", "unexpected tensors")

    # Weights of an attention model under a baseline config: the attention tensors are unexpected.
    baseline = dataclasses.asdict(dataclasses.replace(CONFIG, contextual_attention=False))
    save_file(tensors, str(tmp_path / "mismatch.safetensors"), metadata=header(baseline))
    refused(tmp_path / "mismatch.safetensors", "unexpected tensors")

    ints = dict(tensors, **{name: torch.zeros_like(tensors[name], dtype=torch.int32)})
    save_file(ints, str(tmp_path / "int.safetensors"), metadata=header())
    refused(tmp_path / "int.safetensors", "non-float")


def test_default_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(
        checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "weights" / "deepfill_v1.safetensors"
    )
    assert default_checkpoint() is None
    save_generator(tmp_path / "weights" / "deepfill_v1.safetensors", Generator(CONFIG))
    assert default_checkpoint() == tmp_path / "weights" / "deepfill_v1.safetensors"
    # load_generator() with no path is the packaged model.
    loaded = load_generator()
    assert loaded.config == CONFIG
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="no default model at .*--checkpoint FILE"):
        load_generator()


def test_bundled_models_resolve_by_name(tmp_path, monkeypatch):
    assert DEFAULT_MODEL in BUNDLED_MODELS
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(checkpoint, "BUNDLED_MODELS", {"smooth": "a.safetensors"})
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "weights" / "a.safetensors")
    with pytest.raises(CheckpointError, match="bundled model 'smooth' is missing"):
        resolve_checkpoint("smooth")
    save_generator(tmp_path / "weights" / "a.safetensors", Generator(CONFIG))
    assert resolve_checkpoint("smooth") == tmp_path / "weights" / "a.safetensors"
    assert resolve_checkpoint(None) == tmp_path / "weights" / "a.safetensors"
    other = tmp_path / "other.safetensors"
    save_generator(other, Generator(CONFIG))
    assert resolve_checkpoint(other) == other and resolve_checkpoint(str(other)) == other
    # A file named like a model, in the working directory, is that file.
    monkeypatch.chdir(tmp_path)
    save_generator(tmp_path / "smooth", Generator(CONFIG))
    assert resolve_checkpoint("smooth") == tmp_path.joinpath("smooth").relative_to(tmp_path)
    with pytest.raises(
        CheckpointError, match=r"^sharp: no such file, and not a bundled model \(smooth\)$"
    ):
        resolve_checkpoint("sharp")


def test_the_packaged_default_model_is_there_by_name():
    assert resolve_checkpoint(DEFAULT_MODEL) == default_checkpoint() is not None
    assert load_generator(resolve_checkpoint(DEFAULT_MODEL)).config.contextual_attention


def test_save_in_half_precision(generator, tmp_path):
    path = tmp_path / "half.safetensors"
    save_generator(path, generator, metadata={"step": "7"}, dtype=torch.float16)
    full = tmp_path / "full.safetensors"
    save_generator(full, generator)
    assert path.stat().st_size < 0.55 * full.stat().st_size
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    loaded = load_generator(path)
    for name, value in generator.state_dict().items():
        # fp16 keeps 11 significant bits: relative error at most 2^-11 (weights are far from fp16's range limits).
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=2**-11, atol=1e-7)
    assert read_metadata(path)["step"] == "7"
