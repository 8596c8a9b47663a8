"""The `_target_`s of the user's own config folders need no trust option: those the run was
started with (Hydra's record, checked against the files on this disk), and, while Hydra runs,
those of the current command line (a search job rebuilding its study's pruner)."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from hydra.core.hydra_config import HydraConfig

from dlexp.cli.main import run_verb
from dlexp.config.trust import check_trust
from dlexp.engine.frechet import TRUST_OPTION, FeatureNetwork
from dlexp.errors import DlexpError
from dlexp.sweeps import trial
from tests import conftest, foreign
from tests.conftest import latest_run, run_cli
from tests.foreign import QUIET, own_configs, record


@pytest.fixture
def files(tmp_path, monkeypatch):
    yield from foreign.files(tmp_path, monkeypatch)


def test_targets_the_runs_own_config_folder_names_need_no_trust(files):
    run = files.classify_run
    record(run, own_configs(files.tmp))
    with pytest.raises(Exception, match="built Net"):
        run_verb("eval", [str(run)])
    assert files.marker.is_file()
    rerun = files.runs / "its_rerun"  # `dlexp rerun` has no Hydra record: its source's counts
    rerun.mkdir()
    (rerun / "config.yaml").write_text((run / "config.yaml").read_text())
    (rerun / "rerun_of.txt").write_text(f"{run}\n")
    saved = yaml.safe_load((rerun / "config.yaml").read_text())
    check_trust(saved, trusted=False, source=rerun / "config.yaml")


@pytest.mark.parametrize(
    "where",
    ["names another target", "relative path", "inside the run folder", "gone", "no record"],
)
def test_a_recorded_config_folder_counts_only_where_it_names_the_target_now(files, where):
    run = files.classify_run
    other = where == "names another target"
    conf = own_configs(files.tmp, "foreign_code.Other" if other else "foreign_code.Net")
    if where == "relative path":
        conf = Path("my_configs")
    elif where == "inside the run folder":  # shipped with someone else's run folder
        conf = own_configs(run)
    elif where == "gone":
        conf = files.tmp / "elsewhere"
    if where != "no record":
        record(run, conf)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    with pytest.raises(DlexpError, match="foreign_code.Net"):
        check_trust(saved, trusted=False, source=run / "config.yaml")


def test_a_feature_checkpoint_from_a_run_of_your_own_configs_needs_no_option(files):
    run = files.runs / "my_classifier"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  _target_: foreign_code.Net\n")
    (run / "checkpoints" / "best.pt").write_bytes(files.judge.read_bytes())
    with pytest.raises(DlexpError, match=f"best.pt names code .*foreign_code.Net.*{TRUST_OPTION}"):
        FeatureNetwork.load(run / "checkpoints" / "best.pt", torch.device("cpu"))
    record(run, own_configs(files.tmp))
    with pytest.raises(Exception, match="built Net"):
        FeatureNetwork.load(run / "checkpoints" / "best.pt", torch.device("cpu"))
    assert files.marker.is_file()


def test_a_stored_pruner_is_built_only_from_optuna_or_the_commands_own_configs(
    files, monkeypatch, caplog
):
    url = f"sqlite:///{files.tmp / 'optuna.db'}"
    study = optuna.create_study(storage=url, study_name="s", direction="minimize")
    study.set_user_attr(trial.PRUNER_ATTR, {"_target_": "foreign_code.Pruner"})
    cfg = {"optuna": {"storage": url, "study": "s", "trial": study.ask().number}}
    monkeypatch.setattr(trial, "_trials", {})
    assert trial.should_prune(cfg, 1, 0.5) is False  # a job of `dlexp resume`: no Hydra
    assert "foreign_code.Pruner" in caplog.text and "not pruning" in caplog.text
    assert not files.marker.exists()
    hub = {"_target_": "torch.hub.load", "repo_or_dir": "someone/else", "model": "m"}
    study.set_user_attr(trial.PRUNER_ATTR, hub)  # torch's, but not a pruner: never from a file
    monkeypatch.setattr(trial, "_trials", {})
    assert trial.should_prune(cfg, 1, 0.5) is False
    assert "(torch.hub.load): not building it" in caplog.text

    study.set_user_attr(trial.PRUNER_ATTR, {"_target_": "foreign_code.Pruner"})
    monkeypatch.setattr(trial, "_trials", {})
    conf = own_configs(files.tmp, "foreign_code.Pruner")  # a search of the user's own
    hydra_cfg = conftest.compose_cfg(None, f"hydra.searchpath=[file://{conf}]", hydra=True)
    HydraConfig.instance().set_config(hydra_cfg)  # a job of the sweep that stored it
    try:
        with pytest.raises(Exception, match="built Pruner"):
            trial.should_prune(cfg, 1, 0.5)
    finally:
        HydraConfig.instance().cfg = None
    assert files.marker.is_file()


@pytest.mark.slow
def test_a_run_started_with_config_dir_is_evaluated_without_trust(tmp_path, monkeypatch, capsys):
    """Hydra's own record, as `dlexp --config-dir` writes it, is what the check reads."""
    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\n\n\n"
        "class TinyNet(nn.Sequential):\n"
        "    def __init__(self, in_channels, num_classes, image_size, hidden=8):\n"
        "        n = in_channels * image_size**2\n"
        "        super().__init__(nn.Flatten(), nn.Linear(n, hidden), nn.Linear(hidden, num_classes))\n"
    )
    own_configs(tmp_path, "mymodels.TinyNet")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[1]}"}
    done = run_cli(tmp_path, "--config-dir", "my_configs", "model=mine", *QUIET, **env)
    assert done.returncode == 0, done.stderr
    run = latest_run(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    assert run_verb("eval", [str(run)]) == 0
    assert "test/acc" in capsys.readouterr().out
    (tmp_path / "my_configs" / "model" / "mine.yaml").unlink()  # no longer a config of yours
    assert run_verb("eval", [str(run)]) == 2
    assert "mymodels.TinyNet" in capsys.readouterr().err
