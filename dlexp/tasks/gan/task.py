"""The GAN task: a generator and a discriminator, two optimizers, one plain loop (`loop.py`).

The monitored metric is the Fréchet distance (lower is better) when
`model.eval.feature_checkpoint` names a classifier; without one, every epoch counts as the
best and a search optimises the last epoch's generator loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from dlexp.config.names import CHARTS, METRICS
from dlexp.config.paths import expand_path
from dlexp.engine.builders import build_model, build_optimizer
from dlexp.engine.checkpoint import load_optimizer_state
from dlexp.engine.databuild import build_gan_data
from dlexp.engine.frechet import Evaluation, build_evaluation
from dlexp.engine.setup import autocast_for
from dlexp.engine.task import Monitor, Outputs
from dlexp.models.gan import generate, image_grid
from dlexp.tasks.gan.loop import (
    GanOptions,
    GanState,
    epoch_metrics,
    evaluate,
    reset_epoch,
    train_one_epoch,
)
from dlexp.tracking.summary import effective_settings

FAMILY = "gan"
MONITOR = "eval/frechet_distance"
FALLBACK = "train/g_loss"
# the epoch table: column → metric
COLUMNS = {
    "d_loss": "train/d_loss",
    "g_loss": "train/g_loss",
    "D(x)": "train/d_real",
    "D(G(z))": "train/d_fake",
    "frechet": MONITOR,
}
EVAL_NOISE_OFFSET = 1  # evaluation noise comes from seed + 1, the fixed grid noise from seed
SCORES = [m for m in METRICS[FAMILY] if m.startswith("eval/")]  # with a feature network
LOSSES = [m for m in METRICS[FAMILY] if m not in SCORES]


class GanTask:
    family = FAMILY
    title = "dlexp GAN run"
    columns = list(COLUMNS)
    summary_keys = [FALLBACK]
    # its optimizers live in the model config: these groups do not apply to it
    unused_groups = ("optim", "scheduler", "regularization")
    charts = CHARTS[FAMILY]

    def __init__(self) -> None:
        self.effective: dict[str, Any] = {}
        self.monitor = Monitor(FALLBACK, "last")
        self.metrics = list(LOSSES)
        self.epochs = 0
        self.evaluation: Evaluation | None = None
        self.reference: dict[str, float] = {}  # real images' scores, the untrained G's distance

    # -- building ----------------------------------------------------------------------------
    def build(self, cfg: Mapping[str, Any], device: torch.device, out: Outputs) -> None:
        self.cfg, self.device, self.out = cfg, device, out
        trainer, model = cfg["trainer"], cfg["model"]
        self.epochs = trainer["epochs"]
        self.loader, real = build_gan_data(
            cfg["data"],
            batch_size=trainer["batch_size"],
            seed=trainer["seed"],
            limit_train_batches=trainer["limit_train_batches"],
            num_real=model["eval"]["num_samples"],
            device=device,
        )
        self.channels, self.image_size = real.shape[1], real.shape[-1]
        shape = {"channels": self.channels, "image_size": self.image_size}
        example = torch.zeros(2, self.channels, self.image_size, self.image_size)
        inputs = {"latent_dim": model["latent_dim"], **shape}
        self.generator = build_model(model["generator"], {}, inputs, group="model.generator")
        self.discriminator = build_model(
            model["discriminator"], {}, shape, example, group="model.discriminator"
        )
        self.generator.to(device)
        self.discriminator.to(device)
        self.opt_g = build_optimizer(model["optim_g"], self.generator, "model.optim_g")
        self.opt_d = build_optimizer(model["optim_d"], self.discriminator, "model.optim_d")
        self.fixed_noise = self._noise(model["fixed_samples"], trainer["seed"])
        ev = model["eval"]
        if ev["feature_checkpoint"]:
            noise = self._noise(len(real), trainer["seed"] + EVAL_NOISE_OFFSET)
            self.evaluation = build_evaluation(
                expand_path(ev["feature_checkpoint"]),
                cfg["data"]["name"],
                real,
                noise,
                trainer["eval_batch_size"],
                trusted=bool(ev.get("trust_feature_checkpoint")),
            )
            self.reference = self.evaluation.reference()
            self.monitor = Monitor(MONITOR, "min")
            self.metrics = [*SCORES, *LOSSES]
        self.opts = gan_options(trainer, model, device)
        optimizers = {"model.optim_g": self.opt_g, "model.optim_d": self.opt_d}
        self.effective = effective_settings(
            cfg, device=device, grad_clip=self.opts.grad_clip, optimizers=optimizers
        )

    def _noise(self, n: int, seed: int) -> torch.Tensor:
        """Noise from its own CPU generator: the same for a seed on any device, and drawing
        it leaves the training RNG stream untouched."""
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(n, self.cfg["model"]["latent_dim"], generator=gen).to(self.device)

    def new_state(self, saved: Mapping[str, Any] | None = None) -> GanState:
        return GanState(**saved) if saved else GanState()

    def num_params(self) -> dict[str, int]:
        nets = [n for n in ("generator", "discriminator") if hasattr(self, n)]
        return {n: sum(p.numel() for p in getattr(self, n).parameters()) for n in nets}

    def describe(self, resume: bool) -> str:
        nets = " · ".join(
            f"{name}: {type(getattr(self, name)).__name__} ({n:,} parameters)"
            for name, n in self.num_params().items()
        )
        judge = self.evaluation.features.source if self.evaluation else "none (no Fréchet distance)"
        side = f"{self.channels}x{self.image_size}x{self.image_size}"
        return (
            f"{nets} on {self.device} · loss {self.opts.loss}\n"
            f"data: {self.cfg['data']['name']} ({self.loader.num_samples:,} train images, "
            f"{side}) · feature network: {judge}"
        )

    def batches_per_epoch(self) -> int:
        return len(self.loader)

    # -- the loop ----------------------------------------------------------------------------
    def start_fit(self, state: GanState) -> None:
        """The untrained generator's samples and scores at step 0, the baseline to beat, with
        the real images' own scores for reference."""
        if state.step != 0:
            return
        self.samples(0, 0)
        if self.evaluation is None:
            return
        metrics = evaluate(self.generator, self.evaluation, self.opts.eval_batch_size)
        ref = self.reference
        ref["untrained/frechet_distance"] = metrics[MONITOR]
        self.out.log({**metrics, **ref}, 0, "eval", epoch=0)
        real = f"confidence entropy {ref['real/confidence_entropy']:.3g}, coverage entropy "
        real += f"{ref['real/coverage_entropy']:.3g} ({ref['eval/num_samples']:.0f} images)"
        self.out.info(f"untrained: Fréchet distance {metrics[MONITOR]:.4g} · real: {real}")

    def train_epoch(
        self,
        state: GanState,
        on_log: Callable[[dict[str, float], int], None],
        should_stop: Callable[[], bool],
    ) -> None:
        nets = (self.generator, self.discriminator, self.opt_g, self.opt_d)
        train_one_epoch(*nets, self.loader, state, self.opts, on_log, should_stop)

    def end_epoch(self, state: GanState, epoch: int) -> dict[str, float]:
        metrics = epoch_metrics(state.epoch_sums)
        metrics |= {
            "lr_g": self.opt_g.param_groups[0]["lr"],
            "lr_d": self.opt_d.param_groups[0]["lr"],
        }
        reset_epoch(state)
        self.samples(epoch, state.step)
        due = self.evaluation is not None and (
            epoch % self.opts.eval_every == 0 or epoch == self.opts.epochs
        )
        if due:
            assert self.evaluation is not None
            metrics.update(evaluate(self.generator, self.evaluation, self.opts.eval_batch_size))
        return metrics

    def samples(self, epoch: int, step: int) -> None:
        """The fixed-noise grid: one PNG per epoch and TensorBoard's images tab."""
        if not self.out.active:
            return
        grid = image_grid(generate(self.generator, self.fixed_noise))
        name = f"samples_epoch_{epoch:03d}.png"
        self.out.image("samples/fixed_noise", grid, step, name, f"fixed noise, epoch {epoch}")

    def progress(self, metrics: Mapping[str, float]) -> dict[str, float]:
        return {"d": metrics["train/d_loss"], "g": metrics.get("train/g_loss", float("nan"))}

    def table_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {column: metrics.get(key, "") for column, key in COLUMNS.items()}

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        half = [0.5] * self.channels  # images in [-1, 1]
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(),
            "fixed_noise": self.fixed_noise.cpu(),
            "reference": dict(self.reference),  # the untrained G's distance: measured once
            # what `dlexp sample` needs to rebuild the generator without loading the data
            "data": {
                "name": self.cfg["data"]["name"],
                "channels": self.channels,
                "image_size": self.image_size,
                "mean": half,
                "std": half,
            },
        }

    def restore(self, payload: Mapping[str, Any]) -> None:
        """Continue exactly where `payload` (a checkpoint of this run's config) stopped."""
        self.generator.load_state_dict(payload["generator"])
        self.discriminator.load_state_dict(payload["discriminator"])
        saved, model = payload["config"]["model"], self.cfg["model"]
        for opt, key in ((self.opt_g, "optim_g"), (self.opt_d, "optim_d")):
            changed = saved[key] != model[key]  # dlexp resume --force
            load_optimizer_state(opt, payload[f"optimizer_{key[-1]}"], keep_settings=changed)
        self.fixed_noise = payload["fixed_noise"].to(self.device)
        self.reference.update(payload.get("reference") or {})

    def files(self) -> dict[str, str]:
        return {}

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def graph(self) -> tuple[torch.nn.Module, Any]:
        """G and D as one graph: noise → images → D's verdict."""
        return torch.nn.Sequential(self.generator, self.discriminator), self.fixed_noise[:2]

    # -- the end -----------------------------------------------------------------------------
    def finish(self, state: GanState, best: Mapping[str, Any] | None) -> dict[str, float]:
        return {}

    def summary(self, state: GanState) -> dict[str, Any]:
        return {"reference": self.reference, "generator_steps": state.g_steps}


def gan_options(
    trainer: Mapping[str, Any], model: Mapping[str, Any], device: torch.device
) -> GanOptions:
    """The GAN loop's settings from the trainer and model groups."""
    precision = str(trainer["precision"])
    return GanOptions(
        epochs=trainer["epochs"],
        latent_dim=model["latent_dim"],
        loss=model["loss"],
        n_critic=model["n_critic"],
        label_smoothing=model["label_smoothing"],
        log_every=trainer["log_every_n_steps"],
        device=device,
        autocast=lambda: autocast_for(precision, device),
        grad_clip=trainer["grad_clip"],
        eval_every=model["eval"]["every_n_epochs"],
        eval_batch_size=trainer["eval_batch_size"],
    )


def draw(payload: Mapping[str, Any], n: int, seed: int) -> torch.Tensor:
    """`dlexp sample`: `n` images in [-1, 1] from a checkpoint's generator (on the CPU), for
    noise seeded with `seed`. The caller checked the config's trust."""
    model, data = payload["config"]["model"], payload["data"]
    inputs = {k: data[k] for k in ("channels", "image_size")} | {"latent_dim": model["latent_dim"]}
    generator = build_model(model["generator"], {}, inputs)
    generator.load_state_dict(payload["generator"])
    noise = torch.randn(n, model["latent_dim"], generator=torch.Generator().manual_seed(seed))
    return generate(generator, noise)
