"""Weights & Biases: one W&B run per dlexp run; a sweep's jobs form one group.

Offline unless you have logged in (WANDB_API_KEY, or `wandb login`): the run is then written to
`<dir>/wandb/offline-run-*`, uploaded later with `wandb sync`. `logger.wandb.mode` picks
online, offline or disabled; $WANDB_MODE wins over both. A resumed run continues the same W&B
run id (kept in the run folder's loggers.json).
"""

from __future__ import annotations

import netrc
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlexp.tracking.loggers import Record, RunStart
from dlexp.tracking.runfolder import CONFIG

EXIT = {"done": 0, "interrupted": 255}  # anything else: 1 (failed)


def logged_in() -> bool:
    """Whether W&B has an API key here, without asking its server."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbLogger:
    batched = True

    def __init__(self, settings: Mapping[str, Any], run_dir: Path, resume: int | None) -> None:
        self.settings, self.run_dir = dict(settings), run_dir
        self.run: Any = None
        self.note = ""

    def start(self, run: RunStart, saved: Mapping[str, Any]) -> dict[str, Any]:
        import wandb  # heavy (seconds): only when chosen

        mode = os.environ.get("WANDB_MODE") or self.settings.get("mode")
        mode = mode or ("online" if logged_in() else "offline")
        where = self.settings.get("dir") or os.environ.get("WANDB_DIR") or str(run.output_root)
        Path(where).mkdir(parents=True, exist_ok=True)
        run_id = saved.get("id") or uuid.uuid4().hex[:8]
        self.run = wandb.init(
            project=self.settings.get("project") or "dlexp",
            entity=self.settings.get("entity"),
            name=run.name,
            id=run_id,
            resume="allow",
            dir=where,
            mode=mode,
            group=run.sweep.name if run.sweep is not None else None,
            job_type=run.family or None,
            tags=list(self.settings.get("tags") or []) or None,
            notes=run.command.strip() or None,
            config=dict(run.hparams),
            settings=wandb.Settings(silent=True, console="off"),
        )
        if run.resumed_at is None and run.config_text:  # files in run.dir go up with the run
            (Path(self.run.dir) / f"dlexp_{CONFIG}").write_text(run.config_text, encoding="utf-8")
        if mode == "offline":
            offline = Path(self.run.dir).parent  # run.dir is its files/ folder
            self.note = f"W&B (offline): {offline}; upload it with `wandb sync {offline}`"
        elif mode == "online":
            self.note = f"W&B: {self.run.url}"
        return {"id": run_id, "project": self.run.project}

    def log_metrics(self, records: Sequence[Record]) -> None:
        for record in records:
            self.run.log(dict(record.metrics), step=record.step)

    def log_image(self, tag: str, image: Any, step: int) -> None:
        import wandb

        self.run.log({tag: wandb.Image(image)}, step=step)

    def finish(self, status: str, summary: Mapping[str, Any]) -> None:
        best, monitor = summary.get("best") or {}, (summary.get("monitor") or {}).get("metric")
        ending: dict[str, Any] = {"status": status, "epochs": summary.get("epochs_completed")}
        if monitor and best.get("value") is not None:
            ending |= {f"best/{monitor}": best["value"], "best_epoch": best.get("epoch")}
        ending |= dict(summary.get("test") or {})
        if summary.get("wall_time_s") is not None:
            ending["wall_time_s"] = summary["wall_time_s"]
        self.run.summary.update(ending)
        self.run.finish(exit_code=EXIT.get(status, 1))
        self.run = None

    def close(self) -> None:
        if self.run is not None:  # ended without finish(): a crash in the run itself
            self.run.finish(exit_code=1)
            self.run = None
