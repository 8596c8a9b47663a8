"""Parity: dlexp's training loop against a minimal hand-written PyTorch loop.

Same model, data, batch size, optimizer and device. dlexp runs with its logging (metrics.jsonl,
TensorBoard) and a progress bar on; the reference loop keeps a running loss on the device and
reads it once per epoch. Both are timed in the same process, interleaved, and reported as a
samples/s ratio (>= 1.0: dlexp is at least as fast) and overhead per step.

Two dlexp rows per batch size: `same settings` (channels_last off, exactly the reference's
work: the loop's own cost) and `defaults` (what `dlexp` does out of the box, e.g. channels_last
for conv nets on CPU).

    python benchmarks/parity.py [--epochs 3] [--batch-sizes 64 512] [--device cpu]
        [--overrides data.val_fraction=0.9]   (both rows and the reference: e.g. less data)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import interleaved, make_runner, median, report


def make_run(
    device: str, batch_size: int, channels_last: bool | str, run_dir: Path, extra: tuple = ()
):
    overrides = [
        f"trainer.device={device}",
        f"trainer.batch_size={batch_size}",
        f"trainer.channels_last={str(channels_last).lower()}",
        "trainer.progress=bar",
        "trainer.seed=0",
        *extra,
    ]
    return make_runner(overrides, run_dir)


def dlexp_epoch(run) -> float:
    """One epoch through the task's own loop, as the runner calls it."""
    run.state.batch = 0
    run.reporter.start_epoch(run.state.epoch, 1, run.task.batches_per_epoch())
    start = time.perf_counter()
    run.task.train_epoch(run.state, run.log_step, run.should_stop)
    _sync(run.device)
    elapsed = time.perf_counter() - start
    run.reporter.end_epoch({"epoch": run.state.epoch})
    run.state.epoch += 1
    return elapsed


def reference_epoch(
    model, optimizer, x, y, batch_size: int, epoch: int, device, clip: float | None = None
) -> float:
    """What a careful user writes by hand: shuffled index batches, a device-side running loss
    (and gradient clipping where dlexp clips too, as it does for sequence models)."""
    import torch
    import torch.nn.functional as F

    model.train()
    gen = torch.Generator().manual_seed(epoch)
    start = time.perf_counter()
    perm = torch.randperm(len(x), generator=gen).to(device)
    running = torch.zeros((), device=device)
    for i in range(0, len(x), batch_size):
        idx = perm[i : i + batch_size]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # faster than x[idx]
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        running += loss.detach()
    running.item()
    _sync(device)
    return time.perf_counter() - start


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    bs: int,
    device_name: str,
    epochs: int,
    tmp: Path,
    extra: tuple = (),
    model: str = "lenet",
    common: tuple = (),
) -> list[dict]:
    import copy

    import torch

    same = make_run(device_name, bs, False, tmp / "same", (f"model={model}", *common))
    default = make_run(
        device_name, bs, "auto", tmp / "default", (f"model={model}", *common, *extra)
    )
    device = same.device
    loader = same.task.data.train
    ref_model = copy.deepcopy(same.task.model)  # the very same network, trained by hand
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-3)
    clip = same.task.opts.grad_clip
    epoch = iter(range(10**6))

    def reference() -> float:
        x, y = loader.x, loader.y
        return reference_epoch(ref_model, ref_opt, x, y, bs, next(epoch), device, clip)

    def several(fn, n: int = 3) -> float:  # one timing = 3 epochs: short epochs are noisy
        return sum(fn() for _ in range(n))

    candidates = {
        "reference": lambda: several(reference),
        "same": lambda: several(lambda: dlexp_epoch(same)),
        "default": lambda: several(lambda: dlexp_epoch(default)),
    }
    interleaved(candidates, 1)  # warm-up: allocator, kernels, caches
    times = {k: median(v) for k, v in interleaved(candidates, epochs).items()}
    steps, samples = 3 * len(loader), 3 * loader.num_samples
    rows = []
    for name, label in (("same", "dlexp, same settings"), ("default", "dlexp, defaults")):
        if name == "default" and extra:
            label += " + " + " ".join(extra)
        rows.append(
            {
                "model": model,
                "batch": bs,
                "loop": label,
                "samples/s": samples / times[name],
                "reference samples/s": samples / times["reference"],
                "ratio": times["reference"] / times[name],
                "overhead us/step": 1e6 * (times[name] - times["reference"]) / steps,
            }
        )
    for run in (same, default):
        run.logger.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed rounds (of 3 epochs) each")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["lenet"], help="e.g. lenet lstm")
    parser.add_argument(
        "--extra",
        nargs="*",
        default=[],
        help="overrides for the `defaults` row, e.g. trainer.precision=bf16",
    )
    parser.add_argument(
        "--overrides",
        nargs="*",
        default=[],
        help="overrides for both rows, e.g. data.val_fraction=0.9 (a tenth of the data)",
    )
    args = parser.parse_args()

    rows = []
    for model in args.models:
        for bs in args.batch_sizes:
            with tempfile.TemporaryDirectory() as tmp:
                rows += measure(
                    bs,
                    args.device,
                    args.epochs,
                    Path(tmp),
                    tuple(args.extra),
                    model,
                    tuple(args.overrides),
                )
    columns = [
        "model",
        "batch",
        "loop",
        "samples/s",
        "reference samples/s",
        "ratio",
        "overhead us/step",
    ]
    tags = [m for m in args.models if m != "lenet"] + [e.split("=")[-1] for e in args.extra]
    name = "_".join(["parity", *tags])
    settings = {"device": args.device, "epochs": args.epochs, "extra": args.extra}
    report(name, columns, rows, settings | {"overrides": args.overrides})


if __name__ == "__main__":
    main()
