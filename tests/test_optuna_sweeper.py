"""The Optuna sweeper: a search, a continued study, pruning, failures, parallel trials.

The CLI tests run `dlexp -m hparams_search=...` on tiny jobs and read the study back from its
SQLite file in the sweep folder. The others check the search-space syntax, the shipped search
configs, and the job's side of the contract (`dlexp.sweeps.trial`) in a process of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import OmegaConf

from dlexp.config.resolvers import to_plain
from dlexp.sweeps import trial
from dlexp.tasks.registry import validate
from tests import conftest
from tests.conftest import cli_env, run_cli

optuna = pytest.importorskip("optuna")
from hydra_plugins.dlexp_optuna_sweeper.optuna_sweeper import parse_space  # noqa: E402

# trainer=debug-sized jobs: two epochs of 3 batches
TINY = ("trainer=debug", "trainer.epochs=2", "trainer.limit_train_batches=3")
TINY += ("trainer.limit_val_batches=1", "trainer.test_after_fit=false", "trainer.progress=none")
# test-only searches, in a config folder of the test's own (--config-dir)
PRUNE_ALL = """# @package _global_
defaults:
  - lenet_optuna
  - override /hydra/sweeper/pruner: threshold
hydra:
  sweeper:
    pruner:
      lower: 2.0  # val/acc never reaches 2: every trial is pruned at its first epoch
"""
FAIL_ALL = """# @package _global_
defaults:
  - lenet_optuna
hydra:
  sweeper:
    params:
      optim.lr: choice(-1.0, -2.0)  # rejected by every job's config check: NaN, a failed trial
"""


def search_configs(tmp_path: Path) -> Path:
    folder = tmp_path / "conf" / "hparams_search"
    folder.mkdir(parents=True)
    for name, text in (("prune_all", PRUNE_ALL), ("fail_all", FAIL_ALL)):
        (folder / f"{name}.yaml").write_text(text)
    return folder.parent


def only_sweep(tmp_path: Path) -> Path:
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    return sweep


def load_study(sweep: Path, name: str = "lenet_optuna") -> Any:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'optuna.db'}")


def summary(run_dir: str | Path) -> dict[str, Any]:
    return json.loads(Path(run_dir, "summary.json").read_text())


def states(study: Any) -> list[str]:
    return [t.state.name for t in study.trials]


def metrics(t: Any) -> str:
    return Path(t.user_attrs["run_dir"], "metrics.jsonl").read_text()


# --- end to end, through the real CLI ---------------------------------------------------------


def test_bad_search_settings_are_one_message_and_write_nothing(tmp_path: Path) -> None:
    proc = run_cli(
        tmp_path, "-m", "hparams_search=lenet_optuna", *TINY,
        "optim.lr=tag(log, interval(0.1, 0.001))", "hydra.sweeper.n_trials=0",
        "hydra.sweeper.direction=up",
    )  # fmt: skip
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert err.count("the search has problems") == 1, "once, not again through Hydra's log"
    for phrase in ("direction: must be maximize or minimize", "n_trials: must be >= 1",
                   "optim.lr=tag(log, interval(0.1, 0.001)): `low <= high`"):  # fmt: skip
        assert phrase in err, err
    outputs = tmp_path / "outputs"
    assert (sorted(outputs.rglob("*")) if outputs.exists() else []) == [], "nothing written"


@pytest.mark.slow
def test_a_search_runs_its_trials_and_continues_to_a_larger_total(tmp_path: Path) -> None:
    search = ("-m", "hparams_search=lenet_optuna", *TINY)
    proc = run_cli(tmp_path, *search, "hydra.sweeper.n_trials=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = only_sweep(tmp_path)
    study = load_study(sweep)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert states(study) == ["COMPLETE"] * 3
    for t in study.trials:
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir.parent == sweep and run_dir.name.startswith(f"{t.number}_")
        # named by what differs between trials: no fixed values, no plumbing
        assert "optim.lr=" in run_dir.name and "optuna" not in run_dir.name
        assert "trainer.epochs" not in run_dir.name and "hparams_search" not in run_dir.name
        assert summary(run_dir)["status"] == "done"
        assert summary(run_dir)["best"]["value"] == pytest.approx(t.value)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["optuna"]["trial"] == t.number, "the run folder says which trial it is"
        assert config["optim"]["lr"] == pytest.approx(t.params["optim.lr"])
        assert sorted(t.intermediate_values) == [1, 2], "one report per epoch"
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = study.best_trial
    assert results["best_trial"]["number"] == best.number and results["best_params"] == best.params
    assert results["best_value"] == pytest.approx(best.value)
    assert f"Best trial #{best.number}" in proc.stdout
    before = {t.number: metrics(t) for t in study.trials}

    proc = run_cli(tmp_path, *search, f"hydra.sweep.dir={sweep}", "hydra.sweeper.n_trials=5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 trials to run" in proc.stdout
    assert only_sweep(tmp_path) == sweep
    study = load_study(sweep)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(s in ("COMPLETE", "PRUNED") for s in states(study))
    assert {n: metrics(study.trials[n]) for n in before} == before, "earlier runs untouched"
    new = [Path(t.user_attrs["run_dir"]).name for t in study.trials[3:]]
    assert new[0].startswith("3_") and new[1].startswith("4_"), "job numbers = trial numbers"
    assert study.trials[3].params != study.trials[0].params, "a continued study must not replay"


@pytest.mark.slow
def test_hopeless_trials_are_pruned_and_their_runs_say_so(tmp_path: Path) -> None:
    conf = search_configs(tmp_path)
    args = ("--config-dir", str(conf), "-m", "hparams_search=prune_all", *TINY)
    proc = run_cli(tmp_path, *args, "trainer.epochs=3", "hydra.sweeper.n_trials=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = only_sweep(tmp_path)
    study = load_study(sweep)
    assert states(study) == ["PRUNED", "PRUNED"]
    for t in study.trials:
        assert t.user_attrs["pruned_at_epoch"] == 1 and list(t.intermediate_values) == [1]
        run = summary(t.user_attrs["run_dir"])
        assert run["status"] == "pruned" and run["epochs_completed"] == 1
        assert "pruned by the search after epoch 1" in run["error"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_trial"] is None and results["states"] == {"pruned": 2}
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_failed_trials_are_recorded_and_run_again_when_the_study_continues(
    tmp_path: Path,
) -> None:
    conf = search_configs(tmp_path)
    args = ("--config-dir", str(conf), "-m", "hparams_search=fail_all", *TINY)
    proc = run_cli(tmp_path, *args, "hydra.sweeper.n_trials=2")
    assert proc.returncode == 1, "the sweep's summary reports failed jobs"
    sweep = only_sweep(tmp_path)
    assert states(load_study(sweep)) == ["FAIL", "FAIL"]
    assert "Trial 0 failed" in proc.stdout and "optim.lr" in proc.stderr

    proc = run_cli(tmp_path, *args, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}")
    assert "2 trials to run" in proc.stdout, "failed trials do not count toward the total"
    assert states(load_study(sweep)) == ["FAIL"] * 4


@pytest.mark.slow
def test_parallel_workers_report_and_prune_through_the_storage(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    conf = search_configs(tmp_path)
    proc = run_cli(
        tmp_path,
        *("--config-dir", str(conf), "-m", "hparams_search=prune_all", *TINY),
        *("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
        *("hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(only_sweep(tmp_path))
    assert states(study) == ["PRUNED"] * 2
    for t in study.trials:
        assert Path(t.user_attrs["run_dir"]).name.startswith(f"{t.number}_")
        assert summary(t.user_attrs["run_dir"])["status"] == "pruned"


# --- the job's side of the contract, in a process of its own -----------------------------------


def test_a_job_in_another_process_reports_and_is_pruned_through_the_storage(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    median = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 2}
    study.set_user_attr(trial.PRUNER_ATTR, median)
    first = study.ask()
    for epoch in (1, 2):
        first.report(0.9, epoch)
    study.tell(first, 0.9)
    second = study.ask()
    cfg = {"optuna": {"storage": url, "study": "s", "trial": second.number}}
    code = (  # outside a search: False, and optuna stays unimported; then trial 1's job
        "import sys\n"
        "from dlexp.sweeps import trial\n"
        "print(trial.should_prune({'trainer': {}}, 1, 0.5), 'optuna' in sys.modules)\n"
        f"print([trial.should_prune({cfg!r}, epoch, 0.1) for epoch in (1, 2)])\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["False False", "[False, True]", "False"], (
        "epoch 1 is in the warm-up; torch is never imported"
    )
    stored = optuna.load_study(study_name="s", storage=url).trials[second.number]
    assert stored.intermediate_values == {1: 0.1, 2: 0.1}
    assert stored.user_attrs[trial.PRUNED_AT_ATTR] == 2


def test_a_finished_trial_is_left_alone_when_its_run_is_repeated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=url, study_name="s", direction="minimize")
    done = study.ask()
    study.tell(done, 1.0)
    cfg = {"optuna": {"storage": url, "study": "s", "trial": done.number}}
    assert trial.should_prune(cfg, 1, 99.0) is False  # e.g. `dlexp rerun <trial folder>`
    assert study.trials[0].intermediate_values == {}


# --- search-space syntax and the shipped search configs ----------------------------------------


@given(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()))
def test_override_values_parse_back_to_the_same_value(value: Any) -> None:
    parsed = OverridesParser.create().parse_override(f"k={trial.override_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


def test_hydra_sweep_syntax_becomes_optuna_distributions() -> None:
    space = parse_space(
        {
            "optim": "choice(sgd, adam)",
            "model.channels": "choice([32,64], [64,128])",
            "optim.lr": "tag(log, interval(1e-4, 1e-1))",
            "model.dropout": "interval(0, 0.5)",
            "trainer.batch_size": "range(16, 129, 16)",
            "model.depth": "tag(int, interval(1, 4))",
            "trainer.epochs": 5,
        },
        ["model.dropout=0.25", "trainer.seed=choice(1, 2)"],  # the command line wins
    )
    d = space.distributions
    assert d["optim"].choices == ("sgd", "adam")
    assert d["optim.lr"].log and (d["optim.lr"].low, d["optim.lr"].high) == (1e-4, 1e-1)
    batch = d["trainer.batch_size"]
    assert (batch.low, batch.high, batch.step) == (16, 128, 16), "range() leaves out its stop"
    assert isinstance(d["model.depth"], optuna.distributions.IntDistribution)
    assert "model.dropout" not in d and d["trainer.seed"].choices == (1, 2)
    assert space.fixed == ["model.dropout=0.25", "trainer.epochs=5"]
    overrides = space.overrides({"model.channels": "[64,128]", "optim.lr": 0.001})
    assert overrides[-2:] == ["model.channels=[64,128]", "optim.lr=0.001"]


def compose_search(*overrides: str) -> Any:
    """The composed config with its `hydra` node (the sweeper's settings)."""
    return conftest.compose_cfg(None, *overrides, hydra=True)


def job_problems(cfg: Any) -> list[str]:
    """What a job of this config would be told (its config without `hydra`, validated)."""
    return validate(to_plain(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])))


@pytest.mark.parametrize(
    ("name", "direction"), [("lenet_optuna", "auto"), ("gan_optuna", "minimize")]
)
def test_shipped_search_configs_compose_validate_and_every_choice_exists(
    tmp_path: Path, name: str, direction: str
) -> None:
    feature_net = tmp_path / "best.pt"
    feature_net.touch()
    extra = [f"model.eval.feature_checkpoint={feature_net}"] if name.startswith("gan") else []
    if extra:  # without a feature network the GAN search stops before it starts, and says why
        problems = job_problems(compose_search(f"hparams_search={name}"))
        assert any("add model.eval.feature_checkpoint=" in p for p in problems)
    cfg = compose_search(f"hparams_search={name}", *extra)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert sweeper["_target_"].endswith("DlexpOptunaSweeper") and sweeper["direction"] == direction
    assert job_problems(cfg) == []
    space = parse_space(sweeper["params"], [])
    assert set(space.distributions) == set(sweeper["params"]), "every entry is searched"
    for key, dist in space.distributions.items():
        for choice in getattr(dist, "choices", ()) if "." not in key else ():  # group choices
            assert job_problems(compose_search(f"hparams_search={name}", f"{key}={choice}")) == []
