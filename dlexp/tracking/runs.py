"""Reading run folders without torch: their summary, config, choices and epoch records.

Used by `dlexp compare`; a run folder is one with `config.yaml` and `summary.json` or
`metrics.jsonl`, at any depth under the paths given.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from dlexp.config.derived import monitor_mode
from dlexp.errors import DlexpError
from dlexp.tracking.hparams import hparams_of
from dlexp.tracking.runfolder import find_run

Row = dict[str, Any]
Ignored = Callable[[Mapping[str, Any]], Sequence[str]]
DIGITS = re.compile(r"(\d+)")


def find_runs(paths: Sequence[str]) -> list[Path]:
    """Run folders at or under each PATH, deduplicated. config.yaml alone does not make a run
    (a --config-dir may hold one): it takes a summary.json or, while running, metrics.jsonl."""
    found: dict[Path, None] = {}
    for arg in paths:
        path = Path(arg)
        if arg == "latest" or (path.name == "latest" and path.is_file()):  # the newest run
            path = find_run(arg)
        if not path.exists():
            raise DlexpError(f"{arg} does not exist. Give run folders, sweep folders or outputs/")
        hits = 0  # runs under this PATH, also those another PATH named already
        for root, dirs, files in os.walk(path):
            if "config.yaml" in files and {"summary.json", "metrics.jsonl"} & set(files):
                found[Path(root).resolve()] = None
                hits += 1
                dirs.clear()  # checkpoints/, figures/: nothing more to find in a run
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # not .hydra/
        if not hits:
            raise DlexpError(
                f"no dlexp runs in {arg}: a run folder holds config.yaml and summary.json "
                "(outputs/runs/<name>/ or outputs/sweeps/<sweep>/<job>/)"
            )
    return list(found)


def number(value: Any) -> float | int | None:
    """Metrics as numbers; metrics.jsonl writes NaN and inf as strings (JSON has neither)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value  # epochs stay whole numbers
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def epoch_records(folder: Path) -> list[dict[str, Any]]:
    path, records = folder / "metrics.jsonl", []
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a run killed mid-write
        records += [record] if record.get("kind") == "epoch" else []
    return records


def _read_yaml(path: Path) -> dict[str, Any]:
    """Plain YAML, as dlexp wrote it (OmegaConf.to_yaml): 10x faster than OmegaConf.load,
    which a folder of a few hundred sweep jobs notices."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a mapping")
    return data


def resumed_since(folder: Path, ended_at: str | None) -> bool:
    """`dlexp resume` appends `# <time> resumed with:` to command.txt. Times written by the run
    itself, unlike file times, survive copying the folder (`cp -r` resets those)."""
    path = folder / "command.txt"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    stamps = re.findall(r"^# (\S+) resumed with:", text, flags=re.MULTILINE)
    try:
        resumed, ended = (
            datetime.strptime(t, "%Y-%m-%dT%H:%M:%S%z") for t in (stamps[-1], ended_at)
        )
    except (IndexError, TypeError, ValueError):  # never resumed, or no readable end time
        return False
    return resumed > ended


def load_run(folder: Path, ignored: Ignored = lambda cfg: ()) -> Row:
    """One row: status, hyperparameters, best/final/test metrics, epochs and wall time.

    A run without summary.json is running (or was killed before writing it), and so is one
    resumed after its summary was written. Both read their metrics from metrics.jsonl, since
    the summary is missing or stale.
    """
    cfg, summary_path = _read_yaml(folder / "config.yaml"), folder / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    trainer = cfg.get("trainer") or {}
    monitor = (summary.get("monitor") or {}).get("metric") or trainer.get("monitor", "val/acc")
    choices = summary.get("choices")
    if choices is None and (folder / ".hydra" / "hydra.yaml").is_file():  # no summary yet
        hydra = _read_yaml(folder / ".hydra" / "hydra.yaml").get("hydra") or {}
        picked = (hydra.get("runtime") or {}).get("choices") or {}
        choices = {k: str(v) for k, v in picked.items() if not k.startswith("hydra")}
    if not summary or resumed_since(folder, summary.get("ended_at")):
        records = epoch_records(folder)
        final = {k: v for k, v in (records[-1] if records else {}).items() if "/" in k}
        values = [v for v in (number(r.get(monitor)) for r in records) if v is not None]
        pick = min if monitor_mode(trainer) == "min" else max
        best, test, wall = (pick(values) if values else None), {}, None
        status, epochs = "running", len(records)
    else:
        final, test = summary.get("final") or {}, summary.get("test") or {}
        best, wall = (summary.get("best") or {}).get("value"), summary.get("wall_time_s")
        status, epochs = summary.get("status", "unknown"), summary.get("epochs_completed")
    metrics = {f"best/{monitor}": best, **final, **test, "epochs": epochs, "wall_time_s": wall}
    hparams = hparams_of(cfg, choices or {}, ignored(cfg), summary.get("effective"))
    row: Row = {"folder": folder, "status": status, **hparams}
    return row | {k: number(v) for k, v in metrics.items()}


def load_runs(
    paths: Sequence[str], ignored: Ignored = lambda cfg: ()
) -> tuple[list[Row], list[str]]:
    """Rows named by their path below the runs' common folder; unreadable runs are skipped.
    `ignored(cfg)`: the config groups a run's family does not use (not hyperparameters)."""
    rows, skipped = [], []
    for folder in find_runs(paths):
        try:
            rows.append(load_run(folder, ignored))
        except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
            skipped.append(f"skipped {folder}: {type(exc).__name__}: {exc}")
    if not rows:
        raise DlexpError(f"no readable runs in {', '.join(paths)}:\n" + "\n".join(skipped))
    folders = [row["folder"] for row in rows]
    base = os.path.commonpath(folders) if len(folders) > 1 else folders[0].parent
    for row in rows:
        row["run"] = os.path.relpath(row["folder"], base)
    # natural order, job 10_... after 9_...: split() leaves the numbers at the odd places
    rows.sort(key=lambda r: [int(t) if i % 2 else t for i, t in enumerate(DIGITS.split(r["run"]))])
    return rows, skipped


# -- choosing columns and rows --------------------------------------------------------------
