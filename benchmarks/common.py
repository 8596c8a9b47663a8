"""Shared by the benchmark scripts: a small results table on stdout and a JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# DLEXP_BENCH_RESULTS: another folder for the JSON files (gpu.sh keeps each run's apart)
RESULTS = Path(os.environ.get("DLEXP_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def compose_config(overrides: Sequence[str]) -> dict[str, Any]:
    """The shipped configs composed with `overrides`, as plain data (what `dlexp` trains)."""
    from hydra import compose, initialize_config_dir

    from dlexp.config.paths import CONFIG_DIR
    from dlexp.config.resolvers import register_resolvers, to_plain

    register_resolvers()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return to_plain(compose("config", overrides=list(overrides)))


def make_runner(overrides: Sequence[str], run_dir: Path) -> Any:
    """A dlexp Runner with its task built and a logger open, ready for `task.train_epoch`
    (the benchmarks time single epochs, not whole runs); its progress bar draws into memory."""
    import io

    from rich.console import Console

    from dlexp.engine.runner import Runner
    from dlexp.engine.setup import setup_torch
    from dlexp.tasks import registry
    from dlexp.tracking.runfolder import RunFolder
    from dlexp.tracking.runlog import RunLogger

    cfg = compose_config(overrides)
    run_dir.mkdir(parents=True)
    task = registry.make_task(cfg)
    runner = Runner(task, cfg, RunFolder(run_dir), {})
    runner.device = setup_torch(cfg["trainer"])
    task.build(cfg, runner.device, runner)
    runner.state = task.new_state()
    runner.reporter.console = Console(file=io.StringIO(), force_terminal=True, width=120)
    runner.logger = RunLogger(run_dir)
    return runner


def machine() -> dict[str, Any]:
    import torch

    info = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each candidate `repeats` times, interleaved, so drift hits all alike; the order
    is reversed every other round (ABC CBA ...) so no candidate always runs first."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for round_ in range(repeats):
        for name in order if round_ % 2 == 0 else reversed(order):
            times[name].append(fns[name]())
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(
    name: str, columns: Sequence[str], rows: list[dict[str, Any]], extra: dict | None = None
):
    """Print `rows` as a table and write <name>.json into RESULTS."""
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), "rows": rows, **(extra or {})}
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwritten to {out}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)
