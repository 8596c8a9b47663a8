"""Scaling: epoch time against data set size (1x, 2x, 4x the bundled sample, tiled).

Linear cost means the time per sample stays flat: the `per-sample vs 1x` column stays near 1.

    python benchmarks/scaling.py [--epochs 2] [--device cpu]
"""

from __future__ import annotations

import argparse

from common import interleaved, median, report
from data_path import build, epoch_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from dlexp.data.loaders import TensorLoader

    base, model, optimizer = build("tensor", 0, args.batch_size, args.device)
    loaders = {
        k: TensorLoader(
            base.x.repeat(k, 1, 1, 1), base.y.repeat(k), args.batch_size, shuffle=True, seed=0
        )
        for k in (1, 2, 4)
    }
    counter = iter(range(10**6))
    fns = {
        k: (lambda ld=ld: epoch_time(ld, model, optimizer, next(counter)))
        for k, ld in loaders.items()
    }
    interleaved(fns, 1)
    times = {k: median(v) for k, v in interleaved(fns, args.epochs).items()}
    per_sample_1x = times[1] / loaders[1].num_samples
    rows = [
        {
            "size": f"{k}x",
            "samples": loaders[k].num_samples,
            "epoch s": times[k],
            "per-sample vs 1x": times[k] / loaders[k].num_samples / per_sample_1x,
        }
        for k in loaders
    ]
    report(
        "scaling", ["size", "samples", "epoch s", "per-sample vs 1x"], rows, {"device": args.device}
    )


if __name__ == "__main__":
    main()
