"""One classification run, start to finish: build everything, fit, test, write the summary."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dlexp.config.paths import expand_path
from dlexp.data.pipeline import build_data
from dlexp.engine import distributed
from dlexp.engine.builders import build_loop_options, build_model, build_optimizer, build_scheduler
from dlexp.engine.checkpoint import (
    FORMAT,
    capture_rng,
    load_checkpoint,
    load_optimizer_state,
    restore_rng,
    save_checkpoint,
    save_epoch_checkpoints,
)
from dlexp.engine.interrupt import StopRequest, outcome, with_checkpoint_note
from dlexp.engine.setup import (
    Stopwatch,
    check_writable,
    compile_model,
    setup_torch,
    update_latest,
    wants_channels_last,
    write_run_files,
)
from dlexp.errors import DlexpError
from dlexp.sweeps import trial
from dlexp.tasks.classify.loop import NonFiniteLoss, TrainState, evaluate, fit
from dlexp.tracking import figures
from dlexp.tracking.console import Reporter
from dlexp.tracking.runlog import RunLogger, hparams_of
from dlexp.tracking.summary import write_summary

log = logging.getLogger("dlexp")
EPOCH_COLUMNS = ["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "best"]


class ClassificationRun:
    """The runner's side of the loop: logging, progress, checkpoints, figures (`fit`'s hooks)."""

    def __init__(self, cfg: Mapping[str, Any], run_dir: Path, choices: Mapping[str, str]):
        self.cfg, self.run_dir, self.choices = cfg, run_dir, choices
        trainer = cfg["trainer"]
        self.clock = Stopwatch()
        self.device = torch.device("cpu")  # set up in build(), inside run()'s error handling
        # under torchrun only rank 0 reports, logs and writes checkpoints
        self.main = distributed.is_main()
        self.reporter = Reporter(trainer["progress"] if self.main else "none", EPOCH_COLUMNS)
        self.ckpt_dir = run_dir / "checkpoints"
        self.state = TrainState()
        self.logger: RunLogger | None = None
        self.stop = StopRequest()
        self._agreed_stop = False
        self._rngs: list[Any] = []  # set by gather_rng() just before each save

    # -- building ----------------------------------------------------------------------------
    def build(self) -> None:
        cfg, trainer = self.cfg, dict(self.cfg["trainer"])
        trainer["device"] = distributed.device_for_rank(trainer["device"])
        self.device = setup_torch(trainer)
        distributed.init(str(self.device))
        model_size = cfg["model"].get("image_size")
        # the data decides channels/classes; the model decides the input size (LeNet: 32)
        self.data = build_data(
            cfg["data"],
            batch_size=distributed.local_batch(trainer["batch_size"]),
            eval_batch_size=trainer["eval_batch_size"],
            model_image_size=model_size,
            device=self.device,
            channels_last=False,
            seed=trainer["seed"],
            limit_train_batches=trainer["limit_train_batches"],
            limit_val_batches=trainer["limit_val_batches"],
            overfit_batches=trainer["overfit_batches"],
            rank=distributed.rank(),
            world_size=distributed.world_size(),
        )
        self.model = build_model(
            cfg["model"], cfg["regularization"], self.data.model_inputs(), self.data.example()
        ).to(self.device)
        channels_last = wants_channels_last(trainer["channels_last"], self.model)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(cfg["optim"], self.model)
        self.train_model = self.model  # what the loop calls: compiled and/or DDP-wrapped
        if trainer["compile"]:
            self.train_model = compile_model(self.model)
        if distributed.world_size() > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)
            distributed.seed_rank(trainer["seed"])
        self.scheduler = build_scheduler(
            cfg["scheduler"],
            self.optimizer,
            steps_per_epoch=len(self.data.train),
            epochs=trainer["epochs"],
        )
        precision = str(trainer["precision"])
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "16-mixed" else None
        self.opts = build_loop_options(
            trainer, cfg["regularization"], self.model, self.device,
            channels_last=channels_last, world_size=distributed.world_size(),
        )  # fmt: skip
        self._check_monitor()

    def _check_monitor(self) -> None:
        valid = ["train/loss", "train/acc"]
        if self.data.val.num_samples:
            valid += ["val/loss", "val/acc"]
        if self.opts.monitor not in valid:
            hint = "" if self.data.val.num_samples else " (it has no validation split)"
            raise DlexpError(
                f"trainer.monitor={self.opts.monitor} is not a metric of this run{hint}. "
                f"Valid: {', '.join(valid)}"
            )

    # -- hooks called by fit() ---------------------------------------------------------------
    def start_epoch(self, epoch: int, batches: int, done: int) -> None:
        self.reporter.start_epoch(epoch, self.opts.epochs, batches, done)

    def log_step(self, metrics: dict[str, float], batches_done: int) -> None:
        if distributed.world_size() > 1:  # every rank stops at the same step, or none does
            flag = torch.tensor([float(self.stop.requested is not None)], device=self.device)
            distributed.all_reduce_sum(flag)
            self._agreed_stop = bool(flag.item())
        if self.logger is None:
            return
        self.logger.log_metrics(
            metrics, step=self.state.step, kind="step", epoch=self.state.epoch + 1
        )
        shown = {"loss": metrics["train/loss"], "acc": metrics["train/acc"]}
        self.reporter.update(batches_done, shown, metrics["throughput/samples_per_sec"])

    def should_stop(self) -> bool:
        if distributed.world_size() > 1:
            return self._agreed_stop  # agreed on at log intervals, see log_step
        return self.stop.requested is not None

    def end_epoch(self, metrics: dict[str, float], is_best: bool) -> None:
        state = self.state
        metrics = {**metrics, "epoch": float(state.epoch)}
        self.gather_rng()
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=state.step, kind="epoch", epoch=state.epoch)
            self.save_epoch(is_best)
        if trial.should_prune(self.cfg, state.epoch, metrics[self.opts.monitor]):
            raise trial.Pruned(
                f"pruned by the search after epoch {state.epoch} "
                f"({self.opts.monitor} = {metrics[self.opts.monitor]:.4g})"
            )
        row = {"epoch": state.epoch, **metrics, "lr": self.optimizer.param_groups[0]["lr"]}
        row["best"] = "*" if is_best else ""
        self.reporter.end_epoch(row)

    def info(self, message: str) -> None:
        self.reporter.info(message)

    def figures(self, preds: torch.Tensor | None, targets: torch.Tensor | None, step: int) -> None:
        if preds is None or targets is None or self.logger is None:
            return
        images = getattr(self.data, "val_images", None)  # None for text
        figs = figures.validation_figures(preds, targets, self.data.classes, images)
        for name, fig in figs.items():
            self.logger.log_figure(f"val/{name}", fig, step)
            figures.save_and_close(fig, self.run_dir / "figures" / f"{name}.png")

    # -- checkpoints -------------------------------------------------------------------------
    def gather_rng(self) -> None:
        """Every rank's generators, for rank 0's checkpoint (all ranks call this together)."""
        self._rngs = distributed.gather_objects(capture_rng())

    def payload(self) -> dict[str, Any]:
        rngs = self._rngs or [capture_rng()]
        return {
            "format": FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "train_state": dataclasses.asdict(self.state),
            "rng": rngs[0],
            "rng_by_rank": rngs if len(rngs) > 1 else None,  # under torchrun: each rank's
            "config": dict(self.cfg),
            "classes": list(self.data.classes),
            "data": self.data.state(),
            "versions": {"torch": str(torch.__version__)},
        }

    def save(self, name: str) -> None:
        if self.main:
            save_checkpoint(self.payload(), self.ckpt_dir / f"{name}.pt")

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue exactly where `payload` stopped: weights, optimizer, schedule, counters, RNG."""
        self.model.load_state_dict(payload["model"])
        changed = payload["config"]["optim"] != self.cfg["optim"]  # dlexp resume --force
        load_optimizer_state(self.optimizer, payload["optimizer"], keep_settings=changed)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.state = TrainState(**payload["train_state"])
        by_rank = payload.get("rng_by_rank") or []
        if len(by_rank) == distributed.world_size():
            restore_rng(by_rank[distributed.rank()])
        else:  # one process, or another number of them than before
            restore_rng(payload["rng"])
            distributed.seed_rank(self.cfg["trainer"]["seed"] + self.state.step)

    def save_epoch(self, is_best: bool) -> None:
        keep = self.cfg["trainer"]["keep_last"]
        save_epoch_checkpoints(self.save, self.ckpt_dir, self.state.epoch, is_best, keep)

    # -- the whole run -----------------------------------------------------------------------
    def run(self, resume: Path | None = None) -> float:
        """Train from scratch, or continue from checkpoint `resume` in the same run folder."""
        status, error, test, n_params = "failed", None, {}, 0
        try:
            with self.stop:
                self.build()
                n_params = sum(p.numel() for p in self.model.parameters())
                if resume is not None:
                    self.restore(load_checkpoint(resume, self.device))
                if self.main:
                    # `latest` moves once the run has started, not for one that failed to
                    update_latest(self.run_dir, expand_path(self.cfg["paths"]["output_root"]))
                    check_writable(self.ckpt_dir, expected_bytes=3 * 4 * n_params)
                    save_data = getattr(self.data, "save", None)
                    if save_data is not None:  # text: vocab.json, to read new text later
                        save_data(self.run_dir)
                    step = self.state.step if resume is not None else None
                    self.logger = RunLogger(self.run_dir, resume_step=step)
                    self.logger.log_hparams(hparams_of(self.cfg, self.choices))
                self.announce(n_params, resume)
                data, opt, sched = self.data, self.optimizer, self.scheduler
                try:
                    fit(
                        self.train_model, data, opt, sched, self.scaler, self.state, self.opts, self
                    )
                except NonFiniteLoss as exc:
                    raise with_checkpoint_note(exc, self.ckpt_dir) from None
                if self.should_stop():
                    self.gather_rng()
                    self.save("last")
                    status = "interrupted"
                    raise self.stop.stopped(self.state.step, self.state.epoch, self.run_dir)
                test = self.finish()
                status = "done"
        except BaseException as exc:
            status, error = outcome(exc)
            raise
        finally:
            self.reporter.close()
            if self.main:
                self.write_summary(status, error, test, n_params)
            if self.logger is not None:
                self.logger.end_hparams(status)
                self.logger.close()
            distributed.cleanup()
        return float(self.state.best) if self.state.best is not None else float("nan")

    def announce(self, n_params: int, resume: Path | None) -> None:
        if resume is None:
            head = f"run folder: {self.run_dir}"
        else:
            head = f"resuming {self.run_dir} from step {self.state.step}"
        self.reporter.info(
            f"{head}\nmodel: {type(self.model).__name__} ({n_params:,} parameters) on "
            f"{self.device} · data: {self.cfg['data']['name']} ({self.data.describe()})"
        )
        trainer, samples = self.cfg["trainer"], self.data.train.num_samples
        if trainer["batch_size"] > samples * distributed.world_size():
            self.reporter.info(
                f"note: trainer.batch_size={trainer['batch_size']} is more than the "
                f"{samples:,} training samples: one step per epoch"
            )
        cores = os.cpu_count() or 1
        if self.device.type == "cpu" and (trainer["threads"] or 0) > cores:
            self.reporter.info(
                f"note: trainer.threads={trainer['threads']} is more than this machine's "
                f"{cores} cores, which is slower than trainer.threads={cores}"
            )

    def finish(self) -> dict[str, float]:
        """Reload the best weights; figures on validation, metrics on the test split."""
        if self.logger is None:
            return {}  # ranks other than 0 under torchrun: rank 0 reports
        best = self.ckpt_dir / "best.pt"
        if best.is_file():
            self.model.load_state_dict(load_checkpoint(best, self.device)["model"])
        if self.data.val.num_samples and self.cfg["trainer"]["figures_every_n_epochs"] is not None:
            _, preds, targets = evaluate(
                self.model, self.data.val, self.opts, keep_predictions=True
            )
            self.figures(preds, targets, self.state.step)
        test: dict[str, float] = {}
        if self.cfg["trainer"]["test_after_fit"] and self.data.test.num_samples:
            metrics, _, _ = evaluate(self.model, self.data.test, self.opts)
            test = {f"test/{k}": v for k, v in metrics.items()}
            self.logger.log_metrics(test, step=self.state.step, kind="test", checkpoint="best")
        best_value = self.state.best if self.state.best is not None else float("nan")
        self.logger.log_metrics(
            {f"best/{self.opts.monitor}": best_value}, step=self.state.step, kind="best"
        )
        return test

    def write_summary(
        self, status: str, error: str | None, test: dict[str, float], n_params: int
    ) -> None:
        write_summary(
            self.run_dir, self.cfg, self.choices, self.state, status=status, error=error,
            test=test, n_params=n_params, clock=self.clock, device=self.device,
        )  # fmt: skip
        if self.logger is None:
            return  # failed while building: the error message says it all
        monitor = self.cfg["trainer"]["monitor"]
        shown = {"status": status, f"best {monitor}": self.state.best, **test}
        shown["epochs"] = self.state.epoch
        shown["wall time"] = f"{self.clock.elapsed:.1f}s"
        shown["run folder"] = str(self.run_dir)
        self.reporter.final("dlexp run", shown, "green" if status == "done" else "red")


def run_classification(
    cfg: Mapping[str, Any],
    run_dir: Path,
    choices: Mapping[str, str],
    resume: Path | None = None,
) -> float:
    """Train in `run_dir` (a fresh folder, or the same folder again when resuming)."""
    if distributed.is_main():
        write_run_files(run_dir, cfg, resumed=resume is not None)
    return ClassificationRun(cfg, run_dir, choices).run(resume)
