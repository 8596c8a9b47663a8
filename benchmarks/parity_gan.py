"""Parity for GANs: dlexp's GAN epoch against a hand-written D-then-G loop, same networks.

The reference is the pytorch/examples DCGAN step with the non-saturating BCE loss: (1) update
D on a real batch and G(z), (2) update G on fresh noise, a running loss kept on the device.
dlexp runs with its logging and progress bar; both train copies of the same networks on the
same device-resident data, timed interleaved in one process.

    python benchmarks/parity_gan.py [--model gan|dcgan] [--epochs 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

from common import interleaved, make_runner, median, report


def make_run(model: str, batch_size: int, run_dir: Path):
    overrides = [f"model={model}", f"trainer.batch_size={batch_size}", "trainer.progress=bar"]
    return make_runner(overrides, run_dir)


def dlexp_epoch(run) -> float:
    """One epoch through the task's own loop, as the runner calls it."""
    run.state.batch = 0
    run.reporter.start_epoch(run.state.epoch, 1, run.task.batches_per_epoch())
    start = time.perf_counter()
    run.task.train_epoch(run.state, run.log_step, run.should_stop)
    elapsed = time.perf_counter() - start
    run.reporter.end_epoch({"epoch": run.state.epoch})
    run.state.epoch += 1
    return elapsed


def reference_epoch(g, d, opt_g, opt_d, x, batch_size: int, latent: int, epoch: int) -> float:
    import torch
    import torch.nn.functional as F

    g.train()
    d.train()
    gen = torch.Generator().manual_seed(epoch)
    start = time.perf_counter()
    perm = torch.randperm(len(x), generator=gen).to(x.device)
    running = torch.zeros((), device=x.device)
    for i in range(0, len(x) - batch_size + 1, batch_size):  # full batches, as dlexp
        real = x.index_select(0, perm[i : i + batch_size])
        z = torch.randn(batch_size, latent, device=x.device)
        with torch.no_grad():
            fake = g(z)
        real_out, fake_out = d(real), d(fake)
        d_loss = F.binary_cross_entropy_with_logits(
            real_out, torch.ones_like(real_out)
        ) + F.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        out = d(g(torch.randn(batch_size, latent, device=x.device)))
        g_loss = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        running += d_loss.detach() + g_loss.detach()
    running.item()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gan", choices=["gan", "dcgan"])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per candidate")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(args.model, args.batch_size, Path(tmp) / "run")
        g, d = copy.deepcopy(run.task.generator), copy.deepcopy(run.task.discriminator)
        opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        x, latent = run.task.loader.x, run.cfg["model"]["latent_dim"]
        epoch = iter(range(10**6))
        fns = {
            "reference": lambda: reference_epoch(
                g, d, opt_g, opt_d, x, args.batch_size, latent, next(epoch)
            ),
            "dlexp": lambda: dlexp_epoch(run),
        }
        interleaved(fns, 1)
        times = {k: median(v) for k, v in interleaved(fns, args.epochs).items()}
        steps = run.task.batches_per_epoch()
        samples = steps * args.batch_size
        run.logger.close()
    row = {
        "model": args.model,
        "batch": args.batch_size,
        "samples/s": samples / times["dlexp"],
        "reference samples/s": samples / times["reference"],
        "ratio": times["reference"] / times["dlexp"],
        "overhead us/step": 1e6 * (times["dlexp"] - times["reference"]) / steps,
    }
    columns = list(row)
    report(f"parity_{args.model}", columns, [row], {"epochs": args.epochs})


if __name__ == "__main__":
    main()
