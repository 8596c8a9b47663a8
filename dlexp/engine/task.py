"""The seam between the runner and a family of models: what a task must say and do.

The runner (`engine/runner.py`) owns the life of a run — stop handling, restore, loggers,
the epoch range, the best epoch and early stopping, checkpoints, pruning, the epoch table and
the summary. A task owns what differs: its parts, its plain training loop, its metrics and
its checkpoint keys. A task is any object with these members (a Protocol, not a base class).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from dlexp.errors import DlexpError


class NonFiniteLoss(DlexpError):
    """A loss or a weight stopped being finite; the run fails with what to try."""


def improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    """Whether `value` beats `best` by more than `min_delta` (`mode`: max or min)."""
    if not math.isfinite(value):
        return False  # a NaN is never the best epoch
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


@dataclass(frozen=True)
class Monitor:
    """The metric that picks `best.pt`. `mode` is max or min; `last` makes every epoch the
    best (a GAN without a feature network has no metric to judge by)."""

    metric: str
    mode: str = "max"


class Outputs(Protocol):
    """Where a task's numbers and pictures go; the runner routes them to the run folder,
    TensorBoard and the terminal (only the main process writes, see `engine/runner.py`)."""

    def log(self, metrics: Mapping[str, float], step: int, kind: str, **extra: Any) -> None: ...

    def figure(self, tag: str, figure: Any, step: int, filename: str | None = None) -> None: ...

    def image(self, tag: str, grid: Any, step: int, filename: str, title: str = "") -> None: ...

    def info(self, message: str) -> None: ...

    @property
    def active(self) -> bool: ...


class Silent:
    """Outputs that go nowhere: for building a task outside a run (`eval`, `validate`)."""

    active = False

    def log(self, metrics: Mapping[str, float], step: int, kind: str, **extra: Any) -> None:
        pass

    def figure(self, tag: str, figure: Any, step: int, filename: str | None = None) -> None:
        pass

    def image(self, tag: str, grid: Any, step: int, filename: str, title: str = "") -> None:
        pass

    def info(self, message: str) -> None:
        pass


class RunState(Protocol):
    """The counters every task's state dataclass has (checkpointed as `train_state`)."""

    epoch: int
    batch: int
    step: int
    best: float | None
    best_epoch: int
    bad_epochs: int
    samples: int
    train_seconds: float
    stopped_early: bool


class Task(Protocol):
    family: str  # the registry's name for it: `model.task` in the config
    title: str  # the final panel's title
    monitor: Monitor
    columns: list[str]  # the epoch table's columns between `epoch` and `best`
    summary_keys: list[str]  # final metrics the closing panel shows
    unused_groups: tuple[str, ...]  # config groups it ignores: not its hyperparameters
    # the settings as they ran where the config left them to dlexp or a component changed
    # them (tracking.summary.effective_settings); {} until build() has run
    effective: dict[str, Any]
    epochs: int
    # what a run is judged by, most important first (HParams' columns, after best/<monitor>)
    metrics: list[str]
    # metrics drawn on one chart: group → metrics (TensorBoard's Custom Scalars, and the group
    # its Time Series shows them under: loss/train/loss beside loss/val/loss)
    charts: dict[str, list[str]]

    def build(self, cfg: Mapping[str, Any], device: torch.device, out: Outputs) -> None:
        """Data, models, optimizers and loop options, from the config."""

    def new_state(self, saved: Mapping[str, Any] | None = None) -> Any:
        """A fresh state dataclass, or the one a checkpoint's `train_state` holds."""

    def describe(self, resume: bool) -> str:
        """The lines under `run folder: ...` that say what trains on what."""

    def num_params(self) -> dict[str, int]: ...

    def batches_per_epoch(self) -> int: ...

    def start_fit(self, state: Any) -> None:
        """Before the first epoch of this session (e.g. the untrained generator's scores)."""

    def train_epoch(
        self,
        state: Any,
        on_log: Callable[[dict[str, float], int], None],
        should_stop: Callable[[], bool],
    ) -> None:
        """Train `state.epoch` from `state.batch` to its end, or until `should_stop()`."""

    def end_epoch(self, state: Any, epoch: int) -> dict[str, float]:
        """The finished epoch's metrics (training means, validation); resets the epoch sums."""

    def progress(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The few numbers the progress bar shows from a step record."""

    def table_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        """One row of the epoch table (`columns`) from an epoch's metrics."""

    def checkpoint(self) -> dict[str, Any]:
        """This task's keys of a checkpoint (weights, optimizers, data description)."""

    def restore(self, payload: Mapping[str, Any]) -> None:
        """Load this task's keys of `payload`; the runner restores counters and RNGs."""

    def files(self) -> dict[str, str]:
        """Text files for the run folder beside the checkpoints (e.g. `vocab.json`)."""

    def networks(self) -> dict[str, torch.nn.Module]:
        """The networks it trains, by name (weight and gradient histograms)."""

    def graph(self) -> tuple[torch.nn.Module, Any]:
        """A module and an example input on its device: TensorBoard's model graph."""

    def finish(self, state: Any, best: Mapping[str, Any] | None) -> dict[str, float]:
        """After the last epoch, with `best.pt`'s payload: pictures and `test/*` metrics."""

    def summary(self, state: Any) -> dict[str, Any]:
        """This task's fields of summary.json."""
