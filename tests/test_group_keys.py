"""A key that only another option of a config group has (`logger.mlflow.tracking_uri=...` with
mlflow not among the loggers, `scheduler.gamma=...` with scheduler=none) is one message naming
the options that have it and how to choose one: exit 2, never Hydra's "not in struct" with its
advice to append the key with `+`, nothing written. Any other unknown key keeps "did you mean".
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import call_cli

CASES = {
    "mlflow_key_without_mlflow": (
        ["logger.mlflow.tracking_uri=http://x"],
        "logger.mlflow.tracking_uri: logger.mlflow is there only when mlflow is one of the "
        "loggers: add logger=[tensorboard,mlflow]",
    ),
    "wandb_key_without_wandb": (
        ["logger.wandb.mode=offline"],
        "logger.wandb.mode: logger.wandb is there only when wandb is one of the loggers: "
        "add logger=[tensorboard,wandb]",
    ),
    "the_suggestion_keeps_the_chosen_loggers": (
        ["logger=[csv]", "logger.wandb.mode=offline"],
        "add logger=[csv,wandb]",
    ),
    "options_that_inherit_the_key_are_named": (  # model=lstm and gru take rnn's keys
        ["model.bidirectional=true"],
        "model.bidirectional: model=lenet has no model.bidirectional "
        "(model=gru, lstm, lstm_sentiment or rnn has it)",
    ),
    "no_loggers_chosen": (["logger=[]", "logger.mlflow.experiment=e"], "add logger=[mlflow]"),
    "csv_has_no_keys_at_all": (
        ["logger.csv.foo=1"],
        "logger.csv.foo: logger.csv is there only when csv is one of the loggers: "
        "add logger=[tensorboard,csv]; even then logger.csv has no keys to set",
    ),
    "a_typo_under_an_unchosen_logger": (
        ["logger.mlflow.trackinguri=x"],
        "add logger=[tensorboard,mlflow]; even then logger.mlflow has no trackinguri. "
        "Did you mean 'logger.mlflow.tracking_uri'?",
    ),
    "eval_on_a_classifier": (
        ["model.eval.num_samples=10"],
        "model.eval.num_samples: model=lenet has no model.eval (model=dcgan, gan or vae has it)",
    ),
    "eval_node_itself": (
        ["model=cnn", "model.eval.probe=false"],
        "model=cnn has no model.eval (model=autoencoder or vae has it)",
    ),
    "gamma_without_the_step_scheduler": (
        ["scheduler.gamma=0.5", "scheduler=none"],
        "scheduler.gamma: scheduler=none has no scheduler.gamma (scheduler=step has it)",
    ),
    "momentum_on_adam": (
        ["optim.momentum=0.9"],
        "optim=adam has no optim.momentum (optim=momentum, nesterov, rmsprop or sgd has it)",
    ),
    "two_bad_keys_the_first_is_named": (
        ["logger.mlflow.a=1", "optim.lrr=2"],
        "logger.mlflow.a: logger.mlflow is there only when mlflow is one of the loggers",
    ),
    "with_cfg_job": (
        ["--cfg", "job", "logger.wandb.mode=offline"],
        "logger.wandb is there only when wandb is one of the loggers",
    ),
}


def assert_one_clear_message(tmp_path: Path, args: list[str]) -> str:
    done = call_cli(tmp_path, *args)
    everything = done.stdout + done.stderr
    assert done.returncode == 2, everything
    assert "Traceback" not in everything and "not in struct" not in everything, everything
    assert "Could not override" not in everything, everything
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    outputs = tmp_path / "outputs"
    assert not outputs.exists() or not any(outputs.rglob("*")), sorted(outputs.rglob("*"))
    return " ".join(done.stderr.split())


@pytest.mark.parametrize(("args", "expected"), CASES.values(), ids=list(CASES))
def test_a_key_of_another_option_names_the_options_that_have_it(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    err = assert_one_clear_message(tmp_path, args)
    assert expected in err, err
    assert not re.search(r"(^|\s)\+\w", err), f"a '+' is advised: {err}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["optim.lrr=1"], "optim.lrr: unknown key. Did you mean 'optim.lr'?"),
        (
            ["model=vae", "model.eval.num_samplez=3"],
            "model.eval.num_samplez: unknown key. Did you mean 'model.eval.num_samples'?",
        ),
        (["--cfg", "job", "optim.lrr=1"], "optim.lrr: unknown key. Did you mean 'optim.lr'?"),
    ],
    ids=["typo", "typo_under_a_chosen_node", "typo_with_cfg_job"],
)
def test_a_key_no_option_has_is_still_a_typo(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    err = assert_one_clear_message(tmp_path, args)
    assert expected in err and "is there only when" not in err, err


def test_the_suggested_command_line_is_accepted(tmp_path: Path, monkeypatch) -> None:
    from dlexp.cli.preflight import checked_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLEXP_OUTPUT_ROOT", str(tmp_path / "outputs"))
    # a local store: an http address would be probed (and x is no host)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = checked_config(["logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={store}"])
    assert cfg is not None and cfg["logger"]["mlflow"]["tracking_uri"] == store
    cfg = checked_config(["scheduler=step", "scheduler.gamma=0.5"])
    assert cfg is not None and cfg["scheduler"]["gamma"] == 0.5


def test_options_in_an_own_config_folder_are_named(tmp_path: Path) -> None:
    own = tmp_path / "own"
    (own / "logger").mkdir(parents=True)
    (own / "logger" / "mine.yaml").write_text("mine:\n  level: 1\n")
    err = assert_one_clear_message(tmp_path, ["--config-dir", str(own), "logger.mine.level=2"])
    assert "logger.mine is there only when mine is one of the loggers" in err, err
    assert "add logger=[tensorboard,mine]" in err, err


PROBE = """
import sys
sys.argv = ["dlexp", "logger.mlflow.tracking_uri=http://x"]
from dlexp.cli.main import main
try:
    main()
except SystemExit as exc:
    print("EXIT", exc.code)
print("TORCH", "torch" in sys.modules)
"""


def test_the_explanation_imports_no_torch(tmp_path: Path) -> None:
    env = {**os.environ, "DLEXP_OUTPUT_ROOT": str(tmp_path / "outputs")}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert "EXIT 2" in done.stdout and "TORCH False" in done.stdout, done.stdout + done.stderr
    assert "logger.mlflow is there only when mlflow is one of the loggers" in done.stderr
