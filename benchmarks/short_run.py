"""A short run as a whole process: `dlexp trainer.epochs=3` against a plain script that does
the same work (LeNet on the cached digits, channels_last, validation every epoch, the best
epoch's weights on the test split). Each is a fresh process, timed from launch to exit,
interleaved; medians and the ratio plain/dlexp (1.0: dlexp costs nothing extra).

Each run also says where its time went, from timestamps taken inside the process: launch to
first step, the epochs, after the epochs; for dlexp, phase by phase (its own functions,
wrapped; nothing else changes). On a busy machine the epochs vary most: the time beyond the
epochs is the steadier measure of what a run costs.

    python benchmarks/short_run.py [--epochs 3] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import interleaved, median, report

# Runs dlexp's own entry point with a timestamp at the start and end of each phase. The
# runner is patched when train() is entered, so imports happen where they always do.
PHASED = r"""
import atexit, json, sys, time
out, marks = sys.argv.pop(1), []
atexit.register(lambda: open(out, "w").write(json.dumps(marks + [["atexit", time.time()]])))

def timed(owner, name, label):
    inner = getattr(owner, name)
    def wrapper(*args, **kwargs):
        marks.append([label + " start", time.time()])
        try:
            return inner(*args, **kwargs)
        finally:
            marks.append([label + " end", time.time()])
    setattr(owner, name, wrapper)

import dlexp.cli.train as entry
original_train = entry.train
def train(*args, **kwargs):
    marks.append(["train start", time.time()])
    from dlexp.engine import runner
    timed(runner, "setup_torch", "set-up")
    for name in ("run", "write_run_files", "open_folder", "fit", "finish", "close"):
        timed(runner.Runner, name, name)
    original_run = runner.Runner.run
    def run(self):
        timed(self.task, "build", "build")
        return original_run(self)
    runner.Runner.run = run
    return original_train(*args, **kwargs)
entry.train = train
sys.argv = ["dlexp", *sys.argv[1:]]
from dlexp.cli.main import main
main()
"""

# (phase, from mark, to mark); "launch" and "exit" are taken by the parent process
PHASES = [
    ("python, Hydra, composing the config", "launch", "train start"),
    ("importing torch and the runner", "train start", "run start"),
    ("torch set-up", "set-up start", "set-up end"),
    ("config.yaml, command.txt, provenance", "write_run_files start", "write_run_files end"),
    ("data, model, optimizer", "build start", "build end"),
    ("TensorBoard writer, HParams, latest", "open_folder start", "open_folder end"),
    ("epochs (training + validation)", "fit start", "fit end"),
    ("best weights, figures, test split", "finish start", "finish end"),
    ("summary.json, closing the writers", "close start", "close end"),
    ("Hydra's end, atexit handlers", "close end", "atexit"),
    ("interpreter shutdown", "atexit", "exit"),
]


# the same four parts of either run, from in-process timestamps (medians of --phase-runs)
SPLIT = ("launch to first step", "epochs (training + validation)", "after the epochs", "whole")


def plain_run(epochs: int, cache: Path, launch: float) -> dict[str, float]:
    """What a careful user writes by hand for the same work; returns its own timings."""
    import copy

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    with np.load(cache) as f:
        x, y = torch.from_numpy(f["x"]).unsqueeze(1), torch.from_numpy(f["y"].astype(np.int64))
    rng = np.random.default_rng(0)
    order = torch.from_numpy(rng.permutation(len(y)))
    test, val, train = order[:1000], order[1000:1400], order[1400:]
    scaled = x.float().div_(255)
    mean, std = scaled[train].mean(), scaled[train].std()
    # 28x28 digits zero-padded to 32x32 (black border), normalised, channels_last
    images = F.pad((scaled - mean) / std, (2, 2, 2, 2), value=float(-mean / std))
    images = images.contiguous(memory_format=torch.channels_last)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    ).to(memory_format=torch.channels_last)  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def evaluate(idx: torch.Tensor) -> tuple[float, float]:
        model.eval()
        loss, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(idx), 1000):
                logits = model(images[idx[i : i + 1000]])
                target = y[idx[i : i + 1000]]
                loss += F.cross_entropy(logits, target, reduction="sum").item()
                correct += int((logits.argmax(1) == target).sum())
        return loss / len(idx), correct / len(idx)

    first_step = train_time = 0.0
    best, best_state = -1.0, None
    for epoch in range(epochs):
        epoch_start = time.time()
        first_step = first_step or epoch_start
        model.train()
        perm = train[torch.randperm(len(train))]
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(images[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        val_loss, val_acc = evaluate(val)
        train_time += time.time() - epoch_start
        print(f"epoch {epoch + 1}: val/loss {val_loss:.4f} val/acc {val_acc:.4f}")
        if val_acc > best:
            best, best_state = val_acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    test_loss, test_acc = evaluate(test)
    print(f"best val/acc {best:.4f} · test/acc {test_acc:.4f}")
    return {"first_step": first_step - launch, "epochs": train_time}


def cache_file() -> Path:
    root = os.environ.get("DLEXP_DATA_DIR", "~/.cache/dlexp/data")
    return Path(root).expanduser() / "mnist_sample" / "mnist_5k.npz"


def whole(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def plain_phases(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """The plain script's own account of one run (see SPLIT)."""
    launch = time.time()
    done = subprocess.run(
        [*cmd, f"--launch={launch}"], env=env, check=True, capture_output=True, text=True
    )
    whole_s = time.time() - launch
    own = json.loads(done.stdout.strip().splitlines()[-1])
    after = whole_s - own["first_step"] - own["epochs"]
    return dict(zip(SPLIT, (own["first_step"], own["epochs"], after, whole_s), strict=True))


def phased(overrides: list[str], env: dict[str, str], tmp: Path) -> dict[str, float]:
    """Seconds per phase of one dlexp run (PHASES, then SPLIT)."""
    out = tmp / "marks.json"
    launch = time.time()
    cmd = [sys.executable, "-c", PHASED, str(out), *overrides]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marks = {"launch": launch, **dict(json.loads(out.read_text())), "exit": time.time()}
    phases = {name: marks[end] - marks[begin] for name, begin, end in PHASES}
    split = (
        marks["fit start"] - launch,
        marks["fit end"] - marks["fit start"],
        marks["exit"] - marks["fit end"],
        marks["exit"] - launch,
    )
    return {**phases, **dict(zip(SPLIT, split, strict=True))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--plain", action="store_true", help="be the plain script (one run)")
    parser.add_argument("--launch", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain:
        print(json.dumps(plain_run(args.epochs, cache_file(), args.launch or time.time())))
        return
    epochs = f"trainer.epochs={args.epochs}"
    plain_cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--plain",
        f"--epochs={args.epochs}",
    ]
    records: dict[str, list[dict[str, float]]] = {"plain script": [], "dlexp": []}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DLEXP_OUTPUT_ROOT": str(Path(tmp) / "out")}
        phased([epochs], env, Path(tmp))  # writes the digits' cache if missing; warms up
        plain_phases(plain_cmd, env)

        def run(name: str, measure: Callable[[], dict[str, float]]) -> Callable[[], float]:
            def once() -> float:
                records[name].append(measure())
                return records[name][-1]["whole"]

            return once

        times = interleaved(
            {
                "plain script": run("plain script", lambda: plain_phases(plain_cmd, env)),
                "dlexp": run("dlexp", lambda: phased([epochs], env, Path(tmp))),
            },
            args.repeats,
        )
    plain_s, dlexp_s = median(times["plain script"]), median(times["dlexp"])
    rows = [
        {"run": name, "seconds (median)": median(t), "min": min(t), "max": max(t)}
        for name, t in times.items()
    ]
    rows.append({"run": "ratio plain/dlexp", "seconds (median)": plain_s / dlexp_s})
    for r in records.values():
        for one in r:
            one["beyond the epochs"] = one["whole"] - one[SPLIT[1]]
    split = [
        {"part": part, **{name: median([one[part] for one in r]) for name, r in records.items()}}
        for part in (*SPLIT, "beyond the epochs")
    ]
    breakdown = [
        {"phase": name, "seconds": median([one[name] for one in records["dlexp"]])}
        for name, _, _ in PHASES
    ]
    extra = {"epochs": args.epochs, "runs": records, "split": split, "phases": breakdown}
    report("short_run", ["run", "seconds (median)", "min", "max"], rows, extra)
    for columns, table in (
        (["part", "plain script", "dlexp"], split),
        (["phase", "seconds"], breakdown),
    ):
        print()
        widths = [max(len(c), *(len(_cell(r[c])) for r in table)) for c in columns]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        for r in table:
            print("  ".join(_cell(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
