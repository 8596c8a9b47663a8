"""Time until LeNet reaches a validation accuracy (default 97 %) on the bundled sample.

Wall time from the command's start (imports, data, everything) to the end of the first epoch
whose val/acc reaches the target, read from the run's own metrics.jsonl. Where a user has the
MNIST files, `--data mnist` runs the same measurement on the full data set.

    python benchmarks/time_to_accuracy.py [--device cuda] [--target 0.97] [--data mnist_sample]
        [--overrides data.val_fraction=0.9 ...]   (passed on to each run)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--data", default="mnist_sample")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--overrides", nargs="*", default=[], help="more dlexp overrides")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DLEXP_OUTPUT_ROOT": tmp}
        for precision in ("32", "bf16"):
            start = time.time()
            cmd = [
                sys.executable, "-m", "dlexp", f"data={args.data}", f"trainer.device={args.device}",
                f"trainer.epochs={args.epochs}", f"trainer.precision={precision}",
                "trainer.progress=plain", "trainer.test_after_fit=false", *args.overrides,
            ]  # fmt: skip
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            run = Path((Path(tmp) / "latest").read_text().strip())
            records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
            hit = next(
                (r for r in records if r["kind"] == "epoch" and r["val/acc"] >= args.target), None
            )
            rows.append(
                {
                    "data": args.data,
                    "precision": precision,
                    "target": args.target,
                    "epoch reached": int(hit["epoch"]) if hit else None,
                    "seconds": round(hit["time"] - start, 2) if hit else None,
                    "best val/acc": max(r["val/acc"] for r in records if r["kind"] == "epoch"),
                }
            )
    columns = ["data", "precision", "target", "epoch reached", "seconds", "best val/acc"]
    report("time_to_accuracy", columns, rows, {"device": args.device, "overrides": args.overrides})


if __name__ == "__main__":
    main()
