"""Ctrl-C before a run has started (before its config.yaml): it says there is nothing to resume
and leaves no folder that no verb accepts; a second Ctrl-C during training keeps its message."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlexp.engine import runner
from tests.conftest import call_cli

pytestmark = pytest.mark.slow

TINY = ("trainer=debug", "trainer.limit_train_batches=2", "trainer.progress=none")


def stop_at_once(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_before_the_run_started_removes_its_new_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "setup_torch", stop_at_once)  # the runner's first step
    result = call_cli(tmp_path, "name=early", *TINY)
    assert result.returncode == 130
    assert "stopped before the run started: nothing to resume" in result.stderr
    assert "aborted at once" not in result.stderr
    assert "Traceback" not in result.stderr
    runs = tmp_path / "outputs" / "runs"
    assert list(runs.iterdir()) == [], "the folder made for the run is gone"
    assert not (tmp_path / "outputs" / "latest").exists()


def test_a_folder_that_was_there_before_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me\n")
    monkeypatch.setattr(runner, "setup_torch", stop_at_once)
    result = call_cli(tmp_path, f"hydra.run.dir={mine}", *TINY)
    assert result.returncode == 130
    assert "stopped before the run started: nothing to resume" in result.stderr
    assert "removed" not in result.stderr
    assert (mine / "notes.txt").read_text() == "keep me\n"


def test_a_second_ctrl_c_during_training_keeps_its_message_and_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner.Runner, "fit", stop_at_once)  # config.yaml is written by then
    result = call_cli(tmp_path, "name=late", *TINY)
    assert result.returncode == 130
    assert "aborted at once; checkpoints/last.pt, if any, is from before" in result.stderr
    assert "before the run started" not in result.stderr
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert (run_dir / "config.yaml").is_file()


def test_ctrl_c_between_a_sweeps_jobs_says_how_to_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlexp.sweeps.naming import JobNames

    started = JobNames.on_job_start
    jobs = []

    def second_job_stops(self: JobNames, config: object, **kwargs: object) -> None:
        jobs.append(1)
        if len(jobs) == 2:  # Hydra's callback for the second job: outside any job's handling
            raise KeyboardInterrupt
        started(self, config, **kwargs)

    monkeypatch.setattr(JobNames, "on_job_start", second_job_stops)
    result = call_cli(tmp_path, "-m", "trainer.seed=0,1", *TINY)
    assert result.returncode == 130, result.stderr
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    assert "stopped between the sweep's jobs" in result.stderr
    assert f"hydra.sweep.dir={sweep} resume=auto" in result.stderr
    assert "before the run started" not in result.stderr
