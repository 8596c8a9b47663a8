"""Data path: the device-resident tensor loader against torch DataLoaders (0 and 2 workers).

LeNet on MNIST-shaped data (the bundled sample), a full training epoch each, interleaved in
one process; reported as samples/s and as a ratio to the tensor path.

    python benchmarks/data_path.py [--epochs 3] [--batch-size 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

from common import interleaved, median, report


def build(kind: str, workers: int, batch_size: int, device: str):
    import torch

    from dlexp.engine.databuild import build_data
    from dlexp.models.cnn import LeNet5

    data = build_data(
        {
            "name": "mnist_sample",
            "data_dir": "~/.cache/dlexp/data",
            "download": False,
            "val_fraction": 0.1,
            "split_seed": 0,
            "augment": "none",
            "loader": kind,
            "memory_budget_mb": 4096,
            "num_workers": workers,
        },
        batch_size=batch_size,
        eval_batch_size=1000,
        model_image_size=32,
        device=torch.device(device),
        channels_last=False,
        seed=0,
    )
    torch.manual_seed(0)
    model = LeNet5().to(device)
    return data.train, model, torch.optim.Adam(model.parameters(), lr=1e-3)


def epoch_time(loader, model, optimizer, epoch: int) -> float:
    import torch
    import torch.nn.functional as F

    start = time.perf_counter()
    running = None
    for x, y in loader.batches(epoch):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = loss.detach() if running is None else running + loss.detach()
    float(running)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    setups = {
        "tensor (device-resident)": build("tensor", 0, args.batch_size, args.device),
        "DataLoader, 0 workers": build("dataloader", 0, args.batch_size, args.device),
        "DataLoader, 2 workers": build("dataloader", 2, args.batch_size, args.device),
    }
    counters = {name: iter(range(10**6)) for name in setups}
    fns = {
        name: (lambda name=name, s=s: epoch_time(*s, next(counters[name])))
        for name, s in setups.items()
    }
    interleaved(fns, 1)  # warm-up (starts the persistent workers too)
    times = {k: median(v) for k, v in interleaved(fns, args.epochs).items()}
    samples = setups["tensor (device-resident)"][0].num_samples
    base = times["tensor (device-resident)"]
    rows = [
        {"loader": name, "samples/s": samples / t, "speed vs tensor path": base / t}
        for name, t in times.items()
    ]
    report(
        "data_path",
        ["loader", "samples/s", "speed vs tensor path"],
        rows,
        {"device": args.device, "batch_size": args.batch_size},
    )


if __name__ == "__main__":
    main()
