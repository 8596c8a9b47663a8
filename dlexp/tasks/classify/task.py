"""The classification task: images or token sequences in, one of N classes out.

Builds its parts from the config, trains one epoch through `loop.train_one_epoch`, validates,
and on `best.pt` draws the validation figures and scores the test split. The runner
(`engine/runner.py`) does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from dlexp.config.derived import monitor_mode
from dlexp.config.names import CHARTS, METRICS
from dlexp.engine import distributed
from dlexp.engine.builders import (
    build_model,
    build_optimizer,
    build_scheduler,
    regularized_weights,
)
from dlexp.engine.checkpoint import load_optimizer_state
from dlexp.engine.databuild import build_data
from dlexp.engine.setup import autocast_for, compile_model, wants_channels_last
from dlexp.engine.task import Monitor, NonFiniteLoss, Outputs
from dlexp.errors import DlexpError
from dlexp.tasks.classify.loop import LoopOptions, TrainState, evaluate, train_one_epoch
from dlexp.tracking import figures
from dlexp.tracking.summary import effective_settings

FAMILY = "classify"


class ClassifyTask:
    family = FAMILY
    title = "dlexp run"
    columns = ["train/loss", "train/acc", "val/loss", "val/acc", "lr"]
    summary_keys: list[str] = []
    unused_groups: tuple[str, ...] = ()
    charts = CHARTS[FAMILY]

    def __init__(self) -> None:
        self.monitor = Monitor("val/acc", "max")
        self.epochs = 0
        self.effective: dict[str, Any] = {}
        self.metrics = list(METRICS[FAMILY])

    # -- building ----------------------------------------------------------------------------
    def build(self, cfg: Mapping[str, Any], device: torch.device, out: Outputs) -> None:
        self.cfg, self.device, self.out = cfg, device, out
        trainer = cfg["trainer"]
        self.epochs = trainer["epochs"]
        self.monitor = Monitor(trainer["monitor"], monitor_mode(trainer))
        # the data decides channels/classes; the model decides the input size (LeNet: 32)
        self.data = build_data(
            cfg["data"],
            batch_size=distributed.local_batch(trainer["batch_size"]),
            eval_batch_size=trainer["eval_batch_size"],
            model_image_size=cfg["model"].get("image_size"),
            device=device,
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
        ).to(device)
        channels_last = wants_channels_last(trainer["channels_last"], self.model)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(cfg["optim"], self.model)
        self.train_model = self.model  # what the loop calls: compiled and/or DDP-wrapped
        if trainer["compile"]:
            self.train_model = compile_model(self.model)
        if distributed.world_size() > 1:
            from torch.nn.parallel import DistributedDataParallel  # only under torchrun

            ids = [device.index] if device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)
            distributed.seed_rank(trainer["seed"])
        self.scheduler = build_scheduler(
            cfg["scheduler"],
            self.optimizer,
            steps_per_epoch=len(self.data.train),
            epochs=self.epochs,
        )
        precision = str(trainer["precision"])
        self.scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
        self.opts = loop_options(
            trainer, cfg["regularization"], self.model, device,
            channels_last=channels_last, world_size=distributed.world_size(),
        )  # fmt: skip
        self.weights = regularized_weights(self.model)
        self._check_monitor()
        self.effective = effective_settings(
            cfg, device=device, grad_clip=self.opts.grad_clip, threads=torch.get_num_threads(),
            optimizers={"optim": self.optimizer}, channels_last=channels_last, data=self.data,
            monitor_mode=self.monitor.mode,
        )  # fmt: skip
        missing = [s for s in ("val", "test") if not getattr(self.data, s).num_samples]
        missing += [] if trainer["test_after_fit"] else ["test"]
        self.metrics = [m for m in METRICS[FAMILY] if m.split("/")[0] not in missing]

    def _check_monitor(self) -> None:
        valid = ["train/loss", "train/acc"]
        if self.data.val.num_samples:
            valid += ["val/loss", "val/acc"]
        if self.monitor.metric not in valid:
            hint = "" if self.data.val.num_samples else " (it has no validation split)"
            raise DlexpError(
                f"trainer.monitor={self.monitor.metric} is not a metric of this run{hint}. "
                f"Valid: {', '.join(valid)}"
            )

    def new_state(self, saved: Mapping[str, Any] | None = None) -> TrainState:
        return TrainState(**saved) if saved else TrainState()

    def num_params(self) -> dict[str, int]:
        model = getattr(self, "model", None)
        return {"model": sum(p.numel() for p in model.parameters())} if model else {}

    def describe(self, resume: bool) -> str:
        n = self.num_params()["model"]
        text = (
            f"model: {type(self.model).__name__} ({n:,} parameters) on {self.device} · "
            f"data: {self.cfg['data']['name']} ({self.data.describe()})"
        )
        batch, samples = self.cfg["trainer"]["batch_size"], self.data.train.num_samples
        if batch > samples * distributed.world_size():
            text += (
                f"\nnote: trainer.batch_size={batch} is more than the {samples:,} training "
                "samples: one step per epoch"
            )
        return text

    def batches_per_epoch(self) -> int:
        return len(self.data.train)

    # -- the loop ----------------------------------------------------------------------------
    def start_fit(self, state: TrainState) -> None:
        pass

    def train_epoch(
        self,
        state: TrainState,
        on_log: Callable[[dict[str, float], int], None],
        should_stop: Callable[[], bool],
    ) -> None:
        train_one_epoch(
            self.train_model, self.data.train, self.optimizer, self.scheduler, self.scaler,
            state, self.opts, self.weights, on_log, should_stop,
        )  # fmt: skip

    def end_epoch(self, state: TrainState, epoch: int) -> dict[str, float]:
        loss_n, correct, n = state.epoch_sums
        state.epoch_sums = [0.0, 0.0, 0.0]
        metrics = {"train/loss": loss_n / max(n, 1), "train/acc": correct / max(n, 1)}
        every = self.opts.figures_every
        figures_due = bool(every) and epoch % every == 0
        if self.data.val.num_samples:
            val, preds, targets = evaluate(
                self.train_model, self.data.val, self.opts, keep_predictions=figures_due
            )
            metrics.update({f"val/{k}": v for k, v in val.items()})
            if figures_due:
                self.figures(preds, targets, state.step)
        broken = [k for k in ("train/loss", "val/loss") if not _finite(metrics.get(k, 0.0))]
        if broken:  # e.g. nonfinite=skip could not save weights that overflowed
            raise NonFiniteLoss(
                f"{broken[-1]} is {metrics[broken[-1]]} after epoch {epoch}: the weights are "
                "no longer finite. Try a lower optim.lr or trainer.grad_clip=1.0."
            )
        return metrics

    def progress(self, metrics: Mapping[str, float]) -> dict[str, float]:
        return {"loss": metrics["train/loss"], "acc": metrics["train/acc"]}

    def table_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {**metrics, "lr": self.optimizer.param_groups[0]["lr"]}

    def figures(
        self,
        preds: torch.Tensor | None,
        targets: torch.Tensor | None,
        step: int,
        prefix: str = "val",
    ) -> None:
        """The confusion matrix and misclassified examples: `val/...` every N epochs, and
        `best/...` of best.pt at the end (also the PNGs in figures/)."""
        if preds is None or targets is None or not self.out.active:
            return
        images = getattr(self.data, "val_images", None)  # None for text
        figs = figures.validation_figures(preds, targets, self.data.classes, images)
        for name, fig in figs.items():
            self.out.figure(f"{prefix}/{name}", fig, step, f"{name}.png")

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "classes": list(self.data.classes),
            "data": self.data.state(),
        }

    def restore(self, payload: Mapping[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        changed = payload["config"]["optim"] != self.cfg["optim"]  # dlexp resume --force
        load_optimizer_state(self.optimizer, payload["optimizer"], keep_settings=changed)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])

    def files(self) -> dict[str, str]:
        files = getattr(self.data, "files", None)  # text: vocab.json
        return files() if files is not None else {}

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def graph(self) -> tuple[nn.Module, Any]:
        example = self.data.example()
        if isinstance(example, tuple):
            return self.model, tuple(t.to(self.device) for t in example)
        return self.model, example.to(self.device)

    # -- the end -----------------------------------------------------------------------------
    def finish(self, state: TrainState, best: Mapping[str, Any] | None) -> dict[str, float]:
        """Reload the best weights; figures on validation, metrics on the test split."""
        if best is not None:
            self.model.load_state_dict(best["model"])
        trainer = self.cfg["trainer"]
        if self.data.val.num_samples and trainer["figures_every_n_epochs"] is not None:
            _, preds, targets = evaluate(
                self.model, self.data.val, self.opts, keep_predictions=True
            )
            self.figures(preds, targets, state.step, prefix="best")
        test: dict[str, float] = {}
        if trainer["test_after_fit"] and self.data.test.num_samples:
            metrics, _, _ = evaluate(self.model, self.data.test, self.opts)
            test = {f"test/{k}": v for k, v in metrics.items()}
            self.out.log(test, state.step, "test", checkpoint="best")
        return test

    def summary(self, state: TrainState) -> dict[str, Any]:
        return {}

    # -- dlexp eval --------------------------------------------------------------------------
    def score(self, split: str, payload: Mapping[str, Any]) -> tuple[dict[str, float], int]:
        """Loss and accuracy of a checkpoint's weights on a split; and the split's size."""
        self.model.load_state_dict(payload["model"])
        loader = getattr(self.data, split)
        if not loader.num_samples:
            raise DlexpError(f"the {split} split of this run is empty")
        metrics, _, _ = evaluate(self.model, loader, self.opts)
        return metrics, loader.num_samples


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def loop_options(
    trainer: Mapping[str, Any],
    regularization: Mapping[str, Any],
    model: nn.Module,
    device: torch.device,
    *,
    channels_last: bool,
    world_size: int,
) -> LoopOptions:
    """The classification loop's settings from the trainer and regularization groups."""
    precision = str(trainer["precision"])
    return LoopOptions(
        epochs=trainer["epochs"],
        log_every=trainer["log_every_n_steps"],
        device=device,
        autocast=lambda: autocast_for(precision, device),
        grad_clip=grad_clip(trainer["grad_clip"], model),
        l1=regularization["l1"],
        l2=regularization["l2"],
        channels_last=channels_last,
        figures_every=trainer["figures_every_n_epochs"] or 0,
        skip_nonfinite=trainer["nonfinite"] == "skip",
        world_size=world_size,
    )


def grad_clip(setting: float | None, model: nn.Module) -> float | None:
    """null: the model family's default (sequence models clip at 1.0, others don't); 0: off."""
    if setting is None:
        return getattr(model, "default_grad_clip", None)
    return float(setting) or None
