"""Config values that are wrong, or do not fit together: each mistake is one problem, found
before a run folder exists, and the message names what to write instead. Torch-free checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlexp.config.derived import direction_of, monitor_mode
from dlexp.config.resolvers import to_plain
from dlexp.tasks.registry import validate


@pytest.fixture
def problems(make_cfg):
    def _problems(*overrides: str) -> list[str]:
        return validate(to_plain(make_cfg(*overrides)))

    return _problems


# one wrong value; each would also break a check of how two values fit together
ONE_MISTAKE = {
    "negative_epochs_with_warmup": ["scheduler=cosine", "scheduler.warmup_epochs=2", "trainer.epochs=-3"],
    "epochs_not_a_number_with_warmup": ["scheduler=cosine", "scheduler.warmup_epochs=2", "trainer.epochs=ten"],
    "nesterov_with_negative_momentum": ["optim=nesterov", "optim.momentum=-1"],
    "bad_val_fraction_with_test_fraction": ["model=lstm", "data=text_files", "data.val_fraction=2", "data.test_fraction=0.5"],
    "monitor_typo_with_a_mode": ["trainer.monitor=val/acc_", "trainer.monitor_mode=min"],
    "bad_image_size_for_lenet": ["model.image_size=0"],
    "label_smoothing_too_big_with_hinge": ["model=gan", "model.loss=hinge", "model.label_smoothing=0.7"],
}  # fmt: skip


@pytest.mark.parametrize("overrides", ONE_MISTAKE.values(), ids=list(ONE_MISTAKE))
def test_one_mistake_is_one_problem(problems, overrides: list[str], tmp_path: Path) -> None:
    if "data=text_files" in overrides:
        (tmp_path / "r.csv").write_text("text,label\n")
        overrides = [*overrides, f"data.train={tmp_path / 'r.csv'}"]
    found = problems(*overrides)
    assert len(found) == 1, found


def test_two_mistakes_are_still_two_problems(make_cfg) -> None:
    cfg = to_plain(make_cfg("optim.lr=-1"))
    cfg["optim"]["lrr"] = 0.1  # the unknown key's hint names optim.lr, which is wrong too
    found = validate(cfg)
    assert sorted(p.split(":")[0] for p in found) == ["optim.lr", "optim.lrr"], found


@pytest.mark.parametrize(
    ("overrides", "key", "phrase"),
    [
        (["model=cnn", "model.channels=[]"], "model.channels", "at least 1 value"),
        (["model=gan", "model.generator.hidden_sizes=[]"], "model.generator.hidden_sizes", "at least 1"),
        (["model=cnn", "model.kernel_size=4"], "model.kernel_size", "use 3 or 5"),
        (["model=cnn", "model.channels=[8,8,8,8,8]"], "model.channels", "at most 4 widths"),
        (["model=cnn", "data=cifar10", "model.channels=[8,8,8,8,8,8]"], "model.channels", "at most 5"),
        (["model.image_size=8"], "model.image_size", "at least 16 px"),
    ],
)  # fmt: skip
def test_a_model_that_cannot_be_built_is_a_config_problem(problems, overrides, key, phrase) -> None:
    (found,) = problems(*overrides)
    assert found.startswith(f"{key}:") and phrase in found, found


def test_models_that_fit_their_images_pass(problems) -> None:
    assert problems("model=cnn", "model.channels=[8,8,8,8]") == []  # 28 px: 4 halvings
    assert problems("model=cnn", "data=cifar10", "model.channels=[8,8,8,8,8]") == []
    assert problems("model=mlp", "model.hidden_sizes=[]") == []  # a linear classifier


@pytest.mark.parametrize(
    ("name", "mode"),
    [("val/loss", "min"), ("train/loss", "min"), ("val/acc", "max"), ("val/f1", "max"),
     ("eval/frechet_distance", "min"), ("val/error", "min"), ("val/auc", "max"), ("lr", None)],
)  # fmt: skip
def test_the_direction_follows_the_metrics_name(name: str, mode: str | None) -> None:
    assert direction_of(name) == mode


def test_monitor_mode_is_inferred_unless_given(problems, make_cfg) -> None:
    assert problems("trainer.monitor=val/loss") == []
    trainer = to_plain(make_cfg("trainer.monitor=val/loss"))["trainer"]
    assert trainer["monitor_mode"] == "auto" and monitor_mode(trainer) == "min"
    assert monitor_mode({"monitor": "val/acc", "monitor_mode": "auto"}) == "max"
    assert monitor_mode({"monitor": "val/loss", "monitor_mode": "max"}) == "max"  # as given
    assert monitor_mode({"monitor": "val/loss"}) == "min"  # older configs without the key
    (found,) = problems("trainer.monitor=val/loss", "trainer.monitor_mode=max")
    assert "should be minimised; set monitor_mode=min" in found
    (found,) = problems("trainer.monitor=val/acc", "trainer.monitor_mode=min")
    assert "should be maximised; set monitor_mode=max" in found


def test_the_search_direction_follows_the_monitor(make_cfg, monkeypatch) -> None:
    from types import SimpleNamespace

    from hydra.core.plugins import Plugins

    from hydra_plugins.dlexp_optuna_sweeper.optuna_sweeper import DlexpOptunaSweeper

    cfgs = {m: make_cfg(f"trainer.monitor={m}") for m in ("val/loss", "val/acc")}
    no_launcher = SimpleNamespace(instantiate_launcher=lambda **_: None)
    monkeypatch.setattr(Plugins, "instance", staticmethod(lambda: no_launcher))
    for monitor, direction in (("val/loss", "minimize"), ("val/acc", "maximize")):
        sweeper = DlexpOptunaSweeper("auto", "s", None, 1, 1, {}, {})
        assert sweeper.problems == []
        cfg = cfgs[monitor]
        sweeper.setup(hydra_context=None, task_function=None, config=cfg)
        assert sweeper.direction == direction


def test_a_data_dir_that_is_a_file_is_called_one(problems, tmp_path: Path) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    (found,) = problems(f"data.data_dir={afile}")
    assert (
        found
        == f"data.data_dir: {afile} is a file, not a folder; give a folder (it is created if missing)"
    )
    (found,) = problems("data=mnist", f"data.data_dir={afile}/sub")
    assert f"runs through the file {afile}" in found
    (found,) = problems(f"paths.data_dir={afile}", f"data.data_dir={tmp_path}")
    assert found.startswith("paths.data_dir:")


def test_text_files_must_exist_and_fit_the_format(problems, tmp_path: Path) -> None:
    base = ["model=lstm", "data=text_files"]
    (found,) = problems(*base, f"data.train={tmp_path / 'nope.csv'}")
    assert found.startswith("data.train:") and "does not exist" in found
    (found,) = problems(*base, f"data.train={tmp_path}", "data.format=csv")
    assert "data.format: csv does not fit data.train" in found and "(a folder)" in found
    (tmp_path / "r.txt").write_text("x")
    (found,) = problems(*base, f"data.train={tmp_path / 'r.txt'}")
    assert "data.format: auto does not fit" in found and ".jsonl" in found


def test_the_searchs_placeholder_is_not_shown_as_a_path(problems, tmp_path: Path) -> None:
    (found,) = problems("hparams_search=gan_optuna")
    assert "no file at" not in found and "set model.eval.feature_checkpoint=set" not in found
    assert "add model.eval.feature_checkpoint=<a classifier run>/checkpoints/best.pt" in found
    (found,) = problems("model=gan", f"model.eval.feature_checkpoint={tmp_path}")
    assert "is a folder" in found and f"{tmp_path}/checkpoints/best.pt" in found
