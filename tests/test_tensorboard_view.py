"""TensorBoard as a person opens it, read through its own plugins: HParams opens on what a sweep
varies and on the metrics that matter, Time Series on accuracy and loss, Custom Scalars draws
train beside val, the Text tab holds the config; job folders are named by what they vary."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests import tbread
from tests.conftest import latest_run, run_cli

pytestmark = pytest.mark.slow

SWEEP = (
    "-m",
    "trainer.epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.log_every_n_steps=1",
    "trainer.figures_every_n_epochs=1",
    "trainer.log_histograms=1",
    "trainer.log_graph=true",
    "trainer.progress=none",
    "optim.lr=0.001,0.01",
)
GAN = (
    "experiment=gan_mnist",
    "trainer=debug",
    "trainer.epochs=1",  # the experiment sets 30
    "trainer.limit_train_batches=2",
    "trainer.progress=none",
    "name=my gan",
)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """A classifier sweep of two jobs and a GAN run, in one output folder (a mixed folder)."""
    tmp = tmp_path_factory.mktemp("tb")
    # every import in stderr: a run that does not choose MLflow or W&B never imports them
    proc = run_cli(tmp, *SWEEP, PYTHONPROFILEIMPORTTIME="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not {m for m in imported if m.split(".")[0] in ("mlflow", "wandb")}
    proc = run_cli(tmp, *GAN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "outputs"


def sweep_of(outputs: Path) -> Path:
    (sweep,) = (outputs / "sweeps").iterdir()
    return sweep


def test_job_folders_are_named_by_what_varies_and_runs_by_their_name(outputs):
    jobs = sorted(p.name for p in sweep_of(outputs).iterdir() if p.is_dir())
    assert jobs == ["0_optim.lr=0.001", "1_optim.lr=0.01"], "trainer.* is shared: not in names"
    assert latest_run(outputs.parent).name.endswith("_my-gan")


def test_hparams_opens_on_the_swept_hyperparameter_and_the_real_metrics(outputs):
    experiment, groups = tbread.hparams_sessions(sweep_of(outputs))
    hparams, metrics = tbread.shown_first(experiment)
    assert "optim.lr" in hparams
    differs = [h["name"] for h in experiment["hparamInfos"] if h.get("differs")]
    assert "optim.lr" in differs and "trainer.epochs" not in differs
    assert not [h for h in experiment["hparamInfos"] if h["name"].endswith("_target_")]
    assert metrics == [
        "summary/best/val/acc",
        "accuracy/val/acc",
        "loss/val/loss",
        "summary/test/acc",
        "summary/test/loss",
    ]
    every = [m["name"]["tag"] for m in experiment["metricInfos"]]
    assert not [t for t in every if re.search(r"(^|/)epoch$|/lr|throughput", t)]
    assert {m.get("displayName") for m in experiment["metricInfos"]} >= {"best val/acc"}

    assert len(groups) == 2, "one session per job"
    assert {g["hparams"]["optim.lr"] for g in groups} == {0.001, 0.01}
    first = groups[0]["hparams"]
    assert first["model.batch_norm"] is False, "booleans stay booleans"
    assert first["optim.betas"] == "[0.9, 0.999]"
    for group in groups:
        (session,) = group["sessions"]
        assert session["status"] == "STATUS_SUCCESS"
        assert float(session["startTimeSecs"]) > 1e9, "the real start time, not 0"
        values = {m["name"]["tag"]: m["value"] for m in session["metricValues"]}
        assert 0 <= values["summary/best/val/acc"] <= 1


def test_a_folder_of_classifiers_and_a_gan_lists_every_run_and_metric(outputs):
    """TensorBoard takes one run's experiment summary for a whole folder: each names the other
    family's metrics too, so a GAN beside classifiers keeps its loss columns."""
    experiment, groups = tbread.hparams_sessions(outputs)
    assert len(groups) == 3
    tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"summary/best/val/acc", "accuracy/val/acc", "loss/train/g_loss_epoch"} <= tags
    gan = next(g for g in groups if "my-gan" in g["name"])
    values = {m["name"]["tag"] for m in gan["sessions"][0]["metricValues"]}
    assert "loss/train/g_loss_epoch" in values


def test_time_series_opens_on_accuracy_and_loss_with_train_beside_val(outputs):
    job = sweep_of(outputs) / "0_optim.lr=0.001"
    tags = tbread.time_series_tags(job)
    assert tbread.opened_groups(tags) == ["accuracy", "loss"]
    loss = [t for t in tags if t.startswith("loss/")]
    assert loss == ["loss/train/loss", "loss/train/loss_epoch", "loss/val/loss"]
    assert "schedule/lr" in tags and "epoch" not in tags and "lr" not in tags
    assert {"summary/best/val/acc", "summary/test/acc", "summary/best/confusion_matrix"} <= set(
        tags
    )
    assert {"weights/model/classifier.0.weight", "weights/model/classifier.0.weight.grad"} <= set(
        tags
    ), "trainer.log_histograms=1: each weight beside its gradient"


def test_gan_time_series_opens_on_its_losses_and_outputs(outputs):
    tags = tbread.time_series_tags(latest_run(outputs.parent))
    assert tbread.opened_groups(tags) == ["loss", "output"]
    assert {"schedule/lr_g", "schedule/lr_d", "samples/fixed_noise"} <= set(tags)
    gan = latest_run(outputs.parent)
    assert tbread.image_steps(gan, "samples/fixed_noise")[0] == 0, "the untrained generator"
    assert [v for _, v in tbread.scalars(gan, "schedule/lr_d")] == pytest.approx([2e-4])


def test_custom_scalars_draw_train_beside_val_and_d_beside_g(outputs):
    layout = tbread.custom_scalars_layout(outputs)
    charts = {
        c["title"]: c["multiline"]["tag"][0]
        for category in layout["category"]
        for c in category["chart"]
    }
    loss = charts["loss: train/loss, val/loss"]
    assert re.match(loss, "loss/train/loss_epoch") and re.match(loss, "loss/val/loss")
    assert re.match(charts["accuracy: train/acc, val/acc"], "accuracy/val/acc")
    gan = charts["loss: train/d_loss, train/g_loss"]
    assert re.match(gan, "loss/train/d_loss") and re.match(gan, "loss/train/g_loss")
    outputs_chart = charts["output: train/d_real, train/d_fake"]
    assert re.match(outputs_chart, "output/train/d_fake_epoch")
    assert {c["title"] for c in layout["category"]} == {"classify", "gan"}


def test_the_text_tab_holds_config_command_and_commit(outputs):
    sweep = sweep_of(outputs)
    text = tbread.texts(sweep, "0_optim.lr=0.001")
    by_name = {tag.split("/")[1]: html for tag, html in text.items()}
    assert set(by_name) == {"config", "command", "git"}
    assert "lr: 0.001" in by_name["config"] and "<pre>" in by_name["config"]
    assert "optim.lr=0.001,0.01" in by_name["command"]
    assert "commit" in by_name["git"] or "not started from a git checkout" in by_name["git"]


def test_figures_every_epoch_with_a_slider_and_best_at_the_end(outputs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    job = sweep_of(outputs) / "0_optim.lr=0.001"
    assert len(tbread.image_steps(job, "val/confusion_matrix")) == 2
    assert len(tbread.image_steps(job, "val/misclassified")) == 2
    assert len(tbread.image_steps(job, "summary/best/confusion_matrix")) == 1
    acc = EventAccumulator(str(job))
    acc.Reload()
    assert acc.Tags()["graph"], "trainer.log_graph=true: the model's graph"


def test_the_misclassified_grid_says_how_many_of_how_many():
    from dlexp.tracking.figures import misclassified_caption, misclassified_image

    assert misclassified_caption(3, 4).endswith("true -> predicted, 3 of 4 shown")
    targets = torch.tensor([0, 1, 2, 3, 4, 5])
    preds = torch.tensor([0, 2, 1, 3, 0, 1])  # 4 wrong, 3 shown: one row of tiles
    images = torch.zeros(6, 1, 8, 8, dtype=torch.uint8)
    grid = misclassified_image(images, targets, preds, [str(i) for i in range(6)], limit=3)
    assert grid.ndim == 3 and grid.shape[2] == 3
