"""Small trained runs for the tests of what comes after training (predict, export).

One LeNet run and one text run are trained per test session (conftest's shared_lenet and
shared_text; read-only, copy one before changing it), in-process and small: a few dozen steps, enough for confident predictions, so that the comparisons below are
not decided by near-ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlexp.cli.train import train
from dlexp.config.resolvers import to_plain
from dlexp.engine.checkpoint import load_checkpoint
from dlexp.engine.task import Silent
from dlexp.tasks import registry
from dlexp.tasks.classify.loop import evaluate
from tests import conftest
from tests.textdata import sentiment_rows, write_table

QUIET = ("trainer.progress=none", "trainer.figures_every_n_epochs=null")


@dataclass
class Trained:
    run: Path
    cfg: dict[str, Any]
    val_texts: list[str] | None = None  # text runs: the validation file's texts, in order


def compose_cfg(tmp: Path, *overrides: str) -> dict[str, Any]:
    """The shipped configs with `overrides`, quiet, outputs and data under `tmp`, as plain data."""
    return to_plain(conftest.compose_cfg(tmp, *QUIET, *overrides))


def _train(tmp: Path, name: str, *overrides: str) -> tuple[Path, dict[str, Any]]:
    from omegaconf import OmegaConf

    cfg = compose_cfg(tmp, *overrides)
    run = tmp / "outputs" / "runs" / name
    run.mkdir(parents=True)
    train(OmegaConf.create(cfg), run_dir=run)
    return run, cfg


def lenet_run(tmp: Path) -> Trained:
    run, cfg = _train(
        tmp, "lenet", "model=lenet", "trainer.epochs=1", "trainer.limit_train_batches=40"
    )
    return Trained(run, cfg)


def text_run(tmp: Path) -> Trained:
    rows = sentiment_rows(160)
    train_file = write_table(tmp / "texts" / "train.csv", rows[:120], "csv")
    val_file = write_table(tmp / "texts" / "val.csv", rows[120:], "csv")
    run, cfg = _train(
        tmp, "text", "model=lstm_sentiment", "model.hidden_size=16", "model.embedding_dim=8",
        "data=text_files", f"data.train={train_file}", f"data.val={val_file}",
        "data.test_fraction=0", "optim.lr=0.02", "trainer.epochs=3", "trainer.batch_size=16",
    )  # fmt: skip
    return Trained(run, cfg, [str(r["text"]) for r in rows[120:]])


def eval_predictions(trained: Trained) -> tuple[torch.Tensor, torch.Tensor]:
    """What `dlexp eval` computes on the validation split with best.pt, as class indices and
    probabilities: the task built from the run's config, the checkpoint's weights."""
    cfg = {**trained.cfg, "trainer": {**trained.cfg["trainer"], "limit_val_batches": None}}
    task = registry.make_task(cfg)
    task.build(cfg, torch.device("cpu"), Silent())
    task.model.load_state_dict(load_checkpoint(trained.run / "checkpoints" / "best.pt")["model"])
    _, preds, _ = evaluate(task.model, task.data.val, task.opts, keep_predictions=True)
    probs = []
    with torch.no_grad():
        for x, _ in task.data.val.batches(0):
            logits = task.model(*x) if isinstance(x, tuple) else task.model(x)
            probs.append(logits.softmax(1))
    assert preds is not None
    return preds, torch.cat(probs)
