"""One GAN run, start to finish: build everything, fit, write the summary. Mirrors `runner.py`.

Returns the monitored metric: the best Fréchet distance (lower is better) when
`model.eval.feature_checkpoint` names a classifier, otherwise the last epoch's generator loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dlexp.cli.sample import grid_figure, write_grid
from dlexp.config.paths import expand_path
from dlexp.data.pipeline import build_gan_data
from dlexp.engine.builders import build_gan_options, build_model, build_optimizer
from dlexp.engine.checkpoint import (
    FORMAT,
    capture_rng,
    load_checkpoint,
    load_optimizer_state,
    restore_rng,
    save_checkpoint,
    save_epoch_checkpoints,
)
from dlexp.engine.frechet import Evaluation, build_evaluation
from dlexp.engine.interrupt import StopRequest, outcome, with_checkpoint_note
from dlexp.engine.setup import (
    Stopwatch,
    check_writable,
    setup_torch,
    update_latest,
    write_run_files,
)
from dlexp.models.gan import generate
from dlexp.sweeps import trial
from dlexp.tasks.classify.loop import NonFiniteLoss
from dlexp.tasks.gan.loop import GanState, fit
from dlexp.tracking.console import Reporter
from dlexp.tracking.runlog import RunLogger, hparams_of, write_json
from dlexp.tracking.summary import common_fields, last_epoch_record

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
# groups a GAN does not use (its optimizers live in the model config): not hyperparameters here


class GanRun:
    """The runner's side of the GAN loop: logging, progress, sample grids, checkpoints."""

    def __init__(self, cfg: Mapping[str, Any], run_dir: Path, choices: Mapping[str, str]):
        self.cfg, self.run_dir, self.choices = cfg, run_dir, choices
        self.clock = Stopwatch()
        self.device = torch.device("cpu")  # set up in build(), inside run()'s error handling
        self.reporter = Reporter(cfg["trainer"]["progress"], ["epoch", *COLUMNS, "best"])
        self.ckpt_dir = run_dir / "checkpoints"
        self.state = GanState()
        self.logger: RunLogger | None = None
        self.stop = StopRequest()
        self.evaluation: Evaluation | None = None
        self.reference: dict[str, float] = {}  # real images' scores, the untrained G's distance

    # -- building ----------------------------------------------------------------------------
    def build(self) -> None:
        trainer, model = self.cfg["trainer"], self.cfg["model"]
        self.device = setup_torch(trainer)
        data = self.cfg["data"]
        self.loader, real = build_gan_data(
            data,
            batch_size=trainer["batch_size"],
            seed=trainer["seed"],
            limit_train_batches=trainer["limit_train_batches"],
            num_real=model["eval"]["num_samples"],
            device=self.device,
        )
        self.channels, self.image_size = real.shape[1], real.shape[-1]
        shape = {"channels": self.channels, "image_size": self.image_size}
        example = torch.zeros(2, self.channels, self.image_size, self.image_size)
        latent = model["latent_dim"]
        inputs = {"latent_dim": latent, **shape}
        self.generator = build_model(model["generator"], {}, inputs, group="model.generator")
        self.discriminator = build_model(
            model["discriminator"], {}, shape, example, group="model.discriminator"
        )
        self.generator.to(self.device)
        self.discriminator.to(self.device)
        self.opt_g = build_optimizer(model["optim_g"], self.generator, "model.optim_g")
        self.opt_d = build_optimizer(model["optim_d"], self.discriminator, "model.optim_d")
        self.fixed_noise = self._noise(model["fixed_samples"], trainer["seed"])
        ev = model["eval"]
        if ev["feature_checkpoint"]:
            noise = self._noise(len(real), trainer["seed"] + EVAL_NOISE_OFFSET)
            self.evaluation = build_evaluation(
                expand_path(ev["feature_checkpoint"]),
                self.cfg["data"]["name"],
                real,
                noise,
                trainer["eval_batch_size"],
                trusted=bool(ev.get("trust_feature_checkpoint")),
            )
            self.reference = self.evaluation.reference()
        evaluating = self.evaluation is not None
        self.opts = build_gan_options(trainer, model, self.device, evaluating=evaluating)

    def _noise(self, n: int, seed: int) -> torch.Tensor:
        """Noise from its own CPU generator: the same for a seed on any device, and drawing
        it leaves the training RNG stream untouched."""
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(n, self.cfg["model"]["latent_dim"], generator=gen).to(self.device)

    # -- hooks called by fit() ---------------------------------------------------------------
    def start_epoch(self, epoch: int, batches: int, done: int) -> None:
        self.reporter.start_epoch(epoch, self.opts.epochs, batches, done)

    def log_step(self, metrics: dict[str, float], batches_done: int) -> None:
        assert self.logger is not None
        step, epoch = self.state.step, self.state.epoch + 1
        self.logger.log_metrics(metrics, step=step, kind="step", epoch=epoch)
        shown = {"d": metrics["train/d_loss"], "g": metrics.get("train/g_loss", float("nan"))}
        self.reporter.update(batches_done, shown, metrics["throughput/samples_per_sec"])

    def log_eval(self, metrics: dict[str, float]) -> None:
        """The untrained generator's scores at step 0, the baseline to beat, with the real
        images' own scores for reference."""
        assert self.logger is not None
        ref = self.reference
        ref["untrained/frechet_distance"] = metrics[MONITOR]
        self.logger.log_metrics({**metrics, **ref}, step=0, kind="eval", epoch=0)
        real = f"confidence entropy {ref['real/confidence_entropy']:.3g}, coverage entropy "
        real += f"{ref['real/coverage_entropy']:.3g} ({ref['eval/num_samples']:.0f} images)"
        self.reporter.info(f"untrained: Fréchet distance {metrics[MONITOR]:.4g} · real: {real}")

    def should_stop(self) -> bool:
        """Checked after every step: Ctrl-C / SIGTERM finish the step, then save and stop."""
        return self.stop.requested is not None

    def samples(self, epoch: int) -> None:
        """The fixed-noise grid: one PNG per epoch and TensorBoard's images tab."""
        assert self.logger is not None
        path = self.run_dir / "figures" / f"samples_epoch_{epoch:03d}.png"
        grid = write_grid(generate(self.generator, self.fixed_noise), path)
        fig = grid_figure(grid, f"fixed noise, epoch {epoch}")
        self.logger.log_figure("samples/fixed_noise", fig, self.state.step)

    def end_epoch(self, metrics: dict[str, float], is_best: bool) -> None:
        assert self.logger is not None
        epoch = self.state.epoch
        metrics = {**metrics, "epoch": float(epoch)}
        self.logger.log_metrics(metrics, step=self.state.step, kind="epoch", epoch=epoch)
        self.save_epoch(is_best)
        value = metrics.get(MONITOR)  # only epochs with a Fréchet distance report to a search
        if value is not None and trial.should_prune(self.cfg, epoch, value):
            raise trial.Pruned(
                f"pruned by the search after epoch {epoch} ({MONITOR} = {value:.4g})"
            )
        row = {column: metrics.get(key, "") for column, key in COLUMNS.items()}
        best = "*" if is_best and self.evaluation else ""
        self.reporter.end_epoch({"epoch": epoch, **row, "best": best})

    def info(self, message: str) -> None:
        self.reporter.info(message)

    # -- checkpoints -------------------------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        half = [0.5] * self.channels  # images in [-1, 1]
        return {
            "format": FORMAT,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(),
            "fixed_noise": self.fixed_noise.cpu(),
            "reference": dict(self.reference),  # the untrained G's distance: measured once
            "train_state": dataclasses.asdict(self.state),
            "rng": capture_rng(),
            "config": dict(self.cfg),
            # what `dlexp sample` needs to rebuild the generator without loading the data
            "data": {
                "name": self.cfg["data"]["name"],
                "channels": self.channels,
                "image_size": self.image_size,
                "mean": half,
                "std": half,
            },
            "versions": {"torch": str(torch.__version__)},
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
        self.state = GanState(**payload["train_state"])
        restore_rng(payload["rng"])

    def save(self, name: str) -> None:
        save_checkpoint(self.payload(), self.ckpt_dir / f"{name}.pt")

    def save_epoch(self, is_best: bool) -> None:
        keep = self.cfg["trainer"]["keep_last"]
        save_epoch_checkpoints(self.save, self.ckpt_dir, self.state.epoch, is_best, keep)

    # -- the whole run -----------------------------------------------------------------------
    def run(self, resume: Path | None = None) -> float:
        """Train from scratch, or continue from checkpoint `resume` (`train_state.epoch/.batch`,
        mid-epoch included) in the same run folder. Returns `objective()`."""
        status, error = "failed", None
        try:
            with self.stop:
                self.build()
                if resume is not None:  # last: nothing may draw from the RNGs after this
                    self.restore(load_checkpoint(resume, self.device))
                update_latest(self.run_dir, expand_path(self.cfg["paths"]["output_root"]))
                check_writable(self.ckpt_dir, expected_bytes=12 * sum(self.num_params().values()))
                step = self.state.step if resume is not None else None
                self.logger = RunLogger(self.run_dir, resume_step=step)
                self.logger.log_hparams(hparams_of(self.cfg, self.choices))
                self.reporter.info(self.describe(resume))
                nets = (self.generator, self.discriminator, self.opt_g, self.opt_d)
                try:
                    fit(*nets, self.loader, self.state, self.opts, self, self.evaluation)
                except NonFiniteLoss as exc:
                    raise with_checkpoint_note(exc, self.ckpt_dir) from None
                if self.should_stop():
                    self.save("last")
                    status = "interrupted"
                    raise self.stop.stopped(self.state.step, self.state.epoch, self.run_dir)
                if self.evaluation is not None:
                    best = {f"best/{MONITOR}": self.objective()}
                    self.logger.log_metrics(best, step=self.state.step, kind="best")
                status = "done"
        except BaseException as exc:
            status, error = outcome(exc)
            raise
        finally:
            self.reporter.close()
            self.write_summary(status, error)
            if self.logger is not None:
                self.logger.end_hparams(status)
                self.logger.close()
        return self.objective()

    def describe(self, resume: Path | None) -> str:
        head = f"run folder: {self.run_dir}"
        if resume is not None:
            head = f"resuming {self.run_dir} from step {self.state.step}"
        nets = " · ".join(
            f"{name}: {type(getattr(self, name)).__name__} ({n:,} parameters)"
            for name, n in self.num_params().items()
        )
        judge = self.evaluation.features.source if self.evaluation else "none (no Fréchet distance)"
        side = f"{self.channels}x{self.image_size}x{self.image_size}"
        return (
            f"{head}\n{nets} on {self.device} · loss "
            f"{self.opts.loss}\ndata: {self.cfg['data']['name']} ({self.loader.num_samples:,} "
            f"train images, {side}) · feature network: {judge}"
        )

    def objective(self) -> float:
        """The best Fréchet distance; without a feature network, the last generator loss."""
        if self.evaluation is not None:
            return float(self.state.best) if self.state.best is not None else float("nan")
        return float(self.final().get(FALLBACK, float("nan")))

    def final(self) -> dict[str, float]:
        """The last epoch record's metrics (from metrics.jsonl: a resumed run has them all)."""
        last = last_epoch_record(self.run_dir / "metrics.jsonl")
        return {k: v for k, v in last.items() if "/" in k}

    def num_params(self) -> dict[str, int]:
        nets = [n for n in ("generator", "discriminator") if hasattr(self, n)]
        return {n: sum(p.numel() for p in getattr(self, n).parameters()) for n in nets}

    def write_summary(self, status: str, error: str | None) -> None:
        state, n_params = self.state, self.num_params()
        summary = common_fields(
            self.run_dir, self.cfg, self.choices, state,
            status=status, error=error, clock=self.clock, device=self.device,
        )  # fmt: skip
        summary["task"] = "gan"
        summary["monitor"] = (
            {"metric": MONITOR, "mode": "min"}
            if self.evaluation
            else {"metric": FALLBACK, "mode": "last"}
        )
        summary.update(reference=self.reference, generator_steps=state.g_steps)
        summary.update(num_params=sum(n_params.values()), num_params_by_net=n_params)
        final = summary["final"]
        write_json(self.run_dir / "summary.json", summary)
        if self.logger is None:
            return  # failed while building: the error message says it all
        shown: dict[str, Any] = {"status": status}
        if self.evaluation is not None:
            shown.update({f"best {MONITOR}": state.best, "best epoch": state.best_epoch})
        shown.update({FALLBACK: final.get(FALLBACK, ""), "epochs": state.epoch})
        shown.update({"wall time": f"{self.clock.elapsed:.1f}s", "run folder": str(self.run_dir)})
        self.reporter.final("dlexp GAN run", shown, "green" if status == "done" else "red")


def run_gan(
    cfg: Mapping[str, Any], run_dir: Path, choices: Mapping[str, str], resume: Path | None = None
) -> float:
    """The entry for `model.task: gan`: train in `run_dir` (a fresh folder, or the same folder
    again when resuming) and return the monitored metric."""
    write_run_files(run_dir, cfg, resumed=resume is not None)
    return GanRun(cfg, run_dir, choices).run(resume)
