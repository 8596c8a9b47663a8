"""The autoencoder task: an autoencoder or a VAE, one optimizer, one plain loop (`loop.py`).

`best.pt` follows `model.monitor`: by default the validation negative ELBO for a VAE and the
validation reconstruction term for an autoencoder (both in nats per image, lower is better).
After every epoch: validation metrics, a fixed validation batch beside its reconstructions,
a VAE's samples from fixed noise; every `model.eval.every_n_epochs`: the linear probe and a
VAE's Fréchet distance. At the end, on `best.pt`: the interpolation and latent-space figures
and the test split. The pictures are drawn in `pictures.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from dlexp.config.names import CHARTS, METRICS
from dlexp.config.paths import expand_path
from dlexp.engine.builders import build_optimizer, build_scheduler
from dlexp.engine.checkpoint import load_optimizer_state
from dlexp.engine.frechet import Evaluation, build_evaluation, compare
from dlexp.engine.task import Monitor, NonFiniteLoss, Outputs
from dlexp.errors import DlexpError
from dlexp.models.vae import decode_images, encode_means
from dlexp.tasks.vae import pictures
from dlexp.tasks.vae.images import Images, build_images
from dlexp.tasks.vae.loop import VaeState, evaluate, per_image, reset_epoch, train_one_epoch
from dlexp.tasks.vae.network import build_network, vae_options
from dlexp.tasks.vae.probe import probe_accuracy
from dlexp.tasks.vae.schema import MONITORS
from dlexp.tracking.summary import effective_settings

FAMILY = "vae"
# seeds derived from trainer.seed: the sample grid's noise is the seed itself
EVAL_NOISE, VAL_NOISE, FIGURE_NOISE = 1, 2, 3
# the epoch table: column → metric
COLUMNS = {
    "loss": "train/loss",
    "val recon": "val/recon",
    "val KL": "val/kl",
    "val -ELBO": "val/neg_elbo",
    "frechet": "eval/frechet_distance",
    "probe acc": "eval/probe_acc",
}


class VaeTask:
    family = FAMILY
    title = "dlexp autoencoder run"
    summary_keys = ["val/recon", "val/neg_elbo", "eval/probe_acc"]
    unused_groups = ("regularization",)
    charts = CHARTS[FAMILY]

    def __init__(self) -> None:
        self.effective: dict[str, Any] = {}
        self.monitor = Monitor("val/neg_elbo", "min")
        self.metrics = list(METRICS[FAMILY])
        self.columns = list(COLUMNS)
        self.epochs = 0
        self.evaluation: Evaluation | None = None
        self.fixed_noise: torch.Tensor | None = None

    # -- building ----------------------------------------------------------------------------
    def build(self, cfg: Mapping[str, Any], device: torch.device, out: Outputs) -> None:
        self.cfg, self.device, self.out = cfg, device, out
        trainer, model = cfg["trainer"], cfg["model"]
        self.epochs, self.seed = trainer["epochs"], trainer["seed"]
        self.data: Images = build_images(
            cfg["data"],
            batch_size=trainer["batch_size"],
            eval_batch_size=trainer["eval_batch_size"],
            seed=self.seed,
            limit_train_batches=trainer["limit_train_batches"],
            limit_val_batches=trainer["limit_val_batches"],
            device=device,
        )
        self.net = build_network(model, self.data.channels, self.data.image_size).to(device)
        self.variational = bool(getattr(self.net, "variational", False))
        self.optimizer = build_optimizer(cfg["optim"], self.net)
        steps = len(self.data.train)
        self.scheduler = build_scheduler(
            cfg["scheduler"], self.optimizer, steps_per_epoch=steps, epochs=self.epochs
        )
        self.opts = vae_options(trainer, model, self.variational, steps, device)
        ev = model["eval"]
        self.every, self.probe = ev["every_n_epochs"], ev["probe"]
        if self.variational:
            self.fixed_noise = self._noise(model["fixed_samples"], self.seed)
        if self.variational and ev.get("feature_checkpoint"):
            real = self.data.val_x[: ev["num_samples"]] * 2 - 1  # the classifier's [-1, 1]
            self.evaluation = build_evaluation(
                expand_path(ev["feature_checkpoint"]),
                cfg["data"]["name"],
                real,
                self._noise(len(real), self.seed + EVAL_NOISE),
                trainer["eval_batch_size"],
                trusted=bool(ev.get("trust_feature_checkpoint")),
            )
        metric = model["monitor"] or ("val/neg_elbo" if self.variational else "val/recon")
        if not self._measures(metric):  # e.g. a user's class that turned out not variational
            raise DlexpError(f"model.monitor: this run does not measure {metric}")
        self.monitor = Monitor(metric, MONITORS[metric])
        self.columns = [c for c, key in COLUMNS.items() if self._measures(key)]
        tested = trainer["test_after_fit"]
        self.metrics = [
            m
            for m in METRICS[FAMILY]
            if self._measures(m if m.startswith("eval/") else f"val/{m.split('/', 1)[1]}")
            and (tested or not m.startswith("test/"))
        ]
        self.shown = pictures.fixed_batch(
            self.data.val_x, self.opts.denoise, self.opts.denoise_level, self.seed + FIGURE_NOISE
        )
        self.effective = effective_settings(
            cfg, device=device, grad_clip=self.opts.grad_clip, optimizers={"optim": self.optimizer}
        )

    def _noise(self, n: int, seed: int) -> torch.Tensor:
        """Noise from its own CPU generator: the same on any device, and the training RNG
        stream is left untouched."""
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(n, self.net.latent_dim, generator=gen).to(self.device)

    def _measures(self, metric: str) -> bool:
        if metric in ("val/kl", "val/neg_elbo"):
            return self.variational
        if metric == "eval/frechet_distance":
            return self.evaluation is not None
        return metric != "eval/probe_acc" or self.probe

    def new_state(self, saved: Mapping[str, Any] | None = None) -> VaeState:
        return VaeState(**saved) if saved else VaeState()

    def num_params(self) -> dict[str, int]:
        net = getattr(self, "net", None)
        return {"model": sum(p.numel() for p in net.parameters())} if net is not None else {}

    def describe(self, resume: bool) -> str:
        opts, n = self.opts, self.num_params()["model"]
        loss = f"likelihood {opts.likelihood}"
        if self.variational:
            loss += f" · β {opts.beta:g}" + (
                f", KL warm-up {opts.kl_warmup_steps} steps" if opts.kl_warmup_steps else ""
            )
        if opts.denoise != "none":
            loss += f" · denoising ({opts.denoise} {opts.denoise_level:g})"
        judge = self.evaluation.features.source if self.evaluation else "none"
        return (
            f"model: {type(self.net).__name__} ({n:,} parameters) on {self.device} · {loss}\n"
            f"data: {self.cfg['data']['name']} ({self.data.describe()})"
            + (f" · feature network: {judge}" if self.variational else "")
        )

    def batches_per_epoch(self) -> int:
        return len(self.data.train)

    # -- the loop ----------------------------------------------------------------------------
    def start_fit(self, state: VaeState) -> None:
        pass

    def train_epoch(
        self,
        state: VaeState,
        on_log: Callable[[dict[str, float], int], None],
        should_stop: Callable[[], bool],
    ) -> None:
        train_one_epoch(
            self.net, self.optimizer, self.scheduler, self.data.train, state, self.opts,
            on_log, should_stop,
        )  # fmt: skip

    def end_epoch(self, state: VaeState, epoch: int) -> dict[str, float]:
        sums = reset_epoch(state)
        metrics = per_image(sums["loss"], sums["recon"], sums["kl"], sums["n"], self.variational)
        metrics.update(self.score_split("val"))
        if epoch % self.every == 0 or epoch == self.epochs:
            metrics.update(self.judge())
        broken = [k for k, v in metrics.items() if v != v or abs(v) == float("inf")]
        if broken:
            raise NonFiniteLoss(
                f"{broken[0]} is {metrics[broken[0]]} after epoch {epoch}: the weights are no "
                "longer finite. Try a lower optim.lr, trainer.grad_clip=1.0 or "
                "model.kl_warmup_epochs=2."
            )
        batch = self.cfg["trainer"]["eval_batch_size"]
        pictures.epoch_pictures(
            self.out, self.net, self.shown, self.fixed_noise, epoch, state.step, batch
        )
        due = self.cfg["trainer"]["figures_every_n_epochs"]
        if due and epoch % due == 0:
            self.latent_pictures(state.step)
        return metrics

    def score_split(self, split: str) -> dict[str, float]:
        x, _ = self.data.split(split)
        seed = self.seed + VAL_NOISE
        metrics = evaluate(self.net, x, self.opts, seed, self.cfg["trainer"]["eval_batch_size"])
        return {f"{split}/{k}": v for k, v in metrics.items()}

    def judge(self, split: str = "val") -> dict[str, float]:
        """The linear probe's accuracy on `split` and the samples' Fréchet distance."""
        metrics: dict[str, float] = {}
        batch = self.cfg["trainer"]["eval_batch_size"]
        if self.probe:
            (train_x, train_y), (x, y) = self.data.split("train"), self.data.split(split)
            train_codes = encode_means(self.net, train_x, batch)
            codes = encode_means(self.net, x, batch)
            key = "eval/probe_acc" if split == "val" else f"{split}/probe_acc"
            metrics[key] = probe_accuracy(train_codes, train_y, codes, y, len(self.data.classes))
        if self.evaluation is not None and split == "val":
            fakes = decode_images(self.net, self.evaluation.noise, batch) * 2 - 1
            metrics.update(
                compare(self.evaluation.real, self.evaluation.features.statistics(fakes, batch))
            )
        return metrics

    def latent_pictures(self, step: int) -> None:
        batch = self.cfg["trainer"]["eval_batch_size"]
        pictures.latent_pictures(self.out, self.net, self.data, self.variational, step, batch)

    def progress(self, metrics: Mapping[str, float]) -> dict[str, float]:
        shown = {"loss": metrics["train/loss"], "recon": metrics["train/recon"]}
        return shown | ({"kl": metrics["train/kl"]} if "train/kl" in metrics else {})

    def table_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {c: metrics.get(COLUMNS[c], "") for c in self.columns}

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        channels = self.data.channels
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "fixed_noise": self.fixed_noise.cpu() if self.fixed_noise is not None else None,
            # what `dlexp sample` needs to rebuild the network without loading the data
            "data": {
                "name": self.cfg["data"]["name"],
                "channels": channels,
                "image_size": self.data.image_size,
                "mean": [0.0] * channels,  # pixels in [0, 1]
                "std": [1.0] * channels,
            },
        }

    def restore(self, payload: Mapping[str, Any]) -> None:
        """Continue exactly where `payload` (a checkpoint of this run's config) stopped."""
        self.net.load_state_dict(payload["model"])
        changed = payload["config"]["optim"] != self.cfg["optim"]  # dlexp resume --force
        load_optimizer_state(self.optimizer, payload["optimizer"], keep_settings=changed)
        if self.scheduler is not None and payload.get("scheduler"):
            self.scheduler.load_state_dict(payload["scheduler"])
        if payload.get("fixed_noise") is not None and self.fixed_noise is not None:
            self.fixed_noise = payload["fixed_noise"].to(self.device)

    def files(self) -> dict[str, str]:
        return {}

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"model": self.net}

    def graph(self) -> tuple[torch.nn.Module, Any]:
        return self.net, self.shown[0][:2]

    # -- the end -----------------------------------------------------------------------------
    def finish(self, state: VaeState, best: Mapping[str, Any] | None) -> dict[str, float]:
        """Reload the best weights; the latent pictures, and the metrics on the test split."""
        if best is not None:
            self.net.load_state_dict(best["model"])
        trainer = self.cfg["trainer"]
        if trainer["figures_every_n_epochs"] is not None:
            self.latent_pictures(state.step)
        if not trainer["test_after_fit"] or not len(self.data.test_x):
            return {}
        test = {**self.score_split("test"), **self.judge("test")}
        self.out.log(test, state.step, "test", checkpoint="best")
        return test

    def summary(self, state: VaeState) -> dict[str, Any]:
        return {"variational": self.variational, "units": "recon, kl, neg_elbo: nats per image"}

    # -- dlexp eval --------------------------------------------------------------------------
    def score(self, split: str, payload: Mapping[str, Any]) -> tuple[dict[str, float], int]:
        """The metrics of a checkpoint's weights on a split; and the split's size."""
        self.net.load_state_dict(payload["model"])
        x, _ = self.data.split(split)
        if not len(x):
            raise DlexpError(f"the {split} split of this run is empty")
        metrics = {**self.score_split(split), **self.judge(split)}
        return {k.split("/", 1)[1]: v for k, v in metrics.items()}, len(x)
