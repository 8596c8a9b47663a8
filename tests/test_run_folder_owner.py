"""The run folder has one owner: a failed command leaves it as it was, a second writer is
refused, and a lock left by a dead process is taken over."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlexp.cli.evaluate import evaluate_run
from dlexp.cli.main import run_verb
from dlexp.cli.train import train
from dlexp.cli.verbs import resume
from dlexp.engine.runner import Runner
from dlexp.errors import DlexpError, FolderOccupied
from dlexp.tasks.classify.task import ClassifyTask
from dlexp.tracking.lock import LOCK, check_unlocked
from dlexp.tracking.runfolder import RunFolder
from tests.conftest import cli_env, compose_cfg, read_jsonl

pytestmark = pytest.mark.slow
TINY = ("trainer=debug", "trainer.progress=none", "trainer.epochs=1")


def snapshot(folder: Path) -> dict[str, str]:
    """Every file's bytes (as a hash), but train.log: an error line there is fine."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "train.log"
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-epoch LeNet run, trained once for this module."""
    tmp = tmp_path_factory.mktemp("finished")
    run_dir = tmp / "run"
    run_dir.mkdir()
    train(compose_cfg(tmp, *TINY), run_dir=run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "done"
    return run_dir


@pytest.fixture
def copy_of(finished, tmp_path) -> Path:
    import shutil

    target = tmp_path / "run"
    shutil.copytree(finished, target)
    return target


def test_a_resume_that_fails_at_device_setup_changes_nothing(copy_of):
    before = snapshot(copy_of)
    with pytest.raises(DlexpError, match="CUDA is not available"):
        resume([str(copy_of), "trainer.epochs=2", "trainer.device=cuda"])
    assert snapshot(copy_of) == before
    summary = json.loads((copy_of / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_completed"] == 1
    assert not (copy_of / LOCK).exists()


def test_a_resume_that_fails_while_building_changes_nothing(copy_of, monkeypatch):
    def broken(self, cfg, device, out):
        raise DlexpError("the data set is gone")

    monkeypatch.setattr(ClassifyTask, "build", broken)
    before = snapshot(copy_of)
    assert run_verb("resume", [str(copy_of), "trainer.epochs=2"]) == 2  # as the CLI calls it
    assert snapshot(copy_of) == before
    # the message still reaches the log
    assert "the data set is gone" in (copy_of / "train.log").read_text()


def test_a_second_writer_is_refused_while_the_first_trains(copy_of, monkeypatch):
    """While a resumed run trains, `dlexp resume` and `dlexp eval` from other processes are
    refused at once, naming the holder; the run goes on and logs every step once."""
    answers: list[subprocess.CompletedProcess[str]] = []
    original = Runner.end_epoch

    def end_epoch(self, metrics, is_best):
        if not answers:  # mid-run: try to write into the same folder from other processes
            for verb in (["resume", str(copy_of), "trainer.epochs=3"], ["eval", str(copy_of)]):
                answers.append(
                    subprocess.run(
                        [sys.executable, "-m", "dlexp", *verb],
                        env=cli_env(copy_of.parent),
                        capture_output=True,
                        text=True,
                        timeout=120,
                    )
                )
        original(self, metrics, is_best)

    monkeypatch.setattr(Runner, "end_epoch", end_epoch)
    resume([str(copy_of), "trainer.epochs=2"])
    for answer in answers:
        assert answer.returncode == 2, answer.stderr
        assert "is in use" in answer.stderr and f"process {os.getpid()}" in answer.stderr
    summary = json.loads((copy_of / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_completed"] == 2
    steps = [r["step"] for r in read_jsonl(copy_of / "metrics.jsonl") if r["kind"] == "step"]
    assert steps == sorted(set(steps)), "no step logged twice"
    assert not (copy_of / LOCK).exists(), "the lock's note goes when the run ends"


HOLD = """
import sys, time
from pathlib import Path
from dlexp.tracking.runfolder import RunFolder
with RunFolder(sys.argv[1]).lock():
    Path(sys.argv[2]).write_text("held")
    time.sleep(120)
"""


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    flag = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(flag)])
    try:
        deadline = time.time() + 60
        while not flag.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert flag.exists(), "the holder never took the lock"
        busy = pytest.raises(FolderOccupied, match=f"process {holder.pid} on .* trains there")
        with busy, RunFolder(folder).lock():
            pass
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: no clean-up of its own
        holder.wait(timeout=30)
    assert (folder / LOCK).exists(), "a killed holder leaves its note behind"
    with RunFolder(folder).lock("evaluates"):  # the OS let go of the lock: taken over
        assert json.loads((folder / LOCK).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK).exists()


def test_eval_is_refused_while_another_process_holds_the_folder(copy_of, tmp_path, monkeypatch):
    flag = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(copy_of), str(flag)])
    try:
        deadline = time.time() + 60
        while not flag.exists() and time.time() < deadline:
            time.sleep(0.1)
        with pytest.raises(FolderOccupied, match="is in use"):
            evaluate_run([str(copy_of)])
        with pytest.raises(FolderOccupied, match="is in use"):
            resume([str(copy_of), "trainer.epochs=2"])
        # under torchrun the other ranks leave the lock to rank 0: a moment's hold of it by
        # rank 1 would refuse rank 0 itself
        monkeypatch.setenv("RANK", "1")
        check_unlocked(copy_of)
    finally:
        holder.kill()
        holder.wait(timeout=30)


# -- run folders from an older (or newer) dlexp --------------------------------------------------
def _rewrite_config(run: Path, edit) -> None:
    import yaml

    path = run / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    edit(cfg)
    path.write_text(yaml.safe_dump(cfg))


def test_an_older_config_gets_todays_defaults_with_a_note_and_resumes(copy_of, capsys):
    def older(cfg):
        del cfg["dlexp_schema"]  # before config.yaml carried a schema version
        del cfg["trainer"]["nonfinite"]  # a key added since
        del cfg["trainer"]["keep_last"]

    _rewrite_config(copy_of, older)
    summary = json.loads((copy_of / "summary.json").read_text())
    summary["choices"] = {"model": "lenet", "optim": "adam", "data": "mnist_sample"}  # as Hydra's
    (copy_of / "summary.json").write_text(json.dumps(summary))
    resume([str(copy_of), "trainer.epochs=2"])
    err = " ".join(capsys.readouterr().err.split())
    assert "was written by an older dlexp" in err
    assert "trainer.nonfinite" in err and "trainer.keep_last" in err
    summary = json.loads((copy_of / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_completed"] == 2
    assert evaluate_run([str(copy_of)]) == 0  # eval reads it the same way


def test_keys_this_version_does_not_know_are_said_to_come_from_the_file(copy_of):
    _rewrite_config(copy_of, lambda cfg: cfg["trainer"].update(warp_speed=9))
    before = snapshot(copy_of)
    with pytest.raises(DlexpError) as err:
        resume([str(copy_of), "trainer.epochs=2"])
    message = str(err.value)
    assert "config.yaml holds keys this dlexp" in message and "trainer.warp_speed" in message
    assert "Did you mean" not in message
    assert snapshot(copy_of) == before


def test_a_config_that_is_not_yaml_is_named_with_its_line(copy_of):
    path = copy_of / "config.yaml"
    path.write_text(path.read_text() + "trainer: [unclosed\n  - x: : y\n")
    before = snapshot(copy_of)
    with pytest.raises(DlexpError, match=r"config.yaml is not valid YAML \(line \d+, column \d+\)"):
        resume([str(copy_of)])
    assert snapshot(copy_of) == before


def test_a_damaged_last_checkpoint_is_called_damaged_and_another_is_offered(copy_of):
    last = copy_of / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut short
    before = snapshot(copy_of)
    with pytest.raises(DlexpError) as err:
        resume([str(copy_of), "trainer.epochs=2"])
    message = str(err.value)
    assert "last.pt is damaged" in message and "ckpt=best" in message
    assert snapshot(copy_of) == before
    resume([str(copy_of), "ckpt=best", "trainer.epochs=2"])  # what the message offers works
    summary = json.loads((copy_of / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_completed"] == 2


def test_the_resume_hint_is_quoted_for_the_shell(tmp_path):
    import shlex

    from dlexp.engine.interrupt import StopRequest

    folder = tmp_path / "my runs" / "run 1"
    message = str(StopRequest().stopped(3, 0, folder))
    command = message.split("Resume with: ")[1]
    assert shlex.split(command) == ["dlexp", "resume", str(folder)]


def test_a_busy_cpu_gets_a_note_naming_trainer_threads(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    train(compose_cfg(tmp_path, *TINY, "trainer.progress=plain"), run_dir=run_dir)
    out = " ".join(capsys.readouterr().out.split())
    assert "the CPU is busy (load 64.0" in out and "trainer.threads=1" in out
