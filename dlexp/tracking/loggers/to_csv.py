"""CSV files in the run folder, for a spreadsheet or pandas: `metrics.csv`, one row per record
and one column per metric, and `run.csv`, the run as one row (hyperparameters, status,
results), so that the run.csv files of a sweep concatenate into one table."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlexp.tracking.loggers import Record, RunStart
from dlexp.tracking.runfolder import METRICS_CSV, RUN_CSV
from dlexp.tracking.writes import write_text

FIXED = ["kind", "step", "epoch", "time"]
END_KINDS = ("test", "best")  # written again by a resumed run


class CsvLogger:
    batched = False
    note = ""

    def __init__(self, settings: Mapping[str, Any], run_dir: Path, resume: int | None) -> None:
        self.path, self.run_path = run_dir / METRICS_CSV, run_dir / RUN_CSV
        self.rows = _read(self.path)
        if resume is not None:  # steps after the checkpoint are trained again
            self.rows = [r for r in self.rows if _kept(r, resume)]
        self.columns = list(dict.fromkeys([*FIXED, *(k for r in self.rows for k in r)]))
        self._write_all()
        self.run: dict[str, Any] = {}

    def start(self, run: RunStart, saved: Mapping[str, Any]) -> dict[str, Any]:
        self.run = {"run": run.name, "status": "running", **run.hparams}
        _write_table(self.run_path, [self.run])
        return {}

    def log_metrics(self, records: Sequence[Record]) -> None:
        new = []
        for record in records:
            row = {"kind": record.kind, "step": record.step, "time": round(record.time, 3)}
            row["epoch"] = record.epoch if record.epoch is not None else record.metrics.get("epoch")
            row.update({k: v for k, v in record.metrics.items() if k != "epoch"})
            new.append(row)
            self.columns += [k for k in row if k not in self.columns]
        self.rows += new
        if any(k not in self._header for r in new for k in r):
            self._write_all()  # a column appeared: the header changes
        else:
            with open(self.path, "a", encoding="utf-8", newline="") as f:
                csv.DictWriter(f, self.columns, restval="", lineterminator="\n").writerows(new)

    def log_image(self, tag: str, image: Any, step: int) -> None:
        pass  # the pictures are PNG files in figures/ already

    def finish(self, status: str, summary: Mapping[str, Any]) -> None:
        best = summary.get("best") or {}
        monitor = (summary.get("monitor") or {}).get("metric")
        results = {"status": status}
        if monitor and best.get("value") is not None:
            results |= {f"best/{monitor}": best["value"], "best_epoch": best.get("epoch")}
        results |= dict(summary.get("final") or {}) | dict(summary.get("test") or {})
        results |= {
            "epochs": summary.get("epochs_completed"),
            "wall_time_s": summary.get("wall_time_s"),
        }
        _write_table(self.run_path, [self.run | results])

    def close(self) -> None:
        pass

    def _write_all(self) -> None:
        self._header = list(self.columns)
        _write_table(self.path, self.rows, self.columns)


def _kept(row: Mapping[str, str], resume: int) -> bool:
    try:
        return int(row.get("step") or 0) <= resume and row.get("kind") not in END_KINDS
    except ValueError:
        return False  # a line cut off by a crash


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _write_table(
    path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = ()
) -> None:
    columns = list(dict.fromkeys([*columns, *(k for r in rows for k in r)]))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, out.getvalue())
