"""One runner for every task: the life of a run, from set-up to summary.

The runner owns what every family shares — the lock on the run folder, stop handling,
restoring a checkpoint, `latest`, the loggers and HParams, the epoch range, the best epoch
and early stopping, epoch checkpoints, pruning, the epoch table, the summary and clean-up.
What the run says about itself (its opening lines, HParams, summary.json, the closing panel)
is put together in engine/report.py. A `Task` (engine/task.py) owns what differs, in its own
plain loop. Read `fit` top to bottom.

A resume that is refused or fails before its first step leaves the folder as it found it:
nothing is written until the device is set up, the lock is held and the checkpoint restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dlexp.config.paths import expand_path
from dlexp.engine import distributed
from dlexp.engine.checkpoint import (
    FORMAT,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    save_epoch_checkpoints,
)
from dlexp.engine.interrupt import StopRequest, outcome, with_checkpoint_note
from dlexp.engine.report import closing_panel, log_settings, opening, run_summary
from dlexp.engine.setup import check_writable, setup_torch
from dlexp.engine.task import NonFiniteLoss, Task, improved
from dlexp.sweeps import trial
from dlexp.tracking import figures
from dlexp.tracking.console import Reporter
from dlexp.tracking.provenance import Stopwatch, git_patch, requirements
from dlexp.tracking.runfolder import RunFolder
from dlexp.tracking.runlog import RunLogger


class Runner:
    """Runs `task` in `folder`: from scratch, or from checkpoint `resume` in the same folder."""

    def __init__(
        self,
        task: Task,
        cfg: Mapping[str, Any],
        folder: RunFolder,
        choices: Mapping[str, str],
        resume: Path | None = None,
    ) -> None:
        self.task, self.cfg, self.folder, self.choices = task, cfg, folder, choices
        self.resume = resume
        trainer = cfg["trainer"]
        self.clock = Stopwatch()
        self.device = torch.device("cpu")  # set up in run(), inside its error handling
        self.main = distributed.is_main()  # under torchrun only rank 0 reports and writes
        self.reporter = Reporter(trainer["progress"] if self.main else "none", [])
        self.logger: RunLogger | None = None
        self.stop = StopRequest()
        self.state: Any = None
        self.started = False  # the first step may be taken: from now on the folder changes
        self._agreed_stop = False
        self._rngs: list[Any] = []  # every rank's generators, gathered just before each save

    # -- Outputs: where the task's numbers and pictures go -----------------------------------
    @property
    def active(self) -> bool:
        return self.logger is not None

    def log(self, metrics: Mapping[str, float], step: int, kind: str, **extra: Any) -> None:
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=step, kind=kind, **extra)

    def figure(self, tag: str, fig: Any, step: int, filename: str | None = None) -> None:
        if self.logger is None:
            return
        self.logger.log_figure(tag, fig, step)
        figures.save_png(fig, self.folder.figure(filename or f"{tag.split('/')[-1]}.png"))

    def image(self, tag: str, grid: Any, step: int, filename: str, title: str = "") -> None:
        if self.logger is None:
            return
        figures.save_grid(grid, self.folder.figure(filename))
        self.logger.log_figure(tag, figures.grid_image(grid, title), step)

    def info(self, message: str) -> None:
        self.reporter.info(message)

    # -- the whole run -----------------------------------------------------------------------
    def run(self) -> float:
        """Train; returns the monitored metric (what a sweep or search optimises)."""
        status, error, test = "failed", None, {}
        task, trainer = self.task, self.cfg["trainer"]
        with contextlib.ExitStack() as held:  # released after the summary is written
            try:
                held.enter_context(self.stop)
                trainer = {**trainer, "device": distributed.device_for_rank(trainer["device"])}
                self.device = setup_torch(trainer)
                distributed.init(str(self.device))
                if self.main:
                    held.enter_context(self.folder.lock())
                    if self.resume is None:  # a new run describes itself from the start
                        self.write_run_files()
                task.build(self.cfg, self.device, self)
                self.reporter.columns = ["epoch", *task.columns, "best"]
                self.state = task.new_state()
                if self.resume is not None:  # last: nothing may draw from the RNGs after this
                    self.restore(load_checkpoint(self.resume, self.device))
                if self.main:
                    self.open_folder()
                self.started = True
                self.announce()
                try:
                    self.fit()
                except NonFiniteLoss as exc:
                    raise with_checkpoint_note(exc, self.folder.checkpoints) from None
                if self.should_stop():
                    self.gather_rng()
                    self.save("last")
                    status = "interrupted"
                    raise self.stop.stopped(self.state.step, self.state.epoch, self.folder.path)
                test = self.finish()
                status = "done"
            except BaseException as exc:
                status, error = outcome(exc)
                raise
            finally:
                self.close(status, error, test)
        return self.objective()

    def write_run_files(self) -> None:
        """The resolved config, the exact command and the provenance: the folder describes itself."""
        self.folder.write_config(self.cfg)
        self.folder.write_command(resumed=self.resume is not None)
        self.folder.write_provenance(requirements(), git_patch(Path.cwd()))

    def open_folder(self) -> None:
        """Everything checked and restored: now the run writes into its folder."""
        n_params = sum(self.task.num_params().values())
        check_writable(self.folder.checkpoints, expected_bytes=12 * n_params)
        if self.resume is not None:
            self.write_run_files()
        for name, text in self.task.files().items():
            self.folder.write_file(name, text)
        # `latest` moves once the run has started, not for one that failed to
        self.folder.set_latest(expand_path(self.cfg["paths"]["output_root"]))
        step = self.state.step if self.resume is not None else None
        cfg = self.cfg
        self.logger = RunLogger(
            self.folder.path, resume_step=step, loggers=cfg.get("logger"), trainer=cfg["trainer"],
            output_root=expand_path(cfg["paths"]["output_root"]), say=self.reporter.info,
        )  # fmt: skip
        log_settings(self.logger, self.task, cfg, self.choices, self.clock.start)

    def announce(self) -> None:
        step = self.state.step if self.resume is not None else None
        for message in opening(self.task, self.folder.path, step, self.cfg["trainer"], self.device):
            self.reporter.info(message)

    # -- the epochs --------------------------------------------------------------------------
    def fit(self) -> None:
        """Epochs from `state.epoch` to the last: train, judge, checkpoint, maybe stop early."""
        task, state = self.task, self.state
        monitor = task.monitor
        early = self.cfg["trainer"].get("early_stopping") or {}
        patience, min_delta = early.get("patience"), float(early.get("min_delta") or 0.0)
        task.start_fit(state)
        for epoch in range(state.epoch, task.epochs):
            if self.should_stop():
                return
            self.reporter.start_epoch(epoch, task.epochs, task.batches_per_epoch(), state.batch)
            task.train_epoch(state, self.log_step, self.should_stop)
            if self.should_stop():
                return
            metrics = task.end_epoch(state, epoch + 1)
            state.epoch, state.batch = epoch + 1, 0
            value = metrics.get(monitor.metric)
            if monitor.mode == "last":  # nothing to judge by: the newest epoch is the best
                is_best = True
                state.best_epoch = epoch + 1
            elif value is None:  # not measured this epoch (e.g. evaluated every N epochs)
                is_best = False
            else:
                is_best = improved(value, state.best, monitor.mode, min_delta)
                if is_best:
                    state.best, state.best_epoch, state.bad_epochs = value, epoch + 1, 0
                else:
                    state.bad_epochs += 1
            self.end_epoch(metrics, is_best)
            if value is not None and trial.should_prune(self.cfg, state.epoch, value):
                raise trial.Pruned(
                    f"pruned by the search after epoch {state.epoch} "
                    f"({monitor.metric} = {value:.4g})"
                )
            if patience and state.bad_epochs >= patience:
                state.stopped_early = True
                self.reporter.info(
                    f"early stopping: {monitor.metric} has not improved for {patience} "
                    f"evaluations (best {state.best:.4g} at epoch {state.best_epoch})"
                )
                return

    def log_step(self, metrics: dict[str, float], batches_done: int) -> None:
        """A log interval's record, from the task's loop (values already on the host)."""
        if distributed.world_size() > 1:  # every rank stops at the same step, or none does
            flag = torch.tensor([float(self.stop.requested is not None)], device=self.device)
            distributed.all_reduce_sum(flag)
            self._agreed_stop = bool(flag.item())
        if self.logger is None:
            return
        state = self.state
        self.logger.log_metrics(metrics, step=state.step, kind="step", epoch=state.epoch + 1)
        rate = metrics.get("throughput/samples_per_sec", 0.0)
        self.reporter.update(batches_done, self.task.progress(metrics), rate)

    def should_stop(self) -> bool:
        """Checked after every step: Ctrl-C / SIGTERM finish the step, then save and stop."""
        if distributed.world_size() > 1:
            return self._agreed_stop  # agreed on at log intervals, see log_step
        return self.stop.requested is not None

    def end_epoch(self, metrics: dict[str, float], is_best: bool) -> None:
        state = self.state
        metrics = {**metrics, "epoch": float(state.epoch)}
        self.gather_rng()
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=state.step, kind="epoch", epoch=state.epoch)
            self.logger.log_histograms(self.task.networks(), step=state.step, epoch=state.epoch)
            keep = self.cfg["trainer"]["keep_last"]
            save_epoch_checkpoints(self.save, self.folder.checkpoints, state.epoch, is_best, keep)
        row = {"epoch": state.epoch, **self.task.table_row(metrics)}
        row["best"] = "*" if is_best and self.task.monitor.mode != "last" else ""
        self.reporter.end_epoch(row)

    # -- checkpoints -------------------------------------------------------------------------
    def gather_rng(self) -> None:
        """Every rank's generators, for rank 0's checkpoint (all ranks call this together)."""
        self._rngs = distributed.gather_objects(capture_rng())

    def save(self, name: str) -> None:
        if not self.main:
            return
        rngs = self._rngs or [capture_rng()]
        payload = {
            "format": FORMAT,
            **self.task.checkpoint(),
            "train_state": dataclasses.asdict(self.state),
            "rng": rngs[0],
            "rng_by_rank": rngs if len(rngs) > 1 else None,  # under torchrun: each rank's
            "config": dict(self.cfg),
            "versions": {"torch": str(torch.__version__)},
        }
        save_checkpoint(payload, self.folder.checkpoint(name))

    def restore(self, payload: Mapping[str, Any]) -> None:
        """Continue exactly where `payload` stopped: the task's parts, counters and RNGs."""
        self.task.restore(payload)
        self.state = self.task.new_state(payload["train_state"])
        by_rank = payload.get("rng_by_rank") or []
        if len(by_rank) == distributed.world_size():
            restore_rng(by_rank[distributed.rank()])
        else:  # one process, or another number of them than before
            restore_rng(payload["rng"])
            if distributed.world_size() > 1:
                distributed.seed_rank(self.cfg["trainer"]["seed"] + self.state.step)

    # -- the end -----------------------------------------------------------------------------
    def finish(self) -> dict[str, float]:
        """The task's last word on `best.pt` (pictures, the test split); the best value."""
        if self.logger is None:
            return {}  # ranks other than 0 under torchrun: rank 0 reports
        best_path = self.folder.checkpoint("best")
        best = load_checkpoint(best_path, self.device) if best_path.is_file() else None
        test = self.task.finish(self.state, best)
        monitor = self.task.monitor
        if monitor.mode != "last":
            value = self.state.best if self.state.best is not None else float("nan")
            self.log({f"best/{monitor.metric}": value}, self.state.step, "best")
        return test

    def objective(self) -> float:
        """The best monitored value; with nothing to judge by, the metric's last value."""
        state, monitor = self.state, self.task.monitor
        if state is None:
            return float("nan")
        if monitor.mode != "last":
            return float(state.best) if state.best is not None else float("nan")
        last = self.folder.read_summary().get("final", {}) if self.main else {}
        value = last.get(monitor.metric, float("nan"))
        return float(value) if isinstance(value, (int, float)) else float("nan")

    def close(self, status: str, error: str | None, test: Mapping[str, float]) -> None:
        self.reporter.close()
        try:
            # a resume refused before its first step leaves the folder as it was
            if self.main and (self.started or self.resume is None):
                self.write_summary(status, error, test)
        finally:
            if self.logger is not None:
                self.logger.end_hparams(status)
                self.logger.close()
            distributed.cleanup()

    def write_summary(self, status: str, error: str | None, test: Mapping[str, float]) -> None:
        """summary.json (engine/report.py), then the closing panel once the loggers are open."""
        summary = run_summary(
            self.task, self.state, run_dir=self.folder.path, cfg=self.cfg, choices=self.choices,
            status=status, error=error, test=test, clock=self.clock, device=self.device,
        )  # fmt: skip
        self.folder.write_summary(summary)
        if self.logger is None:
            return  # failed while building: the error message says it all
        shown = closing_panel(
            self.task, self.state, summary, status=status, test=test, clock=self.clock,
            resumed=self.resume is not None, run_dir=self.folder.path,
        )  # fmt: skip
        self.reporter.final(self.task.title, shown, "green" if status == "done" else "red")
