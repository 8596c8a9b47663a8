"""The CLI as a user runs it: the default experiment, the run folder, TensorBoard, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import cli_env, latest_run, read_jsonl, run_cli
from tests.tbread import hparams_sessions, scalar_and_image_tags, scalars

pytestmark = pytest.mark.slow

RUN_FILES = [
    ".hydra/config.yaml",
    ".hydra/overrides.yaml",
    ".hydra/hydra.yaml",
    "config.yaml",
    "command.txt",
    "metrics.jsonl",
    "summary.json",
    "train.log",
    "checkpoints/last.pt",
    "checkpoints/best.pt",
    "figures/confusion_matrix.png",
    "figures/misclassified.png",
]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`dlexp` with no arguments: LeNet-5 on the bundled MNIST sample, the README's first run."""
    tmp = tmp_path_factory.mktemp("default")
    t0 = time.time()
    proc = run_cli(tmp)
    return tmp, proc, time.time() - t0


def test_default_experiment_reaches_95_percent(default_run):
    tmp, proc, _ = default_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((latest_run(tmp) / "summary.json").read_text())
    assert summary["status"] == "done"
    assert summary["best"]["value"] >= 0.95, summary["best"]
    assert summary["test"]["test/acc"] >= 0.93, summary["test"]
    assert summary["num_params"] == 61_706


def test_run_folder_holds_everything(default_run):
    tmp, proc, _ = default_run
    run = latest_run(tmp)
    assert run.parent == tmp / "outputs" / "runs"
    missing = [f for f in RUN_FILES if not (run / f).is_file()]
    assert not missing, f"missing from the run folder: {missing}"
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events in the run folder"
    summary = json.loads((run / "summary.json").read_text())
    for key in ("wall_time_s", "samples_per_sec", "environment", "best", "final", "started_at"):
        assert summary[key], key
    assert summary["environment"]["torch"] == torch.__version__
    assert summary["choices"]["model"] == "lenet" and "experiment" not in summary["choices"]
    assert str(run) in proc.stdout, "the final panel names the run folder"
    assert f"run folder: {run}\n" in proc.stdout, "a long path is never wrapped in a pipe"
    assert "\x1b[" not in proc.stdout, "no terminal control codes without a TTY"
    log = (run / "train.log").read_text()
    assert "epoch  train/loss" in log and str(run) in log, "train.log has what was printed"


def test_metrics_jsonl_has_steps_epochs_and_test(default_run):
    tmp, _, _ = default_run
    records = read_jsonl(latest_run(tmp) / "metrics.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(1, 11))
    assert all({"train/loss", "train/acc", "val/loss", "val/acc"} <= r.keys() for r in epochs)
    steps = [r["step"] for r in records if r["kind"] == "step"]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert epochs[-1]["train/loss"] < epochs[0]["train/loss"]
    assert any(r["kind"] == "test" and "test/acc" in r for r in records)


def test_tensorboard_reads_scalars_images_and_hparams(default_run):
    tmp, _, _ = default_run
    run = latest_run(tmp)
    scalar_tags, image_tags = scalar_and_image_tags(run)
    # grouped by what they measure, train beside val (tests/test_tensorboard_view.py)
    expected = {"loss/train/loss", "accuracy/train/acc", "loss/val/loss", "accuracy/val/acc"}
    assert expected | {"schedule/lr", "throughput/samples_per_sec", "summary/test/acc"} <= (
        scalar_tags
    )
    assert {"val/confusion_matrix", "summary/best/misclassified"} <= image_tags
    val_acc = [v for _, v in scalars(run, "accuracy/val/acc")]
    assert len(val_acc) == 10 and max(val_acc) >= 0.95
    # the epoch means have their own tags: one value per step on every chart
    assert {"loss/train/loss_epoch", "accuracy/train/acc_epoch"} <= scalar_tags
    for tag in ("loss/train/loss", "loss/train/loss_epoch"):
        steps = [step for step, _ in scalars(run, tag)]
        assert len(steps) == len(set(steps)), f"{tag}: two values at one step"
    assert len(scalars(run, "loss/train/loss_epoch")) == 10

    experiment, groups = hparams_sessions(tmp / "outputs")
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert {"model", "optim", "optim.lr", "trainer.batch_size"} <= names
    metric_tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"accuracy/val/acc", "summary/test/acc"} <= metric_tags
    assert len(groups) == 1, "one run, one session: no extra sub-run"
    session = groups[0]["sessions"][0]
    assert session["status"] == "STATUS_SUCCESS"
    assert groups[0]["hparams"]["optim"] == "adam"


def test_checkpoint_is_a_plain_dict(default_run):
    tmp, _, _ = default_run
    ckpt = torch.load(latest_run(tmp) / "checkpoints" / "best.pt", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "train_state", "config", "rng", "classes"):
        assert key in ckpt
    from dlexp.models.cnn import LeNet5

    model = LeNet5()
    model.load_state_dict(ckpt["model"])
    assert ckpt["config"]["model"]["_target_"] == "dlexp.models.cnn.LeNet5"
    assert ckpt["train_state"]["epoch"] == ckpt["train_state"]["best_epoch"]


def test_two_runs_started_together_get_two_folders(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dlexp", "trainer=debug", "trainer.test_after_fit=false"],
            cwd=tmp_path,
            env=cli_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    runs = sorted((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "summary.json").read_text())["status"] == "done"


def test_a_sweep_runs_every_job_in_its_own_named_folder(tmp_path):
    proc = run_cli(
        tmp_path, "-m", "trainer=debug", "optim=sgd,adam", "trainer.test_after_fit=false"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2 and "optim=sgd" in jobs[0] and "optim=adam" in jobs[1]
    for job in jobs:
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "done"
    assert latest_run(tmp_path).parent == sweep


def test_python_m_dlexp_train_is_the_same_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dlexp.cli.train", "--cfg", "job", "model=mlp"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "dlexp.models.cnn.MLP" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "dlexp.cli.train", "optim.lrr=1"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Did you mean 'optim.lr'" in bad.stderr
