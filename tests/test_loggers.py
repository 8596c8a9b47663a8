"""The logger group: CSV files, a real MLflow server on a loopback port, W&B's offline files.
The same things everywhere: hyperparameters, every scalar at its step, pictures, the summary
and the status; a resumed run continues the same MLflow / W&B run without doubled steps."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dlexp.errors import DlexpError
from dlexp.tasks.registry import validate
from tests import wbread
from tests.conftest import read_jsonl, run_cli, stop_then_resume

pytestmark = pytest.mark.slow

TINY = (
    "trainer=debug",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.progress=none",
)
# two epochs of 6 steps, stopped after step 8: mid-epoch 2, between two checkpoints
RESUMABLE = (*TINY, "trainer.epochs=2", "trainer.limit_train_batches=6")


def plain(make_cfg, *overrides: str) -> dict:
    return OmegaConf.to_container(make_cfg(*overrides), resolve=True)


def interrupted_then_resumed(cfg: dict, run_dir: Path, monkeypatch) -> None:
    """Train `cfg` in `run_dir`, stopped at step 8 as Ctrl-C would, then resume to the end."""
    stop_then_resume(cfg, run_dir, monkeypatch, at_step=8, choices={"model": "lenet"})


def step_records(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "step"]


# -- no package, no import -----------------------------------------------------------------------
def test_a_logger_whose_package_is_missing_is_named_with_its_extra(make_cfg, monkeypatch):
    import importlib.util

    from dlexp.cli.train import train

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    cfg = make_cfg(*TINY, "logger=[tensorboard,wandb]")
    problems = validate(OmegaConf.to_container(cfg, resolve=True))
    assert problems == [
        "logger=wandb: the wandb package is not installed; pip install 'dlexp[wandb]' "
        "(or pip install wandb)"
    ]
    run_dir = Path(cfg.paths.output_root) / "refused"
    run_dir.mkdir(parents=True)
    with pytest.raises(DlexpError, match=r"dlexp\[wandb\]"):
        train(cfg, run_dir=run_dir)
    assert list(run_dir.iterdir()) == [], "a refused run writes nothing"
    assert "logger.nope: unknown key" in validate(plain(make_cfg, "+logger.nope={}"))[0]


# -- CSV -------------------------------------------------------------------------------------------
def test_csv_files_and_a_local_mlflow_store_hold_every_step_once(make_cfg, tmp_path, monkeypatch):
    """logger=[csv,mlflow] without a tracking URI: CSV files in the run folder and an MLflow
    store in the output root, both continued by a resumed run."""
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = plain(make_cfg, *RESUMABLE, "logger=[csv,mlflow]")
    run_dir = tmp_path / "run"
    interrupted_then_resumed(cfg, run_dir, monkeypatch)
    store = Path(cfg["paths"]["output_root"]) / "mlflow.db"
    client = MlflowClient(f"sqlite:///{store}")  # what `mlflow ui --backend-store-uri` reads
    (run,) = client.search_runs([client.get_experiment_by_name("dlexp").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps == list(range(1, 13))
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows if r["kind"] == "step"]
    assert steps == step_records(run_dir) == list(range(1, 13)), "no step twice after resuming"
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == ["1", "2"] and float(epochs[-1]["val/acc"]) > 0
    assert [r["kind"] for r in rows][-2:] == ["test", "best"]
    with open(run_dir / "run.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "done" and row["optim.lr"] == "0.001" and row["best/val/acc"]
    assert not list(run_dir.glob("events.out.tfevents.*")), "no TensorBoard when not chosen"


# -- MLflow ----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """`mlflow server` on a free loopback port, SQLite behind it; stopped when the tests end."""
    pytest.importorskip("mlflow")
    tmp = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
        "--artifacts-destination", str(tmp / "artifacts"),
    ]  # fmt: skip
    log = open(tmp / "server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(command, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(tmp / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_a_sweep_logs_to_mlflow_as_one_experiment_with_a_parent_and_children(
    tmp_path, mlflow_server
):
    from mlflow import MlflowClient

    proc = run_cli(
        tmp_path, "-m", *TINY, "optim.lr=0.001,0.01", "logger=[tensorboard,mlflow]",
        "logger.mlflow.log_checkpoints=true", MLFLOW_TRACKING_URI=mlflow_server,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(sweep.name)
    assert experiment is not None, "one experiment per sweep, named after its folder"
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
        key=lambda r: r.info.run_name,
    )
    assert [c.info.run_name for c in children] == ["0_optim.lr=0.001", "1_optim.lr=0.01"]
    assert parent.info.run_name == sweep.name and parent.info.status == "FINISHED"
    for child, lr in zip(children, ("0.001", "0.01"), strict=True):
        job = sweep / child.info.run_name
        assert child.info.status == "FINISHED" and child.data.tags["dlexp.status"] == "done"
        assert child.data.params["optim.lr"] == lr and child.data.params["optim"] == "adam"
        assert "optim._target_" not in child.data.params, "the HParams set"
        history = client.get_metric_history(child.info.run_id, "train/loss")
        assert [m.step for m in history] == step_records(job), "every scalar at its step"
        summary = json.loads((job / "summary.json").read_text())
        assert child.data.metrics["best/val/acc"] == pytest.approx(summary["best"]["value"])
        assert child.data.metrics["test/acc"] == pytest.approx(summary["test"]["test/acc"])
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "summary.json", "checkpoints", "images"} <= artifacts
        saved = {a.path for a in client.list_artifacts(child.info.run_id, "checkpoints")}
        assert saved == {"checkpoints/best.pt", "checkpoints/last.pt"}
        assert list(job.glob("events.out.tfevents.*")), "and TensorBoard beside it"


def test_a_resumed_run_continues_its_mlflow_run(make_cfg, tmp_path, monkeypatch, mlflow_server):
    from mlflow import MlflowClient

    cfg = plain(
        make_cfg, *RESUMABLE, "logger=[mlflow]", f"logger.mlflow.tracking_uri={mlflow_server}",
        "logger.mlflow.experiment=resumed",
    )  # fmt: skip
    run_dir = tmp_path / "run"
    interrupted_then_resumed(cfg, run_dir, monkeypatch)
    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    assert json.loads((run_dir / "loggers.json").read_text())["mlflow"]["run_id"] == run.info.run_id
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps == list(range(1, 13)), "one value per step: none twice, none missing"


# -- Weights & Biases ------------------------------------------------------------------------------
def test_a_sweep_writes_wandb_offline_runs_grouped_by_sweep(tmp_path):
    pytest.importorskip("wandb")
    where = tmp_path / "wandb_files"
    proc = run_cli(
        tmp_path, "-m", *TINY, "optim.lr=0.001,0.01", "logger=wandb",
        WANDB_MODE="offline", WANDB_DIR=str(where),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    runs = [wbread.read_run(d) for d in wbread.offline_runs(where)]
    assert sorted(r["run"].display_name for r in runs) == ["0_optim.lr=0.001", "1_optim.lr=0.01"]
    for run in runs:
        job = sweep / run["run"].display_name
        assert run["run"].run_group == sweep.name and run["run"].job_type == "classify"
        log = (job / "train.log").read_text()
        offline = re.search(r"W&B \(offline\): (\S+); upload it with `wandb sync (\S+)`", log)
        assert offline, "it says where the files are"
        assert offline[1] == offline[2] and Path(offline[1]).name.startswith("offline-run-")
        assert run["config"]["optim.lr"] in (0.001, 0.01) and run["config"]["model"] == "lenet"
        losses = [(h["_step"], h["train/loss"]) for h in run["history"] if "train/loss" in h]
        assert [s for s, _ in losses] == step_records(job)
        pictures = {k.split("/_type")[0] for h in run["history"] for k in h if k.endswith("_type")}
        assert {"best/confusion_matrix", "best/misclassified"} <= pictures
        summary = json.loads((job / "summary.json").read_text())
        assert run["summary"]["status"] == "done" and run["exit_code"] == 0
        assert run["summary"]["best/val/acc"] == pytest.approx(summary["best"]["value"])
        assert not list(job.glob("events.out.tfevents.*")), "logger=wandb: W&B only"


def test_a_resumed_run_continues_its_wandb_run(make_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    where = tmp_path / "wandb_files"
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = plain(make_cfg, *RESUMABLE, "logger=wandb", f"logger.wandb.dir={where}")
    run_dir = tmp_path / "run"
    interrupted_then_resumed(cfg, run_dir, monkeypatch)
    import wandb

    wandb.teardown()  # its service writes the files to the end (a process does so at exit)
    first, second = (wbread.read_run(d) for d in wbread.offline_runs(where))
    assert first["run"].run_id == second["run"].run_id, "the same W&B run, continued"
    assert first["exit_code"] == 255 and second["exit_code"] == 0, "interrupted, then done"
    steps = [h["_step"] for run in (first, second) for h in run["history"] if "train/loss" in h]
    assert steps == list(range(1, 13)), "one value per step: none twice, none missing"


def test_wandb_goes_online_only_for_a_user_who_has_logged_in(tmp_path, monkeypatch):
    from dlexp.tracking.loggers.to_wandb import logged_in

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc here
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert not logged_in()
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert logged_in()
    monkeypatch.setenv("WANDB_API_KEY", "k")
    (tmp_path / ".netrc").unlink()
    assert logged_in()


# -- the batched loggers' floor --------------------------------------------------------------------
def test_a_resumed_run_skips_the_steps_a_killed_run_had_sent_already():
    """A run killed between checkpoints may have sent steps past its checkpoint; its resumed
    run trains them again, and sends only what comes after."""
    from dlexp.tracking.loggers import Record
    from dlexp.tracking.runlog import _send

    class Seen:
        def __init__(self) -> None:
            self.steps: list[int] = []

        def log_metrics(self, records):
            self.steps += [r.step for r in records]

        def log_image(self, tag, image, step):
            self.steps.append(step)

    pending = [("metrics", Record({"loss": 1.0}, s, "step")) for s in range(5, 10)]
    pending.insert(3, ("image", ("val/confusion_matrix", None, 8)))
    seen = Seen()
    assert _send(seen, pending, floor=7) == 9
    assert seen.steps == [8, 8, 9]
