"""How fast are the ways through a recurrent classifier on this CPU? One training step each.

    python benchmarks/rnn_paths.py             # ~2 minutes on 2 cores
    python benchmarks/rnn_paths.py --quick     # fewer repeats and shorter sequences

Compares, on `dlexp.models.rnn.RNNClassifier` itself (so the numbers are the model's own paths):
  * padded batch + length-aware readout (the default for unidirectional models) versus packed
    sequences (`pack="always"`), for LSTM, GRU and vanilla RNN cells;
  * oneDNN (mkldnn) on versus off, for padded and for packed LSTMs, at B64 x T200 x H128 and at
    the sequential-MNIST shape (B64 x T28 x 28 features);
  * bidirectional LSTM: packed (the correct path for padded batches) versus padded (wrong when
    a batch has padding; shown for its price only).
Every case runs once per round, rounds interleaved, and the median is reported, so load from
other processes hits all cases alike; ratios compare cases measured in the same run. Prints a
table and writes benchmarks/results/rnn_paths.json. On a shared machine, check the load average
it reports: two busy threads on two cores slow every case several-fold.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import interleaved, median, report

from dlexp.models.rnn import RNNClassifier


def token_step(
    cell: str,
    *,
    pack: str,
    mkldnn: bool | str,
    bidirectional: bool = False,
    steps: int = 200,
    give_lengths: bool = True,
) -> Callable[[], None]:
    """One optimizer step on 64 token sequences of steps/4..`steps` tokens (right-padded)."""
    torch.manual_seed(0)
    model = RNNClassifier(
        num_classes=2,
        cell=cell,
        vocab_size=20_000,
        embedding_dim=128,
        hidden_size=128,
        bidirectional=bidirectional,
        pack=pack,
        mkldnn=mkldnn,
    )
    opt = torch.optim.Adam(model.parameters())
    gen = torch.Generator().manual_seed(1)

    def step() -> None:
        # fresh lengths every step, the batch cut to its longest sequence: as the text loader
        # does, and it matters: oneDNN builds kernels per shape
        lengths = torch.randint(steps // 4, steps + 1, (64,), generator=gen)
        ids = torch.randint(2, 20_000, (64, int(lengths.max())), generator=gen)
        ids[torch.arange(ids.shape[1]) >= lengths[:, None]] = 0
        labels = torch.randint(0, 2, (64,), generator=gen)
        logits = model(ids, lengths) if give_lengths else model(ids)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def image_step(*, mkldnn: bool | str) -> Callable[[], None]:
    """One optimizer step of sequential MNIST: 64 images read as 28 rows of 28 pixels."""
    torch.manual_seed(0)
    model = RNNClassifier(num_classes=10, cell="lstm", in_channels=1, image_size=28, mkldnn=mkldnn)
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def cases(steps: int) -> dict[str, Callable[[], None]]:
    out: dict[str, Callable[[], None]] = {}
    for cell in ("lstm", "gru", "rnn"):
        out[f"{cell} padded"] = token_step(cell, pack="auto", mkldnn="auto", steps=steps)
        out[f"{cell} packed"] = token_step(cell, pack="always", mkldnn="auto", steps=steps)
    for path, pack in (("padded", "auto"), ("packed", "always")):
        for flag in (True, False):
            name = f"lstm {path} mkldnn={'on' if flag else 'off'}"
            out[name] = token_step("lstm", pack=pack, mkldnn=flag, steps=steps)
    out["bi-lstm packed"] = token_step(
        "lstm", pack="auto", mkldnn="auto", bidirectional=True, steps=steps
    )
    # lengths withheld: the model runs the padded batch as if unpadded (reverse starts on pads)
    out["bi-lstm padded (wrong)"] = token_step(
        "lstm", pack="auto", mkldnn="auto", bidirectional=True, steps=steps, give_lengths=False
    )
    for flag in (True, False):
        out[f"seqmnist lstm mkldnn={'on' if flag else 'off'}"] = image_step(mkldnn=flag)
    return out


def ratio(times: dict[str, list[float]], slow: str, fast: str) -> dict[str, object]:
    """`slow` / `fast` by the medians and by the minima (the least disturbed runs)."""
    return {
        "slower": slow,
        "faster": fast,
        "median_ratio": round(median(times[slow]) / median(times[fast]), 2),
        "min_ratio": round(min(times[slow]) / min(times[fast]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, T=100")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = 100 if args.quick else 200
    rounds = args.rounds or (3 if args.quick else 7)
    load_before = os.getloadavg()[0]
    runs = cases(steps)
    for run in runs.values():  # warm-up: allocations, oneDNN kernels for the first shapes
        run()
    times = interleaved({name: _timed(run) for name, run in runs.items()}, rounds)
    med = {name: median(t) for name, t in times.items()}
    rows = [
        {"case": name, "median_ms": 1000 * med[name], "min_ms": 1000 * min(t)}
        for name, t in times.items()
    ]
    comparisons = [
        ratio(times, f"{cell} packed", f"{cell} padded") for cell in ("lstm", "gru", "rnn")
    ] + [
        ratio(times, "lstm packed mkldnn=on", "lstm packed mkldnn=off"),
        ratio(times, "lstm padded mkldnn=off", "lstm padded mkldnn=on"),
        ratio(times, "seqmnist lstm mkldnn=off", "seqmnist lstm mkldnn=on"),
        ratio(times, "bi-lstm packed", "bi-lstm padded (wrong)"),
    ]
    print(f"one training step: B=64, T<={steps} tokens (T=28 rows for seqmnist), H=128; ")
    print(f"median of {rounds} interleaved rounds; load average before: {load_before:.2f}\n")
    extra = {
        "steps": steps,
        "rounds": rounds,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "ratios": comparisons,
    }
    report("rnn_paths", ["case", "median_ms", "min_ms"], rows, extra)
    print(f"\n{'slower / faster':<56}{'by median':>10}{'by min':>8}")
    for c in comparisons:
        pair = f"{c['slower']} / {c['faster']}"
        print(f"{pair:<56}{c['median_ratio']:>9.2f}x{c['min_ratio']:>7.2f}x")


def _timed(run: Callable[[], None]) -> Callable[[], float]:
    def timed() -> float:
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0

    return timed


if __name__ == "__main__":
    main()
