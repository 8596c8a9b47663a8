"""Nothing lost: exact resume, safe interruption, atomic saves, non-finite losses."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from dlexp.cli.train import train
from dlexp.cli.verbs import resume
from dlexp.errors import DlexpError
from dlexp.tasks.registry import train as run_task
from tests.conftest import cli_env, read_jsonl, run_cli, stop_then_resume

pytestmark = pytest.mark.slow

EXACT = (
    "trainer.deterministic=true",
    "trainer.epochs=2",
    "trainer.limit_train_batches=10",
    "trainer.log_every_n_steps=3",
    "trainer.progress=none",
    "regularization=[dropout]",  # dropout: the RNG state must come back too
    "data.augment=crop_flip",  # and so must the augmentation stream
)


def _comparable(records: list[dict]) -> list[dict]:
    """Records without wall-clock fields (time, throughput), which no two runs share."""
    drop = {"time", "throughput/samples_per_sec"}
    return [{k: v for k, v in r.items() if k not in drop} for r in records]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize(
    "extra",
    [
        (),
        # the DataLoader path, and a schedule with warm-up whose state must come back exactly
        ("data.loader=dataloader", "scheduler=cosine", "scheduler.warmup_epochs=0.5"),
    ],
    ids=["tensor", "dataloader_cosine"],
)
def test_interrupted_mid_epoch_then_resumed_equals_uninterrupted(
    make_cfg, tmp_path, monkeypatch, extra
):
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(make_cfg(*EXACT, *extra), resolve=True)
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    straight.mkdir()
    run_task(cfg, straight, {"model": "lenet"})

    # stop after step 14: mid-epoch 2, and mid-log-window (windows end at 3, 6, ..., 15)
    summary = stop_then_resume(cfg, broken, monkeypatch, at_step=14, choices={"model": "lenet"})
    assert summary["status"] == "interrupted" and summary["steps"] == 14
    assert summary["sessions"] == 1
    a, b = _weights(straight), _weights(broken)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    assert _comparable(read_jsonl(straight / "metrics.jsonl")) == _comparable(
        read_jsonl(broken / "metrics.jsonl")
    )
    resumed = json.loads((broken / "summary.json").read_text())
    assert resumed["status"] == "done" and resumed["sessions"] == 2
    # TensorBoard's HParams dashboard: still one run, and it ended well
    from tests.tbread import hparams_sessions

    _, groups = hparams_sessions(broken)
    assert len(groups) == 1 and len(groups[0]["sessions"]) == 1
    assert groups[0]["sessions"][0]["status"] == "STATUS_SUCCESS"
    assert resumed["started_at"] == summary["started_at"], "timed from the first start"
    assert resumed["wall_time_s"] > summary["wall_time_s"]


def test_sigterm_saves_a_resumable_checkpoint(tmp_path):
    args = ["trainer.epochs=3", "trainer.limit_train_batches=40", "trainer.log_every_n_steps=1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlexp", *args],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    latest = tmp_path / "outputs" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the first logged step
        if latest.is_file():
            metrics = Path(latest.read_text().strip()) / "metrics.jsonl"
            if metrics.is_file() and metrics.read_text().strip():
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "dlexp resume" in err and "Traceback" not in err
    run_dir = Path(latest.read_text().strip())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["train_state"]["step"] == summary["steps"] > 0

    done = run_cli(tmp_path, "resume", str(run_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_completed"] == 3
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "step"]
    assert steps == list(range(1, 121)), "every step logged exactly once"


KILL_DURING_SAVE = textwrap.dedent(
    """
    import os, signal, sys, torch
    from pathlib import Path
    from dlexp.engine.checkpoint import FORMAT, save_checkpoint
    path = Path(sys.argv[1])
    save_checkpoint({"format": FORMAT, "model": {"w": torch.ones(3)}}, path)
    # the next save is killed after the new file is written, before it is renamed into place
    os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
    save_checkpoint({"format": FORMAT, "model": {"w": torch.zeros(3)}}, path)
    """
)


def test_sigkill_between_write_and_rename_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(path)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    from dlexp.engine.checkpoint import load_checkpoint

    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))


NAN_MODEL = '''
import torch
from dlexp.models.cnn import LeNet5


class NaNOnce(LeNet5):
    """LeNet-5 whose training forward returns NaN once, at call `at`."""

    def __init__(self, at: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.at, self.calls = at, 0

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                out = out * float("nan")
        return out
'''


@pytest.fixture
def nan_model(tmp_path, monkeypatch):
    (tmp_path / "nanmodel.py").write_text(NAN_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    return ("model._target_=nanmodel.NaNOnce", "+model.at=3")


def test_nonfinite_loss_stops_with_the_step_and_keeps_last_good_checkpoint(
    make_cfg, tmp_path, nan_model
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = make_cfg(
        *nan_model, "trainer.epochs=2", "trainer.log_every_n_steps=1", "trainer.progress=none"
    )
    with pytest.raises(DlexpError, match="at step 3"):
        train(cfg, run_dir=run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "step 3" in summary["error"]
    assert "no checkpoint had been saved yet" in summary["error"]
    assert not (run_dir / "checkpoints" / "last.pt").exists(), "no checkpoint of NaN weights"


def test_weights_that_overflow_under_nonfinite_skip_fail_the_run(make_cfg, tmp_path):
    # skipping non-finite batches cannot save weights that became inf: the run must not end
    # "done" with a NaN validation loss marked best
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = make_cfg(
        "trainer=debug", "trainer.progress=none", "trainer.nonfinite=skip", "optim.lr=1e9"
    )
    with pytest.raises(DlexpError, match="no longer finite"):
        train(cfg, run_dir=run_dir)

    def strict(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    summary = json.loads((run_dir / "summary.json").read_text(), parse_constant=strict)
    assert summary["status"] == "failed" and summary["best"]["value"] is None


def test_nonfinite_skip_skips_the_batch_and_goes_on(make_cfg, tmp_path, nan_model):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = make_cfg(
        *nan_model,
        "trainer.nonfinite=skip",
        "trainer.epochs=1",
        "trainer.limit_train_batches=6",
        "trainer.progress=none",
    )
    train(cfg, run_dir=run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done" and summary["steps"] == 5
    weights = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_keep_last_n_keeps_n_epoch_checkpoints(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = make_cfg(
        "trainer.epochs=3",
        "trainer.limit_train_batches=2",
        "trainer.keep_last=2",
        "trainer.progress=none",
    )
    train(cfg, run_dir=run_dir)
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    assert names == ["best.pt", "epoch_0002.pt", "epoch_0003.pt", "last.pt"]


def test_resume_refuses_unsafe_changes_and_finished_runs(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    train(make_cfg("trainer=debug", "trainer.progress=none"), run_dir=run_dir)
    with pytest.raises(DlexpError, match="optim.lr cannot change on resume"):
        resume([str(run_dir), "optim.lr=0.5"])
    with pytest.raises(DlexpError, match="already finished"):
        resume([str(run_dir)])
    with pytest.raises(DlexpError, match="Did you mean 'trainer.epochs'"):
        resume([str(run_dir), "trainer.epoch=3"])
    with pytest.raises(DlexpError, match="optim=sgd: choosing another optim .a config group"):
        resume([str(run_dir), "optim=sgd", "--force"])
    with pytest.raises(DlexpError, match="hydra.run.dir: Hydra's settings"):
        resume([str(run_dir), "hydra.run.dir=/tmp/elsewhere"])
    resume([str(run_dir), "trainer.epochs=2"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_completed"] == 2
    # --force: the new learning rate is the one the optimizer uses, not the checkpoint's
    resume([str(run_dir), "trainer.epochs=3", "optim.lr=0.0123", "--force"])
    lrs = {
        r["epoch"]: r["lr"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "step"
    }
    assert lrs[2] == pytest.approx(1e-3) and lrs[3] == pytest.approx(0.0123)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_resume_refuses_to_stretch_a_fixed_length_schedule(make_cfg, tmp_path, schedule):
    # the saved schedule is laid out over 1 epoch: one-cycle would crash past its end and
    # cosine would climb back from min_lr
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    train(make_cfg("trainer=debug", "trainer.progress=none", f"scheduler={schedule}"), run_dir)
    before = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(
        DlexpError, match=f"scheduler={schedule} is laid out over its 1 epochs"
    ) as err:
        resume([str(run_dir), "trainer.epochs=2"])
    # the run has finished: resuming at its own length is no way out; the rerun names the folder
    assert "resume with" not in str(err.value)
    assert f"start a new run: dlexp rerun {run_dir} trainer.epochs=2" in str(err.value)
    with pytest.raises(DlexpError, match="dlexp rerun .* trainer.epochs=11 .a new run"):
        resume([str(run_dir)])
    with pytest.raises(
        DlexpError, match=f"optim cannot change on resume under scheduler={schedule}"
    ):
        resume([str(run_dir), "optim.lr=0.5", "--force"])
    assert (run_dir / "metrics.jsonl").read_text() == before, "nothing written"


def test_auto_resume_continues_a_requeued_job(tmp_path):
    job = tmp_path / "job"
    args = (f"hydra.run.dir={job}", "resume=auto", "trainer=debug", "trainer.epochs=2")
    first = run_cli(tmp_path, *args, "trainer.epochs=1")
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stdout
    summary = json.loads((job / "summary.json").read_text())
    assert summary["epochs_completed"] == 2 and summary["steps"] == 10
    hydra_files = {p.name: p.read_text() for p in (job / ".hydra").iterdir()}
    other = run_cli(tmp_path, *args, "optim.lr=0.5")
    assert other.returncode == 2 and "different config" in other.stderr
    assert {p.name: p.read_text() for p in (job / ".hydra").iterdir()} == hydra_files


def test_unwritable_output_root_and_full_disk_are_reported_at_start(
    make_cfg, tmp_path, monkeypatch
):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = run_cli(tmp_path, f"paths.output_root={blocker}/outputs")
    assert proc.returncode == 2 and "paths.output_root" in proc.stderr
    assert "Traceback" not in proc.stderr

    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 1024))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(DlexpError, match=r"only 0 MiB free .* checkpoints of this model need"):
        train(make_cfg("trainer=debug", "trainer.progress=none"), run_dir=run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "MiB free" in summary["error"]
    assert not list(run_dir.rglob("*.pt")), "stopped before the first checkpoint"
