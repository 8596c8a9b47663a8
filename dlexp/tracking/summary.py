"""summary.json: what a finished (or failed, or interrupted) run was and how it went."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlexp.tracking.provenance import Stopwatch, environment, git_info
from dlexp.tracking.runfolder import RunFolder
from dlexp.tracking.writes import now_iso


def last_epoch_record(path: Path) -> dict[str, Any]:
    last: dict[str, Any] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut off by a crash
            if record.get("kind") == "epoch":
                last = record
    return last


def common_fields(
    run_dir: Path,
    cfg: Mapping[str, Any],
    choices: Mapping[str, str],
    state: Any,
    *,
    status: str,
    error: str | None,
    clock: Stopwatch,
    device: Any,
    effective: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What every task's summary.json says: outcome, progress, timing, provenance, and under
    "effective" the settings as they ran (see `effective_settings`).

    A resumed run's folder still holds the summary of its earlier part: the start time and the
    wall time count from the first start, over every session."""
    seconds = state.train_seconds
    folder = RunFolder(run_dir)
    earlier = folder.read_summary()
    wall = clock.elapsed + float(earlier.get("wall_time_s") or 0.0)
    return {
        "status": status,
        "error": error,
        "run_dir": str(run_dir),
        "best": {"value": state.best, "epoch": state.best_epoch},
        "final": {k: v for k, v in last_epoch_record(folder.metrics_path).items() if "/" in k},
        "epochs_completed": state.epoch,
        "steps": state.step,
        "stopped_early": state.stopped_early,
        "wall_time_s": round(wall, 3),
        "train_time_s": round(seconds, 3),
        "samples_per_sec": round(state.samples / seconds, 1) if seconds else None,
        "started_at": earlier.get("started_at") or clock.started_at,
        "sessions": int(earlier.get("sessions") or 1) + 1 if earlier else 1,
        "ended_at": now_iso(),
        "seed": cfg["trainer"]["seed"],
        "choices": dict(choices),
        "effective": dict(effective or {}),
        "environment": environment(device),
        "git": git_info(Path.cwd()),
    }


# optimizer settings that a schedule changes step by step (the rate) or that are per group
_SCHEDULED = ("_target_", "lr", "weight_decay")


def effective_settings(
    cfg: Mapping[str, Any],
    *,
    device: Any,
    grad_clip: float | None,
    optimizers: Mapping[str, Any],
    threads: int | None = None,
    channels_last: bool | None = None,
    data: Any = None,
    monitor_mode: str | None = None,
) -> dict[str, Any]:
    """The settings as they ran, where the config left the choice to dlexp or PyTorch (null,
    auto) or where a component changes a configured value: config.yaml keeps what was asked,
    summary.json ("effective") and HParams say what ran.

    `optimizers` maps each optimizer's config key (optim, model.optim_g, ...) to the optimizer,
    read after the scheduler is built (a one-cycle schedule may own the momentum).
    `monitor_mode`: the direction a task's monitor follows, where trainer.monitor_mode applies."""
    ran: dict[str, Any] = {
        "trainer.device": str(device),
        "trainer.grad_clip": float(grad_clip or 0.0),  # 0.0: off
    }
    if monitor_mode is not None:
        ran["trainer.monitor_mode"] = monitor_mode
    if threads is not None and str(device).startswith("cpu"):
        ran["trainer.threads"] = threads
    if channels_last is not None:
        ran["trainer.channels_last"] = bool(channels_last)
    if getattr(data, "loader_kind", None):
        ran["data.loader"] = data.loader_kind
    model = cfg.get("model") or {}
    if getattr(data, "image_size", None) and "image_size" in model:
        ran["model.image_size"] = int(data.image_size)
    if (
        getattr(data, "vocab", None) is not None
        and (cfg.get("data") or {}).get("max_vocab", 0) is None
    ):
        ran["data.max_vocab"] = len(data.vocab)  # null: every training word
    for switch in ("dropout", "batch_norm"):  # the regularization group's switch wins
        chosen = (cfg.get("regularization") or {}).get(switch)
        if chosen is not None and switch in model:
            ran[f"model.{switch}"] = chosen
    sched = cfg.get("scheduler") or {}
    for key, optimizer in optimizers.items():
        node = _select(cfg, key)
        group = optimizer.param_groups[0]
        for name in node:
            if name not in _SCHEDULED and name in group:
                value = group[name]
                ran[f"{key}.{name}"] = list(value) if isinstance(value, tuple) else value
        if group.get("fused") and "fused" not in node:  # chosen by the builder on CUDA
            ran[f"{key}.fused"] = True
        if sched.get("name") == "onecycle" and key == "optim":
            ran["scheduler.max_lr"] = sched.get("max_lr") or group.get("max_lr") or node.get("lr")
            ran["scheduler.cycle_momentum"] = bool(sched.get("cycle_momentum", False))
    return ran


def _select(cfg: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) or {}
    return node
