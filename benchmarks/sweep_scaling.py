"""Sweep wall time against the number of parallel jobs (Hydra's joblib launcher).

The same sweep of small jobs, run one after another and then n at a time; each parallel job
gets floor(cores / n) threads. Reported as wall time and speed-up over the sequential sweep.

    python benchmarks/sweep_scaling.py [--jobs 6] [--parallel 1 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from common import report

JOB = (
    "trainer.epochs=1",
    "trainer.limit_train_batches=20",
    "trainer.test_after_fit=false",
    "trainer.figures_every_n_epochs=null",
    "trainer.progress=none",
)


def sweep_seconds(jobs: int, parallel: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "dlexp", "-m", *JOB, f"trainer.seed=range(0,{jobs})"]
        if parallel > 1:
            cmd += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={parallel}"]
        env = {**os.environ, "DLEXP_OUTPUT_ROOT": tmp}
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=tmp)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    times = {n: sweep_seconds(args.jobs, n) for n in args.parallel}
    base = times[args.parallel[0]]
    rows = [
        {"parallel jobs": n, "sweep wall s": t, "speed-up": base / t, "cores": os.cpu_count()}
        for n, t in times.items()
    ]
    report("sweep_scaling", ["parallel jobs", "sweep wall s", "speed-up", "cores"], rows)


if __name__ == "__main__":
    main()
