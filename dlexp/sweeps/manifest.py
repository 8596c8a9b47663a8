"""Sweeps: a manifest of every job, a summary table at the end, resumable and parallel sweeps.

`dlexp -m ...` runs each job in `<sweep>/<num>_<overrides>/`. After every job the sweep's
`manifest.json` gets the job's overrides, status, objective, folder and error; when the sweep
ends a table lists the jobs best first, failed ones with the path to their log. Running the
same sweep again with `hydra.sweep.dir=<that folder> resume=auto` skips finished jobs, resumes
interrupted ones from their last checkpoint and reruns failed ones, with the same job numbers.
Nothing here imports torch.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dlexp.config.derived import monitor_mode
from dlexp.config.files import read_json
from dlexp.tracking.runfolder import RunFolder

MANIFEST = "manifest.json"
MANIFEST_HINT = (
    "delete it: the sweep run again with resume=auto writes a new one from its jobs' own "
    "summary.json files"
)
FAILED = ("failed", "incomplete", "refused")  # a sweep with any of these exits with status 1


class Refused(float):
    """A job's result when its folder already held a run and nothing said to resume it: NaN to
    a sweeper, "refused" in the manifest, and the job's own summary.json is left as it was."""

    def __new__(cls, reason: str) -> Refused:
        value = super().__new__(cls, "nan")
        value.reason = reason
        return value

    reason: str


@contextmanager
def _locked(sweep_dir: Path):
    """Jobs of a parallel sweep finish at the same time: one writer of the manifest at once."""
    with open(sweep_dir / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_manifest(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / MANIFEST
    if path.is_file():
        return read_json(path, MANIFEST_HINT)
    return {"sweep_dir": str(sweep_dir), "jobs": {}}


def job_entry(job_dir: Path, num: int, overrides: list[str], crashed: str | None = None) -> dict:
    """One manifest row, from the job's own summary.json (the source of truth)."""
    folder = RunFolder(job_dir)
    summary = folder.read_summary()
    status = summary.get("status") or ("failed" if crashed else "incomplete")
    objective = (summary.get("best") or {}).get("value")
    return {
        "num": num,
        # the sweeper's link to its study (+optuna.*) says nothing about the job itself
        "overrides": [o for o in overrides if not o.startswith("+optuna.")],
        "status": status,
        "objective": objective,
        "monitor": (summary.get("monitor") or {}).get("metric"),
        "run_dir": str(job_dir),
        "error": summary.get("error") or crashed,
        "log": str(folder.log_path),
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def record_job(sweep_dir: Path, entry: Mapping[str, Any]) -> None:
    with _locked(sweep_dir):
        manifest = read_manifest(sweep_dir)
        manifest["jobs"][str(entry["num"])] = dict(entry)
        tmp = sweep_dir / f".{MANIFEST}.{os.getpid()}"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        tmp.replace(sweep_dir / MANIFEST)


class SweepCallback(Callback):
    """Hydra callback (configs/config.yaml: hydra.callbacks) that keeps the manifest."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        hc = config.hydra
        if str(hc.mode) != "RunMode.MULTIRUN":
            return
        crashed = None
        if job_return is not None and str(getattr(job_return, "status", "")) == "JobStatus.FAILED":
            crashed = f"{type(job_return._return_value).__name__}: {job_return._return_value}"
        entry = job_entry(
            Path(hc.runtime.output_dir), int(hc.job.num), list(hc.overrides.task), crashed
        )
        refused = getattr(job_return, "_return_value", None)
        if isinstance(refused, Refused):  # this sweep did not touch the job's folder
            entry.update(status="refused", error=refused.reason)
        record_job(Path(hc.sweep.dir), entry)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not (sweep_dir / MANIFEST).is_file():
            return
        manifest = read_manifest(sweep_dir)
        print_summary(manifest, monitor_mode(config.trainer))
        if any(j["status"] in FAILED for j in manifest["jobs"].values()):
            raise SystemExit(1)  # the table above says which jobs failed and where their logs are


def ranked(jobs: list[dict], mode: str) -> list[dict]:
    """Finished jobs best first, then the rest (failed, interrupted, ...) by job number."""

    def key(job: dict) -> tuple:
        value = job.get("objective")
        usable = (
            job["status"] == "done" and isinstance(value, (int, float)) and math.isfinite(value)
        )
        score = (-value if mode == "max" else value) if usable else 0.0
        return (not usable, score, job["num"])

    return sorted(jobs, key=key)


def print_summary(manifest: Mapping[str, Any], mode: str) -> None:
    """The sweep at a glance: overrides shared by every job once, then a row per job."""
    from rich.markup import escape
    from rich.table import Table

    from dlexp.tracking.console import plain_console  # rich: only to print the table

    jobs = ranked(list(manifest["jobs"].values()), mode)
    sweep_dir = Path(manifest["sweep_dir"])
    shared = set.intersection(*(set(j["overrides"]) for j in jobs)) if jobs else set()
    metric = next((j["monitor"] for j in jobs if j.get("monitor")), "objective")
    table = Table(title=f"sweep {sweep_dir}", title_justify="left", caption_justify="left")
    table.caption = "every job: " + escape(" ".join(sorted(shared))) if shared else None
    for column in ("#", "overrides", "status", metric, "folder (log for failures)"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        value = job.get("objective")
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else "-"
        folder = Path(job["run_dir"])
        where = folder.name if job["status"] == "done" else f"{folder.name}/train.log"
        if folder.parent != sweep_dir:
            where = str(folder if job["status"] == "done" else job["log"])
        style = {"done": "", "pruned": "dim", "interrupted": "yellow"}.get(job["status"], "red")
        own = " ".join(o for o in job["overrides"] if o not in shared)
        table.add_row(str(job["num"]), own, job["status"], shown, where, style=style)
        if job["status"] in ("failed", "refused") and job.get("error"):
            error = escape(" ".join(job["error"].split()))  # whole: it says what to type
            table.add_row("", f"[red]{error}[/]", "", "", "")
    counts = {s: sum(j["status"] == s for j in jobs) for s in {j["status"] for j in jobs}}
    console = plain_console()
    console.print(table)
    console.print(
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" · {sweep_dir / MANIFEST}"
    )


def finished_objective(run_dir: Path, epochs: int | None = None) -> float | None:
    """A folder that already holds a finished run: its objective (for resumed sweeps).

    A run asked for more epochs than it trained (and not stopped early) is not finished.
    """
    summary = RunFolder(run_dir).read_summary()
    status = summary.get("status")
    if status not in ("done", "pruned"):  # a pruned trial was stopped on purpose: leave it
        return None
    trained = summary.get("epochs_completed", 0)
    more = epochs is not None and trained < epochs and not summary.get("stopped_early")
    if status == "done" and more:
        return None
    value = (summary.get("best") or {}).get("value")
    return float(value) if value is not None else float("nan")


def pin_job(trainer: dict[str, Any], job_num: int, parallel_jobs: int) -> dict[str, Any]:
    """Parallel jobs on one machine: each its own GPU (round-robin) and its share of the cores."""
    trainer = dict(trainer)
    if parallel_jobs > 1 and trainer.get("threads") is None:
        trainer["threads"] = max(1, (os.cpu_count() or 1) // parallel_jobs)
    if trainer.get("device") in ("auto", "cuda"):
        gpus = _gpu_count()
        if gpus > 1:
            trainer["device"] = f"cuda:{job_num % gpus}"
    return trainer


def _gpu_count() -> int:
    """CUDA devices without importing torch: CUDA_VISIBLE_DEVICES, else nvidia-smi."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    if shutil.which("nvidia-smi") is None:
        return 0
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def parallel_jobs(hydra_cfg: Any) -> int:
    """How many jobs the launcher runs at once (joblib's n_jobs; 1 for the basic launcher)."""
    launcher = hydra_cfg.get("launcher") or {}
    n = launcher.get("n_jobs") if hasattr(launcher, "get") else None
    if isinstance(n, int) and n < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n)  # joblib: -1 means all cores
    return int(n) if isinstance(n, int) and n > 0 else 1
