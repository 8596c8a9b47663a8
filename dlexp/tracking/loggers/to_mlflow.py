"""MLflow: one MLflow run per dlexp run, through `MlflowClient` (no global active run, so the
jobs of a sweep in one process never mix).

Where: `logger.mlflow.tracking_uri`, else $MLFLOW_TRACKING_URI, else a local store in the output
root (`sqlite:///<root>/mlflow.db`, artifacts in `<root>/mlartifacts`), which
`mlflow ui --backend-store-uri sqlite:///<root>/mlflow.db` and `MlflowClient.search_runs` read.
A sweep is one experiment (named after its folder) with a parent run, and each job a child run.
A resumed run continues its MLflow run (its id is in the run folder's loggers.json).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from dlexp.tracking.loggers import Record, RunStart
from dlexp.tracking.loggers.reach import check_mlflow, mlflow_uri
from dlexp.tracking.runfolder import CHECKPOINTS, SUMMARY, read_json
from dlexp.tracking.writes import write_text

PARENT_FILE = "mlflow.json"  # in a sweep folder: the sweep's experiment and parent run
ENDED = {"done": "FINISHED", "failed": "FAILED"}  # interrupted, pruned: KILLED
_UNSAFE = re.compile(r"[^\w.\-/ :]")  # MLflow's names take letters, digits and _ - . / : space


def safe(name: str) -> str:
    return _UNSAFE.sub("_", name)


def local_store(output_root: Path) -> str:
    return f"sqlite:///{(output_root / 'mlflow.db').absolute()}"


class MlflowLogger:
    batched = True

    def __init__(self, settings: Mapping[str, Any], run_dir: Path, resume: int | None) -> None:
        self.settings, self.run_dir = dict(settings), run_dir
        self.client: Any = None
        self.run_id = ""
        self.parent: str | None = None
        self.note = ""

    def start(self, run: RunStart, saved: Mapping[str, Any]) -> dict[str, Any]:
        uri, source = mlflow_uri(self.settings)
        check_mlflow(uri, source, run.output_root)  # seconds, not minutes of retries
        from mlflow import MlflowClient  # heavy (seconds): only when chosen

        uri = uri or local_store(run.output_root)
        self.client = MlflowClient(tracking_uri=uri)
        state: dict[str, Any] = {"tracking_uri": uri}
        if saved.get("run_id") and saved.get("tracking_uri") == uri:  # resumed: the same run
            self.run_id, self.parent = saved["run_id"], saved.get("parent_run_id")
            self.client.update_run(self.run_id, status="RUNNING")
            self.note = f"MLflow: continuing run {self.run_id} at {uri}"
            return {**state, "run_id": self.run_id, "parent_run_id": self.parent}
        default = run.sweep.name if run.sweep is not None else "dlexp"
        name = self.settings.get("experiment") or default
        experiment = self._experiment(safe(name), run.output_root)
        tags = {
            "dlexp.run_dir": str(run.run_dir),
            "dlexp.task": run.family,
            "dlexp.command": run.command.strip()[:5000],
        }
        if run.git.get("commit"):
            tags["mlflow.source.git.commit"] = run.git["commit"]
        if run.sweep is not None:
            self.parent = self._parent(run.sweep, experiment, uri)
            tags["mlflow.parentRunId"] = self.parent
        created = self.client.create_run(
            experiment, start_time=int(run.started * 1000), tags=tags, run_name=run.name
        )
        self.run_id = created.info.run_id
        self._params(run.hparams)
        self.client.log_text(self.run_id, run.config_text, "config.yaml")
        self.note = f"MLflow: run {self.run_id} in experiment {name!r} at {uri}"
        return {
            **state,
            "run_id": self.run_id,
            "experiment_id": experiment,
            "parent_run_id": self.parent,
        }

    def _experiment(self, name: str, output_root: Path) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        where = None
        if self.client.tracking_uri.startswith("sqlite:") and not os.environ.get(
            "MLFLOW_TRACKING_URI"
        ):  # a local store keeps its artifacts beside it, not in the working directory
            where = (output_root / "mlartifacts" / safe(name)).absolute().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=where)
        except MlflowException:  # another job of the sweep created it meanwhile
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _parent(self, sweep: Path, experiment: str, uri: str) -> str:
        """The sweep's parent run: made by its first job, found by the others."""
        path = sweep / PARENT_FILE
        with _locked(sweep / f".{PARENT_FILE}.lock"):
            known = read_json(path)
            if known.get("tracking_uri") == uri and known.get("parent_run_id"):
                self.client.update_run(known["parent_run_id"], status="RUNNING")
                return str(known["parent_run_id"])
            parent = self.client.create_run(
                experiment, tags={"dlexp.sweep_dir": str(sweep)}, run_name=sweep.name
            ).info.run_id
            state = {"tracking_uri": uri, "experiment_id": experiment, "parent_run_id": parent}
            write_text(path, json.dumps(state, indent=2) + "\n")
            return parent

    def _params(self, hparams: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(safe(k), str(v)[:6000]) for k, v in hparams.items()]
        for i in range(0, len(params), 100):  # MLflow takes 100 params per call
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log_metrics(self, records: Sequence[Record]) -> None:
        from mlflow.entities import Metric

        metrics = [
            Metric(safe(k), v, int(r.time * 1000), r.step)
            for r in records
            for k, v in r.metrics.items()
        ]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def log_image(self, tag: str, image: Any, step: int) -> None:
        self.client.log_image(self.run_id, image, key=safe(tag).replace("/", "."), step=step)

    def finish(self, status: str, summary: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        best = summary.get("best") or {}
        tags = {"dlexp.status": status, "dlexp.epochs": summary.get("epochs_completed")}
        if best.get("value") is not None:
            tags["dlexp.best_epoch"] = best.get("epoch")
        if summary.get("error"):
            tags["dlexp.error"] = str(summary["error"])[:5000]
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        self.client.log_dict(self.run_id, dict(summary), SUMMARY)
        if self.settings.get("log_checkpoints") and status == "done":
            for name in ("best.pt", "last.pt"):
                path = self.run_dir / CHECKPOINTS / name
                if path.is_file():
                    self.client.log_artifact(self.run_id, str(path), CHECKPOINTS)
        self.client.set_terminated(self.run_id, ENDED.get(status, "KILLED"))
        if self.parent:  # the sweep's run ends with its last job (each job ends it again)
            self.client.set_terminated(self.parent, "FINISHED")

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
