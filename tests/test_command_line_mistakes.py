"""Command lines Hydra cannot read, and options that do not exist: one message, exit 2.

In-process: `checked_config` is what `dlexp` runs before Hydra, so calling it with argv shows
what a user sees, without a subprocess. Nothing may be written for any of these.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dlexp.cli.preflight import checked_config


@pytest.fixture
def refuse(tmp_path: Path, monkeypatch, capsys):
    """Run the checks on argv; assert exit 2 and nothing written, return the one-line message."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLEXP_OUTPUT_ROOT", str(tmp_path / "outputs"))

    def _refuse(*argv: str) -> str:
        with pytest.raises(SystemExit) as stop:
            checked_config(list(argv))
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.startswith("error: "), err
        assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused command wrote files"
        return " ".join(err.split())

    return _refuse


GRAMMAR = {
    "key_and_value_apart": (["trainer.epochs", "5"], "write trainer.epochs=5"),
    "key_alone": (["trainer.epochs"], "expected key=value"),
    "value_alone": (["=5"], "a value without a key"),
    "non_ascii_unquoted": (
        ["hydra.run.dir=/tmp/ränn"],
        """Hydra cannot read the character ä in a value without quotes. Quote the value""",
    ),
    "equals_in_a_value": (["data.train=a=b.csv"], """'data.train="a=b.csv"'"""),
    "unclosed_bracket": (["model.channels=[32,64"], "lists are written [a,b]"),
    "sweep_without_m": (["optim.lr=0.1,0.01"], "several values make a sweep, which needs -m"),
    "search_without_m": (
        ["hparams_search=lenet_optuna"],
        "is a search of many runs, which needs -m",
    ),
    "multirun_mode_without_m": (["hydra.mode=MULTIRUN"], "is a sweep of many runs, which needs -m"),
}


@pytest.mark.parametrize(("argv", "phrase"), GRAMMAR.values(), ids=list(GRAMMAR))
def test_what_hydra_cannot_read_is_explained_with_how_to_write_it(refuse, argv, phrase) -> None:
    assert phrase in refuse(*argv)


def test_the_quoted_form_offered_is_read_as_one_value(tmp_path: Path, monkeypatch) -> None:
    from dlexp.cli.grammar import quoted

    monkeypatch.setenv("DLEXP_OUTPUT_ROOT", str(tmp_path / "outputs"))
    word = quoted(f"hydra.run.dir={tmp_path}/ränn, a")
    assert word == f"""'hydra.run.dir="{tmp_path}/ränn, a"'"""
    checked_config([word.strip("'"), "trainer.epochs=1"])  # no exit: the shell's view of it


@pytest.mark.parametrize(
    ("argv", "phrases"),
    [
        (["model=lenett"], ["model=lenett: no such option", "Did you mean 'lenet'?", "mlp"]),
        (["optim=adamm"], ["optim=adamm", "Did you mean 'adam'?", "rmsprop"]),
        (["scheduler=cosin"], ["Did you mean 'cosine'?", "onecycle"]),
        (["data=fashion-mnist"], ["Did you mean 'fashion_mnist'?", "kmnist"]),
        (["trainer=debg"], ["Did you mean 'debug'?", "default"]),
        (["experiment=lenet_mnst"], ["Did you mean 'lenet_mnist'?"]),
        (["regularization=dropuot"], ["Did you mean 'dropout'?", "batchnorm"]),
        (["-m", "hparams_search=lenet_optum"], ["Did you mean 'lenet_optuna'?"]),
        (["hydra/launcher=joblibb"], ["Did you mean 'joblib'?", "submitit_slurm"]),
        (["-m", "hydra/sweeper/pruner=hyperbnd"], ["Did you mean 'hyperband'?", "threshold"]),
        (["-m", "optim=sgd,adamm"], ["optim=adamm (in optim=sgd,adamm)", "Did you mean"]),
        (["--cfg", "job", "model=lenett"], ["Did you mean 'lenet'?"]),
        (["--help", "optim=adamm"], ["Did you mean 'adam'?"]),
    ],
    ids=lambda v: v[-1] if isinstance(v, list) and len(v) < 3 else None,
)
def test_every_group_suggests_the_option_meant(refuse, argv, phrases) -> None:
    err = refuse(*argv)
    for phrase in phrases:
        assert phrase in err


def test_an_option_in_a_preset_that_does_not_exist_is_named(refuse, tmp_path: Path) -> None:
    own = tmp_path.parent / f"{tmp_path.name}-conf"
    (own / "experiment").mkdir(parents=True)
    (own / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /optim: adamm\n"
    )
    err = refuse("--config-dir", str(own), "experiment=mine")
    assert "optim=adamm: no such option" in err and "Did you mean 'adam'?" in err


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--config-dir", "no_such_folder", "model=tiny"], "--config-dir no_such_folder: no such"),
        (["--config-path", "/no/such/folder"], "--config-path /no/such/folder: no such folder"),
        (["-cn", "nope", "trainer.epochs=1"], "--config-name nope: no nope.yaml"),
    ],
)
def test_config_folders_and_names_must_exist(refuse, argv, phrase) -> None:
    assert phrase in refuse(*argv)


def test_hydra_settings_are_checked_before_hydra_starts(refuse) -> None:
    assert "hydra.job.chdir=maybe" in refuse("hydra.job.chdir=maybe")
    assert "Value 'maybe' is not a valid bool" in refuse("hydra.job.chdir=maybe")
    err = refuse("hydra.run.dirr=/tmp/x")
    assert "hydra.run.dirr: unknown key" in err and "Valid keys:" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "hparams_search=lenet_optuna", "hydra.sweeper.n_trials=3"],
        ["hydra/launcher=joblib"],
        ["-m", "hydra/launcher=joblib,basic", "trainer.epochs=1"],
        ["~trainer.early_stopping"],
        ["model=mlp", "model.hidden_sizes=[]"],  # a linear classifier
        ["trainer.monitor=val/loss"],  # its direction follows from the name
        ["data=text_files", "model=lstm_sentiment", "data.train='a,b.csv'"],  # one quoted value
    ],
)
def test_valid_command_lines_still_pass(tmp_path: Path, monkeypatch, argv) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLEXP_OUTPUT_ROOT", str(tmp_path / "outputs"))
    (tmp_path / "a,b.csv").write_text("text,label\nok,1\nno,0\n")
    checked_config(argv)


def test_a_verbs_key_and_value_apart_get_the_same_hint() -> None:
    from dlexp.cli.verbs import apply_overrides
    from dlexp.errors import DlexpError

    with pytest.raises(DlexpError, match="got 'trainer.epochs': write trainer.epochs=5"):
        apply_overrides({"trainer": {"epochs": 1}}, ["trainer.epochs", "5"], None, force=True)
