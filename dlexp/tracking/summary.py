"""summary.json: what a finished (or failed, or interrupted) run was and how it went."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlexp.tracking.provenance import Stopwatch, environment, git_info
from dlexp.tracking.runfolder import RunFolder, now_iso


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
) -> dict[str, Any]:
    """What every task's summary.json says: outcome, progress, timing, provenance.

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
        "environment": environment(device),
        "git": git_info(Path.cwd()),
    }
