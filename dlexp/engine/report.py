"""What a run says about itself, beside its life cycle (engine/runner.py). When it starts:
where it runs and on what, notes on the CPU, and its settings and model graph to the loggers.
When it ends: its summary.json and the closing panel in the terminal.

summary.json is written also for a run that failed before its task made a state (its
counters are then zero); the closing panel only for a run that opened its loggers: a failure
while building says everything in its message.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dlexp.engine.task import Task
from dlexp.tracking.provenance import Stopwatch
from dlexp.tracking.runlog import RunLogger, hparams_of
from dlexp.tracking.summary import common_fields


def opening(
    task: Task, run_dir: Path, step: int | None, trainer: Mapping[str, Any], device: torch.device
) -> list[str]:
    """The messages a run starts with: where it runs (and, resumed from `step`, from where),
    what trains on what, and notes on the CPU."""
    resumed = step is not None
    head = f"resuming {run_dir} from step {step}" if resumed else f"run folder: {run_dir}"
    return [f"{head}\n{task.describe(resumed)}", *cpu_notes(trainer, device)]


def cpu_notes(trainer: Mapping[str, Any], device: torch.device) -> list[str]:
    """Advice on `trainer.threads` when a run trains on the CPU: more threads than cores, or
    a machine busy with other work."""
    cores = os.cpu_count() or 1
    if device.type != "cpu":
        return []
    notes = []
    if (trainer["threads"] or 0) > cores:
        notes.append(
            f"note: trainer.threads={trainer['threads']} is more than this machine's "
            f"{cores} cores, which is slower than trainer.threads={cores}"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if not trainer["threads"] and load > cores:
        # torch's threads wait on each other when other work holds the cores
        notes.append(
            f"note: the CPU is busy (load {load:.1f} on {cores} cores); while other work "
            "runs, trainer.threads=1 can train several times faster"
        )
    return notes


def log_settings(
    logger: RunLogger,
    task: Task,
    cfg: Mapping[str, Any],
    choices: Mapping[str, str],
    started: float,
) -> None:
    """The run's hyperparameters and the metrics it is judged by (HParams), and its graph."""
    monitor = task.monitor
    best = [f"best/{monitor.metric}"] if monitor.mode != "last" else []
    logger.log_hparams(
        hparams_of(cfg, choices, task.unused_groups, task.effective),
        metrics=[*best, *task.metrics],
        charts=task.charts, family=task.family, started=started,
    )  # fmt: skip
    logger.log_graph(task.graph)


def run_summary(
    task: Task,
    state: Any | None,
    *,
    run_dir: Path,
    cfg: Mapping[str, Any],
    choices: Mapping[str, str],
    status: str,
    error: str | None,
    test: Mapping[str, float],
    clock: Stopwatch,
    device: torch.device,
) -> dict[str, Any]:
    """summary.json: the fields every run has, then the task's own. `state` is None for a
    run that failed before its task made one."""
    summary = common_fields(
        run_dir, cfg, choices, state if state is not None else _NoState(),
        status=status, error=error, clock=clock, device=device, effective=task.effective,
    )  # fmt: skip
    summary["task"] = task.family
    summary["monitor"] = {"metric": task.monitor.metric, "mode": task.monitor.mode}
    summary["test"] = dict(test)
    params = task.num_params() if state is not None else {}
    summary["num_params"] = sum(params.values())
    if len(params) > 1:
        summary["num_params_by_net"] = params
    if state is not None:
        summary.update(task.summary(state))
    return summary


def closing_panel(
    task: Task,
    state: Any,
    summary: Mapping[str, Any],
    *,
    status: str,
    test: Mapping[str, float],
    clock: Stopwatch,
    resumed: bool,
    run_dir: Path,
) -> dict[str, Any]:
    """The rows of the panel that closes a run: its outcome, the best and final metrics the
    task names, the test split, and where the run lies."""
    monitor = task.monitor.metric
    shown: dict[str, Any] = {"status": status}
    if task.monitor.mode != "last":
        shown.update({f"best {monitor}": state.best, "best epoch": state.best_epoch})
    final = summary["final"]
    shown.update({k: final[k] for k in task.summary_keys if k in final})
    shown.update(test)
    shown["epochs"] = state.epoch
    wall = f"{clock.elapsed:.1f}s"
    if resumed:
        wall += f" (whole run {summary['wall_time_s']:.1f}s)"
    shown["wall time"] = wall
    shown["run folder"] = str(run_dir)
    return shown


@dataclasses.dataclass
class _NoState:
    """The counters of a run that failed before its task made a state."""

    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int = 0
    samples: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False
