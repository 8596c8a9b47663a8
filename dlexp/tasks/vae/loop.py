"""The autoencoder loop: losses, one step, one epoch, validation. Read it top to bottom.

Every number is per image, in nats: the reconstruction term is −log p(x|z) summed over the
pixels, the KL term KL(q(z|x) ‖ N(0, I)) summed over the latent dimensions, and their sum the
negative ELBO, an upper bound on −log p(x). The training objective weights the KL term by
β (β-VAE) times the warm-up factor; the logged `neg_elbo` never does, so runs with different β
stay comparable. An autoencoder has the reconstruction term alone.

Losses accumulate on the device and are read back once per log interval, as in the GAN loop.
All progress lives in `VaeState`, so a run can stop after any step and continue exactly.
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

from dlexp.engine.task import NonFiniteLoss
from dlexp.models.vae import reparameterize

LIKELIHOODS = ("bernoulli", "gaussian")
CORRUPTIONS = ("none", "gaussian", "mask")
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
# sums kept per epoch: objective, reconstruction, KL (each summed over images), images
_ZERO_SUMS = [0.0] * 4


@dataclass
class VaeState:
    epoch: int = 0  # the epoch in progress (0-based); equals epochs completed when batch == 0
    batch: int = 0  # batches of `epoch` already trained
    step: int = 0  # optimizer steps in the whole run
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    epoch_sums: list[float] = field(default_factory=lambda: list(_ZERO_SUMS))
    samples: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False
    # a log window cut short by an interruption: its device sums and [steps, images]
    window: list[float] = field(default_factory=lambda: [0.0] * 3)
    window_counts: list[int] = field(default_factory=lambda: [0, 0])


@dataclass
class VaeOptions:
    variational: bool
    likelihood: str = "bernoulli"
    gaussian_std: float = 0.1  # σ of the Gaussian likelihood (pixels in [0, 1])
    beta: float = 1.0
    kl_warmup_steps: int = 0  # the KL weight ramps linearly from 0 to beta over these steps
    denoise: str = "none"
    denoise_level: float = 0.0
    log_every: int = 50
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    autocast: Callable[[], Any] = nullcontext
    grad_clip: float | None = None


# -- the terms, per image ---------------------------------------------------------------------------
def reconstruction_nll(logits: Tensor, x: Tensor, likelihood: str, std: float = 0.1) -> Tensor:
    """−log p(x|z) per image [N] in nats, from the decoder's logits and targets x in [0, 1].

    bernoulli: binary cross-entropy of sigmoid(logits) against x (the classic choice for
    MNIST). gaussian: N(x; sigmoid(logits), std²) per pixel, i.e. the squared error / (2 std²)
    plus the normalising constant, so the number is a true (continuous) log-density."""
    logits, x = logits.float(), x.float()
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif likelihood == "gaussian":
        z = (x - logits.sigmoid()) / std
        nll = 0.5 * z.square() + math.log(std) + _LOG_SQRT_2PI
    else:
        raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
    return nll.flatten(1).sum(1)


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, e^logvar) ‖ N(0, I)) per image [N], in closed form."""
    mean, logvar = mean.float(), logvar.float()
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(1)


def corrupt(x: Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> Tensor:
    """The input a denoising autoencoder sees: gaussian adds N(0, level²) noise (clipped to
    [0, 1]); mask sets each pixel to 0 with probability `level`. The target stays x."""
    if kind == "none" or level == 0:
        return x
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, device=generator_device(x, generator))
        return (x + level * noise.to(x.device)).clamp(0, 1)
    if kind == "mask":
        keep = torch.rand(x.shape, generator=generator, device=generator_device(x, generator))
        return x * (keep.to(x.device) >= level)
    raise ValueError(f"denoise must be one of {', '.join(CORRUPTIONS)}, got {kind!r}")


def generator_device(x: Tensor, generator: torch.Generator | None) -> torch.device:
    """Where to draw: on x's device from the global RNG, or where `generator` lives."""
    return x.device if generator is None else generator.device


def kl_weight(step: int, opts: VaeOptions) -> float:
    """β times the warm-up factor for optimizer step `step` (1-based)."""
    if opts.kl_warmup_steps <= 0:
        return opts.beta
    return opts.beta * min(1.0, step / opts.kl_warmup_steps)


# -- one step ---------------------------------------------------------------------------------------
def train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    x: Tensor,
    weight: float,
    opts: VaeOptions,
) -> Tensor:
    """One update on batch x; returns detached sums over the batch: (objective, recon, KL)."""
    inputs = corrupt(x, opts.denoise, opts.denoise_level)
    with opts.autocast():
        logits, mean, logvar = net(inputs)
    recon = reconstruction_nll(logits, x, opts.likelihood, opts.gaussian_std)
    kl = kl_divergence(mean, logvar) if logvar is not None else torch.zeros_like(recon)
    per_image = recon + weight * kl
    loss = per_image.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if opts.grad_clip:
        nn.utils.clip_grad_norm_(net.parameters(), opts.grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return torch.stack([per_image.sum(), recon.sum(), kl.sum()]).detach()


# -- one epoch --------------------------------------------------------------------------------------
def train_one_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader: Any,
    state: VaeState,
    opts: VaeOptions,
    on_log: Callable[[dict[str, float], int], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Train `state.epoch` from batch `state.batch` to the end (or until `should_stop()`)."""
    net.train()
    window = torch.tensor(state.window, dtype=torch.float32, device=opts.device)
    counts = list(state.window_counts)  # steps, images
    state.window, state.window_counts = [0.0] * 3, [0, 0]
    t0 = time.perf_counter()
    for x, _ in loader.batches(state.epoch, start=state.batch):
        weight = kl_weight(state.step + 1, opts)
        window += train_step(net, optimizer, scheduler, x, weight, opts)
        n = x.shape[0]
        state.batch += 1
        state.step += 1
        state.samples += n
        counts[0] += 1
        counts[1] += n
        if state.step % opts.log_every == 0 or state.batch == len(loader):
            t0 = _flush(window, counts, state, opts, on_log, t0)
        if should_stop():
            # keep the unlogged window: the resumed run logs it as this one would have
            state.window, state.window_counts = window.tolist(), list(counts)
            state.train_seconds += time.perf_counter() - t0
            return


def _flush(
    window: Tensor, counts: list[int], state: VaeState, opts: VaeOptions, on_log: Any, t0: float
) -> float:
    """Read the window back from the device (the only sync), log it, fold it into the epoch."""
    loss, recon, kl = window.tolist()
    (steps, n), counts[:] = list(counts), [0, 0]
    window.zero_()
    now = time.perf_counter()
    state.train_seconds += now - t0
    if steps == 0:
        return now
    if not math.isfinite(loss):
        raise NonFiniteLoss(
            f"the loss became non-finite at step {state.step} (epoch {state.epoch + 1}; "
            f"reconstruction {recon / n}, KL {kl / n}). Try a lower optim.lr, "
            "trainer.grad_clip=1.0, or model.kl_warmup_epochs=2."
        )
    state.epoch_sums = [a + b for a, b in zip(state.epoch_sums, [loss, recon, kl, n], strict=True)]
    metrics = per_image(loss, recon, kl, n, opts.variational)
    if opts.variational:
        metrics["train/kl_weight"] = kl_weight(state.step, opts)
    metrics["throughput/samples_per_sec"] = n / max(now - t0, 1e-9)
    on_log(metrics, state.batch)
    return time.perf_counter()


def per_image(
    loss: float, recon: float, kl: float, n: float, variational: bool
) -> dict[str, float]:
    """Training metrics from sums over `n` images."""
    n = max(n, 1)
    if not variational:
        return {"train/loss": loss / n, "train/recon": recon / n}
    return {
        "train/loss": loss / n,
        "train/recon": recon / n,
        "train/kl": kl / n,
        "train/neg_elbo": (recon + kl) / n,
    }


def reset_epoch(state: VaeState) -> dict[str, float]:
    """The finished epoch's sums; the state starts the next epoch from zero."""
    loss, recon, kl, n = state.epoch_sums
    state.epoch_sums = list(_ZERO_SUMS)
    return {"loss": loss, "recon": recon, "kl": kl, "n": n}


# -- validation -------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    net: nn.Module, x: Tensor, opts: VaeOptions, seed: int, batch_size: int
) -> dict[str, float]:
    """Mean reconstruction term, KL and negative ELBO per image of clean images x, in eval mode.

    The ELBO's one sample z ~ q(z|x) per image uses noise from a generator seeded with `seed`:
    the same noise every epoch (epochs differ only by the weights), and the training RNG
    stream is left untouched."""
    was_training = net.training
    net.eval()
    gen = torch.Generator().manual_seed(seed)
    sums = torch.zeros(2, dtype=torch.float64)
    try:
        for lo in range(0, len(x), batch_size):
            xb = x[lo : lo + batch_size]
            with opts.autocast():
                mean, logvar = net.encode(xb)
                z = mean
                if logvar is not None:
                    eps = torch.randn(mean.shape, generator=gen).to(mean.device, mean.dtype)
                    z = reparameterize(mean, logvar, eps)
                logits = net.decode(z)
            recon = reconstruction_nll(logits, xb, opts.likelihood, opts.gaussian_std)
            kl = kl_divergence(mean, logvar) if logvar is not None else torch.zeros_like(recon)
            sums += torch.stack([recon.sum(), kl.sum()]).double().cpu()
    finally:
        net.train(was_training)
    recon_mean, kl_mean = (sums / max(len(x), 1)).tolist()
    if not opts.variational:
        return {"recon": recon_mean}
    return {"recon": recon_mean, "kl": kl_mean, "neg_elbo": recon_mean + kl_mean}
