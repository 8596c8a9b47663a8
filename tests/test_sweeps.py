"""Sweeps that finish, resume and compare: the manifest, failures, resuming, many jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env, run_cli
from tests.tbread import hparams_sessions

pytestmark = pytest.mark.slow

TINY = (
    "trainer=debug",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.test_after_fit=false",
    "trainer.figures_every_n_epochs=null",
    "trainer.progress=none",
)


def only_sweep(tmp_path: Path) -> Path:
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    return sweep


def manifest(sweep: Path) -> dict:
    return json.loads((sweep / "manifest.json").read_text())["jobs"]


def test_a_2x2_sweep_writes_manifest_table_and_hparams(tmp_path):
    proc = call_cli(tmp_path, "-m", *TINY, "optim=sgd,adam", "optim.lr=0.001,0.01")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = only_sweep(tmp_path)
    jobs = manifest(sweep)
    assert sorted(jobs) == ["0", "1", "2", "3"]
    assert all(j["status"] == "done" and j["objective"] is not None for j in jobs.values())
    assert {tuple(j["overrides"][-2:]) for j in jobs.values()} == {
        (f"optim={o}", f"optim.lr={lr}") for o in ("sgd", "adam") for lr in ("0.001", "0.01")
    }
    assert "4 done" in proc.stdout and "every job:" in proc.stdout
    folders = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert folders[0].startswith("0_") and "optim=sgd" in folders[0]

    experiment, groups = hparams_sessions(sweep)
    assert len(groups) == 4, "one HParams session per job"
    assert {"optim", "optim.lr"} <= {h["name"] for h in experiment["hparamInfos"]}
    assert {g["hparams"]["optim.lr"] for g in groups} == {0.001, 0.01}


def test_a_failing_job_leaves_the_others_and_fail_fast_stops(tmp_path):
    # lr=1e9 passes every check and fails only once training runs: the loss is not finite
    proc = call_cli(tmp_path, "-m", *TINY, "optim.lr=0.01,1e9,0.001")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    jobs = manifest(only_sweep(tmp_path))
    assert [jobs[n]["status"] for n in ("0", "1", "2")] == ["done", "failed", "done"]
    assert "finite" in jobs["1"]["error"] and "optim.lr" in jobs["1"]["error"]
    assert Path(jobs["2"]["run_dir"], "checkpoints", "best.pt").is_file()

    fast = tmp_path / "fast"
    fast.mkdir()
    proc = call_cli(fast, "-m", *TINY, "fail_fast=true", "optim.lr=0.01,1e9,0.001")
    assert proc.returncode != 0
    jobs = manifest(only_sweep(fast))
    assert sorted(jobs) == ["0", "1"] and jobs["1"]["status"] == "failed", "job 2 never ran"


def test_a_config_that_sets_the_sweep_folder_leaves_no_other_folder(tmp_path):
    # Hydra resolves the default hydra.sweep.dir (which claims a folder) before the user's
    # config replaces it; the unused claim must be gone when the sweep ends
    own = tmp_path / "my_configs" / "experiment"
    own.mkdir(parents=True)
    (own / "mine.yaml").write_text("# @package _global_\nhydra:\n  sweep:\n    dir: mine\n")
    proc = call_cli(
        tmp_path, "-m", "--config-dir", "my_configs", "experiment=mine", *TINY, "optim=sgd,adam"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [j["status"] for j in manifest(tmp_path / "mine").values()] == ["done", "done"]
    assert list((tmp_path / "outputs").glob("sweeps/*")) == []

    # run again without resume=auto (the folder comes from the config, so each job refuses):
    # the jobs' own files stay, the manifest says "refused", the sweep exits with 1
    jobs = manifest(tmp_path / "mine")
    job0 = Path(jobs["0"]["run_dir"])
    metrics = (job0 / "metrics.jsonl").read_text()
    (Path(jobs["1"]["run_dir"]) / "summary.json").unlink()  # as a killed job leaves it
    again = call_cli(
        tmp_path, "-m", "--config-dir", "my_configs", "experiment=mine", *TINY, "optim=sgd,adam"
    )
    assert again.returncode == 1 and "already holds a run. Pass resume=auto" in again.stderr
    assert [j["status"] for j in manifest(tmp_path / "mine").values()] == ["refused"] * 2
    assert (job0 / "metrics.jsonl").read_text() == metrics
    assert json.loads((job0 / "summary.json").read_text())["status"] == "done"
    assert not (Path(jobs["1"]["run_dir"]) / "summary.json").exists(), "a refusal writes none"


def test_an_interrupted_sweep_resumes_without_rerunning_finished_jobs(tmp_path):
    args = [
        "-m",
        "trainer.epochs=2",
        "trainer.limit_train_batches=30",
        "trainer.log_every_n_steps=1",
        "trainer.progress=none",
        "trainer.test_after_fit=false",
        "trainer.seed=1,2",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlexp", *args],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 180
    second = None
    while time.time() < deadline and second is None:  # job 0 done, job 1 training
        for path in (tmp_path / "outputs" / "sweeps").glob("*/1_*/metrics.jsonl"):
            if path.read_text().strip():
                second = path
        time.sleep(0.05)
    assert second is not None, "the second job never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    sweep = only_sweep(tmp_path)
    assert f"hydra.sweep.dir={sweep} resume=auto" in " ".join(err.split()), err
    jobs = manifest(sweep)
    assert jobs["0"]["status"] == "done" and jobs["1"]["status"] == "interrupted"
    first_metrics = Path(jobs["0"]["run_dir"], "metrics.jsonl").read_text()

    proc = call_cli(tmp_path, *args, f"hydra.sweep.dir={sweep}", "resume=auto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = manifest(sweep)
    assert [jobs[n]["status"] for n in ("0", "1")] == ["done", "done"]
    assert Path(jobs["0"]["run_dir"], "metrics.jsonl").read_text() == first_metrics, "not rerun"
    summary = json.loads(Path(jobs["1"]["run_dir"], "summary.json").read_text())
    assert summary["epochs_completed"] == 2 and summary["steps"] == 60

    # without resume=auto: refused before Hydra rewrites the sweep's files
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    again = call_cli(tmp_path, *args, f"hydra.sweep.dir={sweep}")
    assert again.returncode == 2 and "already holds a sweep. Pass resume=auto" in again.stderr
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before


def test_a_failed_job_runs_again_with_its_old_files_set_aside(tmp_path):
    from tests.fakedata import write_mnist_idx

    args = ("-m", *TINY, "data=mnist_sample,mnist")
    first = call_cli(tmp_path, *args)  # job 1: the MNIST files are not there
    assert first.returncode == 1
    sweep = only_sweep(tmp_path)
    assert [manifest(sweep)[n]["status"] for n in ("0", "1")] == ["done", "failed"]
    failed_job = Path(manifest(sweep)["1"]["run_dir"])
    first_log = (failed_job / "train.log").read_text()

    write_mnist_idx(tmp_path / "data", n_train=200, n_test=50)  # the user fixes the cause
    again = call_cli(tmp_path, *args, f"hydra.sweep.dir={sweep}", "resume=auto")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "finished already: skipped" in again.stdout
    assert [manifest(sweep)[n]["status"] for n in ("0", "1")] == ["done", "done"]
    (attempt,) = (failed_job / "failed_attempts").iterdir()
    old = json.loads((attempt / "summary.json").read_text())
    assert old["status"] == "failed" and "data.download=true" in old["error"]
    assert (attempt / "train.log").read_text() == first_log, "kept as it was"
    assert (failed_job / "checkpoints" / "best.pt").is_file()


def test_fifty_tiny_jobs_in_parallel_are_all_accounted_for(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = run_cli(
        tmp_path,
        "-m",
        *TINY,
        "trainer.limit_train_batches=1",
        "trainer.seed=range(0,50)",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = only_sweep(tmp_path)
    jobs = manifest(sweep)
    assert sorted(int(n) for n in jobs) == list(range(50))
    assert all(j["status"] == "done" for j in jobs.values())
    assert "50 done" in proc.stdout
    config = json.loads(Path(jobs["7"]["run_dir"], "summary.json").read_text())
    expected = max(1, (os.cpu_count() or 1) // 2)
    assert config["environment"]["threads"] == expected, "2 parallel jobs: half the cores each"


def test_submitit_local_launcher_runs_jobs(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = run_cli(
        tmp_path,
        "-m",
        *TINY,
        "optim=sgd,adam",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = manifest(only_sweep(tmp_path))
    assert [jobs[n]["status"] for n in ("0", "1")] == ["done", "done"]


def test_torch_settings_of_one_job_do_not_leak_into_the_next():
    # the basic launcher runs a sweep's jobs one after another in one process
    import torch

    from dlexp.engine.setup import _DEFAULT_THREADS, setup_torch

    base = {"device": "cpu", "precision": "32", "seed": 0}
    try:
        setup_torch({**base, "threads": 1, "deterministic": True})
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        setup_torch({**base, "threads": None, "deterministic": False})
        assert torch.get_num_threads() == _DEFAULT_THREADS
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(_DEFAULT_THREADS)
