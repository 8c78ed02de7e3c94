"""SIGKILL during ``prepare``, ``train``, ``fill`` and ``evaluate``, then the re-run.

The scenarios live in benchmarks/stress_interrupt.py (the documented stress run uses them at
scale): each command runs as a child process and is killed with SIGKILL at a seeded moment
after its first committed work. Afterwards every output file must open (only atomic_write's
temporary names and the documented resume files may hold partial work), and re-running the
command (``--resume`` for prepare and train, the default skip-existing for fill and
evaluate) must give results identical to an uninterrupted run.

The default run kills each command once; ``pytest -m slow`` adds three more seeds each.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "stress_interrupt.py"
_spec = importlib.util.spec_from_file_location("stress_interrupt", _PATH)
stress = importlib.util.module_from_spec(_spec)
sys.modules["stress_interrupt"] = stress  # dataclasses look their module up by name
_spec.loader.exec_module(stress)


@pytest.fixture(scope="module", params=sorted(stress.SCENARIOS))
def reference(request, tmp_path_factory):
    """Inputs and the uninterrupted run's fingerprint of one scenario (in process: no start-up)."""
    scenario = stress.SCENARIOS[request.param]
    work = tmp_path_factory.mktemp(scenario.name)
    inputs, snapshot = stress.prepare_scenario(scenario, work, in_process=True)
    return scenario, inputs, snapshot


def _kill_and_resume(reference, tmp_path: Path, seed: int) -> None:
    scenario, inputs, snapshot = reference
    # A quarter of the stress run's window keeps the kill well inside the run on a fast machine.
    delay = random.Random(f"{scenario.name}-{seed}").uniform(0.0, scenario.window / 4)
    result = stress.trial(scenario, inputs, snapshot, tmp_path / "a", delay, in_process=True)
    if not result.landed:
        # The child finished before the kill; kill a new one right after its first work.
        result = stress.trial(scenario, inputs, snapshot, tmp_path / "b", 0.0, in_process=True)
    assert result.landed, f"{scenario.name} finished before the kill could land"
    assert result.problems_after_kill == []
    assert result.problems_after_resume == []
    assert result.differences == [], f"differs from the uninterrupted run: {result.differences[:5]}"
    assert snapshot  # the comparison was not of two empty fingerprints
    for path in result.temporaries:  # only atomic_write's hidden names, never a final name
        assert path.name.startswith(".") and ".tmp" in path.name


def test_sigkill_then_rerun_matches_uninterrupted(reference, tmp_path):
    _kill_and_resume(reference, tmp_path, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_then_rerun_matches_uninterrupted_more_seeds(reference, tmp_path, seed):
    _kill_and_resume(reference, tmp_path, seed)


def test_check_file_finds_a_cut_file(tmp_path):
    """The checker itself: a truncated PNG and safetensors are reported, whole ones are not."""
    import numpy as np
    from PIL import Image
    from safetensors.numpy import save_file

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    save_file({"w": np.ones((4, 4), np.float32)}, str(tmp_path / "w.safetensors"))
    assert stress.check_file(tmp_path / "a.png") is None
    assert stress.check_file(tmp_path / "w.safetensors") is None
    for name in ("a.png", "w.safetensors"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        assert stress.check_file(tmp_path / name) is not None
    (tmp_path / "r.jsonl").write_text('{"a": 1}\n{"a": ')  # a cut last line is the documented case
    assert stress.check_file(tmp_path / "r.jsonl") is None
    (tmp_path / "r.jsonl").write_text('{"a": 1}\n{"a": \n')
    assert stress.check_file(tmp_path / "r.jsonl") is not None
