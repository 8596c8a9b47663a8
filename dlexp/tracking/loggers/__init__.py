"""Where a run's numbers and pictures go besides metrics.jsonl: one small class per logger,
each behind the `Logger` protocol; `RunLogger` (tracking/runlog.py) hands every record to each.

    logger=[tensorboard]          the default: event files in the run folder
    logger=[tensorboard,csv]      + metrics.csv and run.csv in the run folder
    logger=[tensorboard,mlflow]   + an MLflow run (pip install 'dlexp[mlflow]')
    logger=wandb                  a W&B run only (pip install 'dlexp[wandb]')

Every logger gets the same things: the hyperparameters (the set TensorBoard's HParams shows),
every scalar at its step, the pictures, the summary and the status at the end. A logger's
module is imported only when the logger is chosen: mlflow and wandb take seconds to import.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

MODULES = {
    "tensorboard": "to_tensorboard:TensorBoardLogger",
    "csv": "to_csv:CsvLogger",
    "mlflow": "to_mlflow:MlflowLogger",
    "wandb": "to_wandb:WandbLogger",
}


@dataclass
class RunStart:
    """What a logger learns when the run starts (or resumes)."""

    run_dir: Path
    name: str  # the user's name=..., else the run folder's name
    family: str  # the task's family: classify, gan
    hparams: dict[str, Any]  # flat: {"optim.lr": 0.01, ...}
    headline: list[str]  # the hyperparameters to show first (what this run varies)
    metrics: list[str]  # what the run is judged by, most important first
    charts: dict[str, list[str]]  # metrics drawn together: group name → metrics
    config_text: str  # config.yaml
    command: str  # command.txt
    git: dict[str, Any]  # commit, dirty
    started: float  # time.time() of the first start
    resumed_at: int | None = None  # the checkpoint's step when resuming
    sweep: Path | None = None  # the sweep folder, for a sweep's job
    output_root: Path = field(default_factory=lambda: Path("outputs"))


@dataclass
class Record:
    """One line of metrics.jsonl: scalars at a step."""

    metrics: dict[str, float]
    step: int
    kind: str  # step, epoch, eval, test, best
    time: float = 0.0
    epoch: int | None = None  # the epoch a step record belongs to


class Logger(Protocol):
    # True: records come in batches, at the end of each epoch (and every half minute), so
    # that a run killed between checkpoints leaves no steps that its resumed run repeats
    batched: bool
    note: str  # one line for the terminal once started (where to look), or ""

    def start(self, run: RunStart, saved: Mapping[str, Any]) -> dict[str, Any]:
        """Open this logger's run, or reopen it (`saved`: what `start` returned last time);
        returns what a resumed run needs to continue the same run (kept in loggers.json)."""

    def log_metrics(self, records: Sequence[Record]) -> None: ...

    def log_image(self, tag: str, image: Any, step: int) -> None:
        """`image`: RGB, (H, W, 3) uint8."""

    def finish(self, status: str, summary: Mapping[str, Any]) -> None:
        """The run ended (done, failed, interrupted, pruned); `summary`: summary.json."""

    def close(self) -> None: ...


def open_logger(name: str, settings: Mapping[str, Any], run_dir: Path, resume: int | None) -> Any:
    """The logger called `name`, its module imported only now."""
    module, _, cls = MODULES[name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(settings, run_dir, resume)
