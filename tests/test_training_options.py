"""Each trainer/regularization/precision option does what it says, in short in-process runs."""

from __future__ import annotations

import json

import pytest

from dlexp.train import train
from tests.conftest import read_jsonl

pytestmark = pytest.mark.slow

QUICK = ("trainer.epochs=1", "trainer.limit_train_batches=4", "trainer.progress=none")


def _run(make_cfg, tmp_path, *overrides: str, name: str = "run") -> tuple[float, dict, list]:
    run_dir = tmp_path / name
    run_dir.mkdir()
    best = train(make_cfg(*overrides), run_dir=run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    return best, summary, read_jsonl(run_dir / "metrics.jsonl")


@pytest.mark.parametrize(
    "overrides",
    [
        ("model=cnn", "model.channels=[8,16]"),
        ("model=mlp",),
        ("model=lenet", "data.loader=dataloader"),
        ("trainer.precision=bf16",),
        ("scheduler=onecycle",),
        ("scheduler=cosine", "scheduler.warmup_epochs=0.5"),
        ("optim=nesterov", "trainer.grad_clip=1.0", "trainer.channels_last=false"),
        ("regularization=[batchnorm,dropout]", "model.activation=tanh", "model.pooling=avg"),
    ],
    ids=lambda o: " ".join(o),
)
def test_option_trains_without_error(make_cfg, tmp_path, overrides):
    best, summary, records = _run(make_cfg, tmp_path, *QUICK, *overrides)
    assert summary["status"] == "done"
    assert 0.0 <= best <= 1.0
    assert records[-1]["kind"] == "best"


def test_l1_and_l2_penalties_are_logged_separately(make_cfg, tmp_path):
    _, _, records = _run(
        make_cfg, tmp_path, *QUICK, "regularization=[l1,l2]", "trainer.log_every_n_steps=1"
    )
    steps = [r for r in records if r["kind"] == "step"]
    assert all(r["train/l1_penalty"] > 0 and r["train/l2_penalty"] > 0 for r in steps)
    # the penalties shrink the weights they act on: with l2 alone and a big λ, they fall
    _, _, strong = _run(
        make_cfg,
        tmp_path,
        *QUICK,
        "regularization=[l2]",
        "regularization.l2=0.05",
        "trainer.log_every_n_steps=1",
        name="strong",
    )
    penalty = [r["train/l2_penalty"] for r in strong if r["kind"] == "step"]
    assert penalty[-1] < penalty[0]


def test_overfit_batches_memorises_one_batch(make_cfg, tmp_path):
    best, _, _ = _run(
        make_cfg,
        tmp_path,
        "trainer.overfit_batches=1",
        "trainer.epochs=40",
        "trainer.progress=none",
        "trainer.test_after_fit=false",
    )
    assert best == 1.0


def test_early_stopping_stops_when_nothing_improves(make_cfg, tmp_path):
    _, summary, records = _run(
        make_cfg,
        tmp_path,
        "optim=sgd",
        "optim.lr=1e-12",  # effectively frozen: validation accuracy cannot improve
        "trainer.epochs=10",
        "trainer.limit_train_batches=2",
        "trainer.early_stopping.patience=2",
        "trainer.early_stopping.min_delta=0.01",
        "trainer.progress=none",
    )
    assert summary["stopped_early"] is True
    assert summary["epochs_completed"] == 3
    assert len([r for r in records if r["kind"] == "epoch"]) == 3


def test_warmup_ramps_the_learning_rate(make_cfg, tmp_path):
    _, _, records = _run(
        make_cfg,
        tmp_path,
        "trainer.epochs=2",
        "trainer.limit_train_batches=10",
        "trainer.log_every_n_steps=1",
        "scheduler.warmup_epochs=1",
        "trainer.progress=none",
    )
    lrs = [r["lr"] for r in records if r["kind"] == "step"]
    assert lrs[0] < lrs[5] < lrs[9] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-3)


def test_monitor_without_validation_split_is_explained(make_cfg, tmp_path):
    from dlexp.errors import DlexpError

    with pytest.raises(DlexpError, match="val_fraction=0"):
        _run(make_cfg, tmp_path, *QUICK, "data.val_fraction=0")
    best, summary, _ = _run(
        make_cfg,
        tmp_path,
        *QUICK,
        "data.val_fraction=0",
        "trainer.monitor=train/loss",
        "trainer.monitor_mode=min",
        name="ok",
    )
    assert summary["status"] == "done" and best > 0


def test_gradient_norm_is_logged_when_clipping(make_cfg, tmp_path):
    _, _, records = _run(
        make_cfg, tmp_path, *QUICK, "trainer.grad_clip=0.5", "trainer.log_every_n_steps=1"
    )
    norms = [r["train/grad_norm"] for r in records if r["kind"] == "step"]
    assert len(norms) == 4 and all(n > 0 for n in norms)


def test_compile_where_unsupported_says_so(make_cfg, tmp_path, monkeypatch):
    from dlexp import session
    from dlexp.errors import DlexpError

    def unsupported() -> None:
        raise RuntimeError("dynamo is not supported on this platform")

    monkeypatch.setattr(session, "check_dynamo", unsupported)
    with pytest.raises(DlexpError, match="not supported here.*trainer.compile=false"):
        _run(make_cfg, tmp_path, *QUICK, "trainer.compile=true")
