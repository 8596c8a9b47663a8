"""The benchmark scripts still drive dlexp's current API (they reach into the runners).

Not a timing test: each script's dlexp side runs one short epoch, so a refactor that breaks a
benchmark fails here instead of the next time someone measures.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env, read_jsonl

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


def test_short_run_splits_both_runs_into_the_same_parts(tmp_path):
    short_run = importlib.import_module("short_run")
    env = cli_env(tmp_path)
    overrides = ["trainer.epochs=1", "trainer.limit_train_batches=3", "trainer.progress=none"]
    dlexp = short_run.phased(overrides, env, tmp_path)  # also writes the digits' cache
    assert set(dlexp) == {name for name, _, _ in short_run.PHASES} | set(short_run.SPLIT)
    assert all(seconds >= 0 for seconds in dlexp.values()), dlexp
    assert sum(dlexp[part] for part in short_run.SPLIT[:3]) == pytest.approx(dlexp["whole"])
    script = Path(short_run.__file__).resolve()
    plain = short_run.plain_phases([sys.executable, str(script), "--plain", "--epochs=1"], env)
    assert set(plain) == set(short_run.SPLIT) and all(s > 0 for s in plain.values()), plain
