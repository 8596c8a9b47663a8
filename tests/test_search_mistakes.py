"""A search continued with a total it has reached, or against its own direction: one message,
exit 2, nothing run and nothing rewritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

optuna = pytest.importorskip("optuna")


@pytest.fixture
def study_of_two(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    study = optuna.create_study(
        storage=f"sqlite:///{sweep / 'optuna.db'}", study_name="lenet_optuna", direction="maximize"
    )
    for value in (0.5, 0.6):
        trial = study.ask({"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1)})
        study.tell(trial, value)
    return sweep


@pytest.mark.parametrize(
    ("extra", "phrases"),
    [
        (["hydra.sweeper.n_trials=2"], ["has 2 trials already", "hydra.sweeper.n_trials=12"]),
        (["hydra.sweeper.n_trials=1"], ["has 2 trials already", "none would run"]),
        (
            ["hydra.sweeper.n_trials=5", "trainer.monitor=val/loss"],
            ["is to maximize; this search asks to minimize"],
        ),
    ],
    ids=["total_reached", "total_below", "other_direction"],
)
def test_a_continued_search_that_cannot_run_says_why(study_of_two: Path, extra, phrases) -> None:
    tmp = study_of_two.parent
    done = run_cli(
        tmp, "-m", "hparams_search=lenet_optuna", f"hydra.sweep.dir={study_of_two}", *extra
    )
    err = " ".join(done.stderr.split())
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr, err
    for phrase in phrases:
        assert phrase in err
    assert sorted(p.name for p in study_of_two.iterdir()) == ["optuna.db"], "nothing written"
