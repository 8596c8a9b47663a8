"""The classification loop: train_one_epoch and evaluate. Read it top to bottom.

Losses and accuracy accumulate on the device and are read back once per log interval, so the
loop never waits for the device in between. All progress lives in `TrainState`, which is
checkpointed with the model, so a run can stop after any step and continue exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlexp.engine.distributed import all_reduce_sum
from dlexp.engine.task import NonFiniteLoss


@dataclass
class TrainState:
    epoch: int = 0  # the epoch in progress (0-based); equals epochs completed when batch == 0
    batch: int = 0  # batches of `epoch` already trained
    step: int = 0  # optimizer steps taken in the whole run
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs without improvement, for early stopping
    epoch_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss·n, correct, n
    samples: int = 0  # training samples seen
    train_seconds: float = 0.0
    stopped_early: bool = False
    skipped_batches: int = 0  # batches with a non-finite loss, with trainer.nonfinite=skip
    # a log window cut short by an interruption, carried over so the resumed run logs the
    # very same records: device sums (see train_one_epoch) and [samples, steps]
    window: list[float] = field(default_factory=lambda: [0.0] * 5)
    window_counts: list[int] = field(default_factory=lambda: [0, 0])


@dataclass
class LoopOptions:
    epochs: int
    log_every: int
    device: torch.device
    autocast: Callable[[], Any]
    grad_clip: float | None = None
    l1: float = 0.0
    l2: float = 0.0
    channels_last: bool = False
    figures_every: int = 0
    skip_nonfinite: bool = False
    world_size: int = 1  # data-parallel processes: the log window is summed over all of them


def forward(model: nn.Module, x: Any, channels_last: bool) -> torch.Tensor:
    """Images come as one tensor; sequences as a tuple (e.g. token ids and lengths)."""
    if isinstance(x, tuple):
        return model(*x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return model(x)


def penalties(
    weights: list[torch.Tensor], l1: float, l2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit L1/L2 terms (0-dim tensors): λ₁·Σ|w| and λ₂·Σw² over the weight tensors."""
    zero = weights[0].new_zeros(()) if weights else torch.zeros(())
    pen1 = l1 * sum((w.abs().sum() for w in weights), zero) if l1 else zero
    pen2 = l2 * sum((w.pow(2).sum() for w in weights), zero) if l2 else zero
    return pen1, pen2


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    state: TrainState,
    opts: LoopOptions,
    weights: list[torch.Tensor],
    on_log: Callable[[dict[str, float], int], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Train `state.epoch` from batch `state.batch` to the end (or until `should_stop()`)."""
    model.train()
    # on the device: Σ loss·n, Σ correct, Σ l1 penalty, Σ l2 penalty, Σ grad norm, updated in
    # place through views (few small ops per step); the sample and step counts stay on the host
    window = torch.tensor(state.window, dtype=torch.float32, device=opts.device)
    loss_sum, correct_sum, l1_sum, l2_sum, norm_sum = window.unbind(0)
    counts = list(state.window_counts)
    state.window, state.window_counts = [0.0] * 5, [0, 0]
    penalised = bool(opts.l1 or opts.l2)
    n_batches = len(loader)
    t0 = time.perf_counter()
    for x, y in loader.batches(state.epoch, start=state.batch):
        with opts.autocast():
            logits = forward(model, x, opts.channels_last)
            loss = F.cross_entropy(logits, y)
        total = loss
        if penalised:
            pen1, pen2 = penalties(weights, opts.l1, opts.l2)
            total = loss + pen1 + pen2
        optimizer.zero_grad(set_to_none=True)
        if opts.skip_nonfinite and not bool(torch.isfinite(total)):  # a sync, only when asked
            state.skipped_batches += 1
            state.batch += 1
            if state.batch == n_batches:
                t0 = _flush(window, counts, state, optimizer, on_log, t0, opts.world_size)
            continue
        grad_norm = None
        if scaler is not None:
            scaler.scale(total).backward()
            if opts.grad_clip:
                scaler.unscale_(optimizer)
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            total.backward()
            if opts.grad_clip:
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()

        n = y.shape[0]
        with torch.no_grad():
            loss_sum.add_(loss.detach(), alpha=n)
            correct_sum.add_((logits.argmax(1) == y).sum())
            if penalised:
                l1_sum.add_(pen1.detach())
                l2_sum.add_(pen2.detach())
            if grad_norm is not None:
                norm_sum.add_(grad_norm)
        counts[0] += n
        counts[1] += 1
        state.batch += 1
        state.step += 1
        state.samples += n * opts.world_size  # the whole global batch, as the logs count
        if state.step % opts.log_every == 0 or state.batch == n_batches:
            t0 = _flush(window, counts, state, optimizer, on_log, t0, opts.world_size)
        if should_stop():
            # keep the unlogged window in the state: the resumed run logs it as this one would
            state.window, state.window_counts = window.tolist(), list(counts)
            state.train_seconds += time.perf_counter() - t0
            return


def _flush(
    window: torch.Tensor,
    counts: list[int],
    state: TrainState,
    optimizer: Any,
    on_log: Any,
    t0: float,
    world_size: int = 1,
) -> float:
    """Read the window back from the device (the only sync), log it, fold it into the epoch."""
    if world_size > 1:
        all_reduce_sum(window)  # equal shards: every rank saw the same number of samples
        window[2:] /= world_size  # penalties and the gradient norm are the same on every rank
    loss_n, correct, pen1, pen2, grad_norm = window.tolist()
    (n, steps), counts[:] = [counts[0] * world_size, counts[1]], [0, 0]
    window.zero_()
    now = time.perf_counter()
    state.train_seconds += now - t0
    if n == 0:
        return now
    if not math.isfinite(loss_n):
        raise NonFiniteLoss(
            f"the training loss became {loss_n / n} at step {state.step} (epoch {state.epoch + 1}). "
            "Try a lower optim.lr, "
            "trainer.grad_clip=1.0, trainer.precision=32, or trainer.nonfinite=skip to skip "
            "such batches."
        )
    sums = state.epoch_sums
    state.epoch_sums = [sums[0] + loss_n, sums[1] + correct, sums[2] + n]
    metrics = {
        "train/loss": loss_n / n,
        "train/acc": correct / n,
        "lr": optimizer.param_groups[0]["lr"],
        "throughput/samples_per_sec": n / max(now - t0, 1e-9),
    }
    if state.skipped_batches:
        metrics["train/skipped_batches"] = float(state.skipped_batches)
    if pen1:
        metrics["train/l1_penalty"] = pen1 / steps
    if pen2:
        metrics["train/l2_penalty"] = pen2 / steps
    if grad_norm:  # measured when clipping is on: the norm before clipping
        metrics["train/grad_norm"] = grad_norm / steps
    on_log(metrics, state.batch)
    return time.perf_counter()


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Any, opts: LoopOptions, keep_predictions: bool = False
) -> tuple[dict[str, float], torch.Tensor | None, torch.Tensor | None]:
    """Mean loss and accuracy over a whole split; optionally every prediction and target."""
    model.eval()
    sums = torch.zeros(3, device=opts.device)
    preds, targets = [], []
    for x, y in loader.batches(0):
        with opts.autocast():
            logits = forward(model, x, opts.channels_last)
        p = logits.argmax(1)
        loss = F.cross_entropy(logits.float(), y, reduction="sum")
        sums += torch.stack([loss, (p == y).sum().float(), loss.new_tensor(float(y.shape[0]))])
        if keep_predictions:
            preds.append(p)
            targets.append(y)
    loss_sum, correct, n = sums.tolist()
    metrics = {"loss": loss_sum / n, "acc": correct / n} if n else {}
    if not keep_predictions or not preds:
        return metrics, None, None
    return metrics, torch.cat(preds), torch.cat(targets)
