"""Mistakes on the command line end in one clear message: no traceback, exit status 2.

Each test runs the real CLI (`python -m dlexp ...`) in a subprocess, as a user would, with
outputs and data under tmp_path. Errors the preflight catches must write nothing at all.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from dlexp.config.paths import CONFIG_DIR
from tests.conftest import call_cli


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def run_dlexp(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI, in this process: every command here ends before training starts."""
    return call_cli(tmp_path, *args)


def one_line(text: str) -> str:
    return " ".join(text.split())


def assert_clear_error(done: subprocess.CompletedProcess[str], phrases: list[str]) -> str:
    """Exit status 2, every phrase in stderr, no traceback anywhere. Returns stderr."""
    everything = done.stdout + done.stderr
    assert "Traceback" not in everything, everything
    assert done.returncode == 2, f"exit {done.returncode}\n{everything}"
    err = one_line(done.stderr)
    for phrase in phrases:
        assert phrase in err, f"{phrase!r} missing from stderr:\n{done.stderr}"
    return err


def assert_nothing_written(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    written = (
        sorted(str(p.relative_to(outputs)) for p in outputs.rglob("*")) if outputs.exists() else []
    )
    assert written == [], f"a rejected command wrote {written}"


def assert_lists_all(err: str, names: list[str]) -> None:
    for name in names:
        assert re.search(rf"\b{re.escape(name)}\b", err), f"{name!r} not listed in: {err}"


# --- caught before anything runs (no torch, no run folder) --------------------------------------

ONE = "the config has 1 problem"
PREFLIGHT_CASES = {
    "epochs_not_int": (["trainer.epochs=ten"], [ONE, "trainer.epochs", "integer", "ten"]),
    "lr_negative": (["optim.lr=-0.1"], [ONE, "optim.lr", "must be > 0", "-0.1"]),
    "dropout_one": (["model.dropout=1.0"], [ONE, "model.dropout", "must be < 1", "1.0"]),
    "batch_size_zero": (["trainer.batch_size=0"], [ONE, "trainer.batch_size", "must be >= 1"]),
    "misspelt_key": (["optim.lrr=0.1"], ["optim.lrr", "Did you mean 'optim.lr'"]),
    "batchnorm_on_an_lstm": (
        ["model=lstm", "regularization=[batchnorm]"],
        [ONE, "regularization.batch_norm", "RNNClassifier has no batch_norm", "LeNet5"],
    ),
    "compile_a_gan": (
        ["model=gan", "trainer.compile=true"],
        [ONE, "trainer.compile: not supported for GANs"],
    ),
    "device_typo": (["trainer.device=gpu"], [ONE, "trainer.device", "cuda:<n>", "'gpu'"]),
    "val_monitor_without_val_split": (
        ["data.val_fraction=0"],
        [ONE, "trainer.monitor: val/acc needs a validation split", "trainer.monitor=train/acc"],
    ),
    "warmup_longer_than_the_run": (
        ["scheduler=cosine", "scheduler.warmup_epochs=20"],
        [ONE, "scheduler.warmup_epochs", "is longer than the run", "trainer.epochs=10"],
    ),
    "gan_on_text": (["model=gan", "data=imdb"], [ONE, "GANs generate images", "mnist_sample"]),
    "typo_inside_a_list": (
        ["regularization=[l2,dropuot]"],
        [
            "regularization=dropuot",
            "Did you mean 'dropout'",
            "Options of regularization: batchnorm",
        ],
    ),
    "top_level_typo": (["modle=cnn"], ["modle: unknown key. Did you mean 'model'?"]),
    "multirun_with_cfg": (["-m", "optim.lr=1e-3", "--cfg", "job"], ["cannot be combined"]),
    "unknown_command": (["resum", "latest"], ["unknown command 'resum'", "Did you mean 'resume'"]),
    "train_as_a_command": (["train"], ["Training needs no command"]),
    "output_root_that_cannot_be_made": (
        ["paths.output_root=/proc/dlexp/outputs"],
        ["paths.output_root: cannot create folders in /proc"],
    ),
    "run_dir_is_a_file": (["hydra.run.dir=/proc/version"], ["that is a file, not a folder"]),
    "an_option_listed_twice": (["regularization=[l2,l2]"], ["l2 listed more than once"]),
    "optim_group_on_a_gan": (
        ["model=gan", "optim.lr=0.5"],
        ["optim.lr=0.5: a GAN has two optimizers of its own", "model.optim_d.lr"],
    ),
    "plus_on_a_chosen_group": (
        ["+experiment=lenet_mnist"],
        ["experiment is already in the defaults", "write experiment=<option> without the +"],
    ),
    "plus_on_an_existing_key": (
        ["+trainer.epochs=2"],
        ["already at 'trainer.epochs'", "'trainer.epochs=2'", "'++trainer.epochs=2'"],
    ),
}


@pytest.mark.parametrize(("args", "phrases"), PREFLIGHT_CASES.values(), ids=list(PREFLIGHT_CASES))
def test_bad_value_is_one_clear_error_and_writes_nothing(
    tmp_path: Path, args: list[str], phrases: list[str]
) -> None:
    done = run_dlexp(tmp_path, *args)
    assert_clear_error(done, ["error:", *phrases])
    assert_nothing_written(tmp_path)


def test_several_bad_values_are_reported_together(tmp_path: Path) -> None:
    done = run_dlexp(tmp_path, "trainer.epochs=0", "optim.lr=-1")
    assert_clear_error(done, ["the config has 2 problems", "trainer.epochs", "optim.lr"])
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(("group", "bad"), [("optim", "adamm"), ("model", "nope")])
def test_unknown_option_lists_the_valid_ones(tmp_path: Path, group: str, bad: str) -> None:
    done = run_dlexp(tmp_path, f"{group}={bad}")
    err = assert_clear_error(done, ["error:", f"{group}/{bad}"])
    assert_lists_all(err, options(group))
    assert_nothing_written(tmp_path)


def test_multirun_with_a_bad_first_value_fails_before_any_job(tmp_path: Path) -> None:
    done = run_dlexp(tmp_path, "-m", "optim=adamm,adam")
    err = assert_clear_error(done, ["error:", "optim=adamm", "no such option"])
    assert_lists_all(err, options("optim"))
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("sweep", "phrases"),
    [
        ("optim=adam,adamm", ["optim=adamm", "Did you mean 'adam'"]),
        ("regularization=[l2],[l1,dropot]", ["regularization=dropot", "Did you mean 'dropout'"]),
    ],
)
def test_multirun_with_a_bad_later_value_fails_before_any_job(
    tmp_path: Path, sweep: str, phrases: list[str]
) -> None:
    # only the first job is composed before Hydra starts; every swept option is checked too
    done = run_dlexp(tmp_path, "-m", sweep)
    group = sweep.split("=")[0]
    err = assert_clear_error(done, ["error:", *phrases, f"Options of {group}"])
    assert_lists_all(err, options(group))
    assert_nothing_written(tmp_path)


def test_a_bad_later_value_of_a_swept_key_fails_before_any_job(tmp_path: Path) -> None:
    done = run_dlexp(tmp_path, "-m", "optim.lr=1e-3,abc")
    assert_clear_error(done, ["optim.lr=abc (in optim.lr=1e-3,abc)", "expected a number"])
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("verb", ["resume", "rerun", "eval", "validate"])
def test_verb_help_prints_its_usage(tmp_path: Path, verb: str) -> None:
    done = run_dlexp(tmp_path, verb, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"dlexp {verb} ") and not done.stderr


# --- caught when the run starts (imports torch) ---------------------------------------------------


@pytest.fixture(scope="module")
def cuda_on_cpu_machine(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    tmp = tmp_path_factory.mktemp("cuda")
    return tmp, run_dlexp(tmp, "trainer.device=cuda", "trainer.progress=none")


@pytest.fixture(scope="module")
def missing_dataset(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("nodata")
    (tmp / "data").mkdir()
    return tmp, run_dlexp(tmp, "data=mnist", "trainer.progress=none")


@pytest.mark.slow
def test_cuda_device_without_cuda_suggests_cpu_or_auto(cuda_on_cpu_machine) -> None:
    _, done = cuda_on_cpu_machine
    assert_clear_error(
        done, ["error:", "trainer.device=cuda", "CUDA is not available", "trainer.device=cpu"]
    )
    assert "trainer.device=auto" in one_line(done.stderr)


@pytest.mark.slow
def test_missing_dataset_names_folder_download_and_offline_option(missing_dataset) -> None:
    tmp, done = missing_dataset
    assert_clear_error(
        done,
        ["error:", "mnist", str(tmp / "data" / "MNIST" / "raw"), "data.download=true"],
    )
    assert "data=mnist_sample" in one_line(done.stderr)
    assert not list((tmp / "data").rglob("*")), "nothing may be downloaded without download=true"


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        "cuda_on_cpu_machine",
        "missing_dataset",
    ],
)
def test_run_that_fails_at_start_leaves_no_folder_or_a_failed_summary(
    case: str, request: pytest.FixtureRequest
) -> None:
    tmp, done = request.getfixturevalue(case)
    assert done.returncode == 2
    # the run folder was claimed before the device or the data could be checked: it says why
    (run,) = sorted((tmp / "outputs" / "runs").glob("*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"] and summary["error"].split(".")[0] in one_line(done.stderr)
    assert not list(run.rglob("*.pt")), "no checkpoint of a run that never trained"
    assert not (tmp / "outputs" / "latest").exists(), "latest moves only for a run that started"


def test_a_switch_the_users_own_model_cannot_take_is_an_error_not_ignored() -> None:
    import torch

    from dlexp.engine.builders import build_model
    from dlexp.errors import DlexpError

    class Plain(torch.nn.Module):  # no dropout argument
        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, num_classes)

    target = f"{__name__}.Plain"
    globals()["Plain"] = Plain
    inputs = {"num_classes": 3}
    assert isinstance(build_model({"_target_": target}, {"dropout": None}, inputs), Plain)
    with pytest.raises(DlexpError, match="regularization.dropout: Plain has no dropout"):
        build_model({"_target_": target}, {"dropout": 0.5}, inputs)


def test_a_gan_under_torchrun_is_refused(make_cfg, monkeypatch) -> None:
    from omegaconf import OmegaConf

    from dlexp.tasks.registry import validate

    cfg = OmegaConf.to_container(make_cfg("model=gan"), resolve=True)
    assert validate(cfg) == []
    monkeypatch.setenv("WORLD_SIZE", "2")
    (problem,) = validate(cfg)
    assert "GANs train in one process" in problem and "plain `dlexp`" in problem


def test_more_processes_than_gpus_is_an_error(monkeypatch) -> None:
    import torch

    from dlexp.engine import distributed
    from dlexp.errors import DlexpError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.device_for_rank("auto") == "cuda:0"
    assert distributed.device_for_rank("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(DlexpError, match="--nproc_per_node=1 or fewer"):
        distributed.device_for_rank("cuda")


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "optim='sgd',adam"],  # quoted options and values are what they quote
        ["-m", "regularization=['l2'],[none]"],
        ["-m", "trainer.monitor='val/acc','train/acc'"],
        ["-m", "optim.lr=0.1,0.01", "trainer.seed=${hydra:job.num}"],  # known at run time
        ["trainer=debug", "trainer.overfit_batches=1"],  # the preset's limit is no conflict
        ["data.val_fraction=0", "trainer.overfit_batches=1"],  # validates on those batches
        ["trainer=debug", "scheduler=cosine", "scheduler.warmup_epochs=1"],
        ["trainer.device=cpu:0"],
    ],
    ids=[
        "quoted_options",
        "quoted_list",
        "quoted_values",
        "hydra_interpolation",
        "debug_overfit",
        "overfit_no_val",
        "warmup_as_long_as_run",
        "device_index",
    ],  # fmt: skip
)
def test_valid_commands_pass_the_checks(tmp_path: Path, args: list[str], monkeypatch) -> None:
    from dlexp.cli.preflight import checked_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLEXP_OUTPUT_ROOT", str(tmp_path / "outputs"))
    checked_config(args)  # exits with status 2 on a problem
    assert_nothing_written(tmp_path)


def test_own_primary_config_and_search_path_are_found(tmp_path: Path, monkeypatch) -> None:
    from dlexp.cli.preflight import checked_config

    own = tmp_path / "own"
    (own / "model").mkdir(parents=True)
    (own / "model" / "tiny.yaml").write_text((CONFIG_DIR / "model" / "mlp.yaml").read_text())
    (own / "mine.yaml").write_text("defaults:\n  - config\n  - _self_\n")
    monkeypatch.setenv("DLEXP_OUTPUT_ROOT", str(tmp_path / "outputs"))
    checked_config(["--config-dir", str(own), "-cn", "mine", "model=tiny"])
    checked_config(["-m", "model=lenet,tiny", f"hydra.searchpath=[file://{own}]"])
    with pytest.raises(SystemExit):
        checked_config(["-m", "model=lenet,tiyn", f"hydra.searchpath=[file://{own}]"])


def test_a_folder_with_run_files_but_no_config_is_refused_clearly(tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "summary.json").write_text("{}")
    done = run_dlexp(tmp_path, "resume=auto", f"hydra.run.dir={odd}")
    assert_clear_error(done, ["no config.yaml: not a dlexp run that can continue"])
    assert sorted(p.name for p in odd.iterdir()) == ["summary.json"]


def test_options_in_a_groups_subfolder_count_as_options(tmp_path: Path) -> None:
    from dlexp.cli.preflight import check_group_options

    (tmp_path / "model" / "mine").mkdir(parents=True)
    (tmp_path / "model" / "mine" / "tiny.yaml").write_text("{}\n")
    check_group_options(["model=lenet,mine/tiny"], [CONFIG_DIR, tmp_path])  # no exit
    with pytest.raises(SystemExit) as stop:
        check_group_options(["model=lenet,mine/tiyn"], [CONFIG_DIR, tmp_path])
    assert stop.value.code == 2
