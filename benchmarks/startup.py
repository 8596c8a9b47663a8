"""Start-up: time to `--help`, to a config error and to the first training step, against
`python -c "import torch"` as the floor. Each is a fresh process; medians of several runs.

    python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import median, report


def timed(cmd: list[str], cwd: str, env: dict[str, str], first_step: bool = False) -> float:
    """Seconds until the process exits, or until its run logs its first training step."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if not first_step:
        proc.wait()
        return time.perf_counter() - start
    latest = Path(env["DLEXP_OUTPUT_ROOT"]) / "latest"
    while proc.poll() is None:
        if latest.is_file():
            metrics = Path(latest.read_text().strip()) / "metrics.jsonl"
            if metrics.is_file() and metrics.stat().st_size:
                elapsed = time.perf_counter() - start
                proc.kill()
                proc.wait()
                latest.unlink()
                return elapsed
        time.sleep(0.005)
    raise RuntimeError(f"{cmd} ended before logging a step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DLEXP_OUTPUT_ROOT": str(Path(tmp) / "out"), "PYTHONUNBUFFERED": "1"}
        cases = {
            "python -c 'import torch' (floor)": ([py, "-c", "import torch"], False),
            "dlexp --help": ([py, "-m", "dlexp", "--help"], False),
            "dlexp optim.lr=-1 (config error)": ([py, "-m", "dlexp", "optim.lr=-1"], False),
            "dlexp --cfg job": ([py, "-m", "dlexp", "--cfg", "job"], False),
            # metrics.jsonl gets its first record right after the first optimizer step
            "dlexp: first training step": (
                [py, "-m", "dlexp", "trainer.log_every_n_steps=1", "trainer.progress=plain"],
                True,
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (cmd, first_step) in cases.items():
                times[name].append(timed(cmd, tmp, env, first_step))
    floor = median(times["python -c 'import torch' (floor)"])
    rows = [
        {"command": name, "seconds": median(t), "vs import torch": median(t) / floor}
        for name, t in times.items()
    ]
    report("startup", ["command", "seconds", "vs import torch"], rows, {"repeats": args.repeats})


if __name__ == "__main__":
    main()
