"""The benchmark scripts still drive dlexp's current API (they reach into the runners).

Not a timing test: each script's dlexp side runs one short epoch, so a refactor that breaks a
benchmark fails here instead of the next time someone measures.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.conftest import read_jsonl

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_every_benchmark_imports(script):
    module = importlib.import_module(script)
    assert script == "common" or callable(getattr(module, "main", None)), f"{script} has no main()"


def test_parity_drives_a_classification_epoch(tmp_path):
    parity = importlib.import_module("parity")
    run = parity.make_run("cpu", 512, False, tmp_path / "run")
    assert parity.dlexp_epoch(run) > 0
    assert run.state.step == len(run.task.data.train) == 8  # 3,600 training digits / 512
    steps = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "step"]
    assert steps and steps[-1]["step"] == 8
    run.logger.close()


def test_parity_gan_drives_a_gan_epoch(tmp_path):
    parity_gan = importlib.import_module("parity_gan")
    run = parity_gan.make_run("gan", 256, tmp_path / "run")
    assert parity_gan.dlexp_epoch(run) > 0
    assert run.state.step == len(run.task.loader) > 0 and run.state.g_steps == run.state.step
    run.logger.close()
