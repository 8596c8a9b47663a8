"""The GAN loop: d_step, g_step, train_one_epoch, evaluate. Read it top to bottom.

Each batch of real images is one discriminator step; after every `n_critic` discriminator steps
comes one generator step — "(1) update D, (2) update G", as in pytorch/examples' DCGAN. Losses
and D's outputs accumulate on the device and are read back once per log interval. All progress
lives in `GanState`, checkpointed with both networks, so a run can stop after any step and
continue exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlexp.engine.frechet import Evaluation, compare
from dlexp.engine.task import NonFiniteLoss
from dlexp.models.gan import generate

LOSSES = ("bce", "lsgan", "hinge")
# sums kept per epoch: d_loss, D(x), D(G(z)), g_loss, D steps, G steps
_ZERO_SUMS = [0.0] * 6


@dataclass
class GanState:
    epoch: int = 0  # the epoch in progress (0-based); equals epochs completed when batch == 0
    batch: int = 0  # batches (= D steps) of `epoch` already trained
    step: int = 0  # D steps in the whole run; G steps follow every n_critic-th of them
    g_steps: int = 0
    best: float | None = None  # best eval/frechet_distance
    best_epoch: int = 0
    bad_epochs: int = 0
    epoch_sums: list[float] = field(default_factory=lambda: list(_ZERO_SUMS))
    samples: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False
    # a log window cut short by an interruption, carried over so the resumed run logs the very
    # same records: the device sums (see train_one_epoch) and [D steps, G steps, samples]
    window: list[float] = field(default_factory=lambda: [0.0] * 4)
    window_counts: list[int] = field(default_factory=lambda: [0, 0, 0])


@dataclass
class GanOptions:
    epochs: int
    latent_dim: int
    loss: str = "bce"
    n_critic: int = 1
    label_smoothing: float = 0.0  # one-sided: the real target is 1 - s
    log_every: int = 50
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    autocast: Callable[[], Any] = nullcontext
    grad_clip: float | None = None
    eval_every: int = 1
    eval_batch_size: int = 1000


# -- losses: raw discriminator outputs in, a 0-dim loss out --------------------------------------
def d_loss_fn(loss: str, real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    real, fake, target = real.float(), fake.float(), 1.0 - smoothing
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(
            real, torch.full_like(real, target)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    if loss == "lsgan":  # Mao et al. 2017: least squares to the targets 1 (real) and 0 (fake)
        return 0.5 * ((real - target).square().mean() + fake.square().mean())
    if loss == "hinge":  # Lim & Ye 2017 / SAGAN
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


def g_loss_fn(loss: str, fake: Tensor) -> Tensor:
    fake = fake.float()
    if loss == "bce":  # non-saturating: maximise log D(G(z)) instead of minimising log(1 - ...)
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if loss == "lsgan":
        return 0.5 * (fake - 1).square().mean()
    if loss == "hinge":
        return -fake.mean()
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


def d_output(loss: str, out: Tensor) -> Tensor:
    """What 'D(x)' means in the logs: a probability for BCE, the raw critic value otherwise."""
    return out.float().sigmoid().mean() if loss == "bce" else out.float().mean()


# -- one step each ---------------------------------------------------------------------------------
def d_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: Tensor,
    z: Tensor,
    opts: GanOptions,
) -> tuple[Tensor, Tensor, Tensor]:
    """(1) Update D on a real batch and G(z). Returns detached (loss, D(x), D(G(z)))."""
    with torch.no_grad(), opts.autocast():
        fake = generator(z)  # no graph: only D learns here
    with opts.autocast():
        real_out, fake_out = discriminator(real), discriminator(fake)
        loss = d_loss_fn(opts.loss, real_out, fake_out, opts.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if opts.grad_clip:
        nn.utils.clip_grad_norm_(discriminator.parameters(), opts.grad_clip)
    optimizer.step()
    return (
        loss.detach(),
        d_output(opts.loss, real_out.detach()),
        d_output(opts.loss, fake_out.detach()),
    )


def g_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    z: Tensor,
    opts: GanOptions,
) -> Tensor:
    """(2) Update G to fool D. D's weights get no gradients: that saves a third of its backward."""
    discriminator.requires_grad_(False)
    try:
        with opts.autocast():
            loss = g_loss_fn(opts.loss, discriminator(generator(z)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opts.grad_clip:
            nn.utils.clip_grad_norm_(generator.parameters(), opts.grad_clip)
        optimizer.step()
    finally:
        discriminator.requires_grad_(True)
    return loss.detach()


# -- one epoch -------------------------------------------------------------------------------------
def train_one_epoch(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    loader: Any,
    state: GanState,
    opts: GanOptions,
    on_log: Callable[[dict[str, float], int], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Train `state.epoch` from batch `state.batch` to the end (or until `should_stop()`)."""
    generator.train()
    discriminator.train()
    # on the device: Σ d_loss, Σ D(x), Σ D(G(z)), Σ g_loss; the counts are known on the host
    window = torch.tensor(state.window, dtype=torch.float32, device=opts.device)
    counts = list(state.window_counts)  # D steps, G steps, samples
    state.window, state.window_counts = [0.0] * 4, [0, 0, 0]
    t0 = time.perf_counter()
    for real, _ in loader.batches(state.epoch, start=state.batch):
        n = real.shape[0]
        z = torch.randn(n, opts.latent_dim, device=opts.device)
        d_loss, d_real, d_fake = d_step(generator, discriminator, opt_d, real, z, opts)
        window[:3] += torch.stack([d_loss, d_real, d_fake])
        state.batch += 1
        state.step += 1
        state.samples += n
        counts[0] += 1
        counts[2] += n
        if state.step % opts.n_critic == 0:
            z = torch.randn(n, opts.latent_dim, device=opts.device)
            window[3] += g_step(generator, discriminator, opt_g, z, opts)
            state.g_steps += 1
            counts[1] += 1
        if state.step % opts.log_every == 0 or state.batch == len(loader):
            t0 = _flush(window, counts, state, on_log, t0)
        if should_stop():
            # keep the unlogged window in the state: the resumed run logs it as this one would
            state.window, state.window_counts = window.tolist(), list(counts)
            state.train_seconds += time.perf_counter() - t0
            return


def _flush(window: Tensor, counts: list[int], state: GanState, on_log: Any, t0: float) -> float:
    """Read the window back from the device (the only sync), log it, fold it into the epoch."""
    d_loss, d_real, d_fake, g_loss = window.tolist()
    (d_steps, g_steps, n), counts[:] = list(counts), [0, 0, 0]
    window.zero_()
    now = time.perf_counter()
    state.train_seconds += now - t0
    if d_steps == 0:
        return now
    if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
        raise NonFiniteLoss(
            f"a GAN loss became non-finite at step {state.step} (epoch {state.epoch + 1}; "
            f"D loss {d_loss / d_steps}, G loss {g_loss / max(g_steps, 1)}). "
            "Try lower model.optim_d.lr/optim_g.lr, "
            "trainer.grad_clip=1.0, or model.loss=hinge."
        )
    sums = [d_loss, d_real, d_fake, g_loss, d_steps, g_steps]
    state.epoch_sums = [a + b for a, b in zip(state.epoch_sums, sums, strict=True)]
    metrics = {
        "train/d_loss": d_loss / d_steps,
        "train/d_real": d_real / d_steps,
        "train/d_fake": d_fake / d_steps,
        "throughput/samples_per_sec": n / max(now - t0, 1e-9),
    }
    if g_steps:
        metrics["train/g_loss"] = g_loss / g_steps
    on_log(metrics, state.batch)
    return time.perf_counter()


def reset_epoch(state: GanState) -> None:
    state.epoch_sums = list(_ZERO_SUMS)


def epoch_metrics(sums: list[float]) -> dict[str, float]:
    d_loss, d_real, d_fake, g_loss, d_steps, g_steps = sums
    metrics = {
        "train/d_loss": d_loss / max(d_steps, 1),
        "train/d_real": d_real / max(d_steps, 1),
        "train/d_fake": d_fake / max(d_steps, 1),
    }
    if g_steps:
        metrics["train/g_loss"] = g_loss / g_steps
    return metrics


# -- judging ----------------------------------------------------------------------
def evaluate(generator: nn.Module, evaluation: Evaluation, batch_size: int) -> dict[str, float]:
    """Fréchet distance and label entropies of G's samples for the fixed evaluation noise."""
    fakes = generate(generator, evaluation.noise, batch_size)
    stats = evaluation.features.statistics(fakes, batch_size)
    return compare(evaluation.real, stats)
