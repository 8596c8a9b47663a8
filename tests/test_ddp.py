"""Data-parallel training with torchrun on CPU (gloo): the same steps as one process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import cli_env, read_jsonl

pytestmark = pytest.mark.slow

ARGS = (
    "trainer.device=cpu",  # gloo on the CPU, also on a machine with GPUs
    "trainer.epochs=1",
    "trainer.limit_train_batches=8",
    "trainer.log_every_n_steps=4",
    "trainer.deterministic=true",
    "trainer.progress=none",
    "trainer.test_after_fit=false",
    "trainer.figures_every_n_epochs=null",
    "data.augment=crop_flip",  # each sample gets the crop and flip it gets in one process
)


def torchrun() -> list[str]:
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runs(root: Path) -> list[Path]:
    return sorted((root / "outputs" / "runs").iterdir())


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def losses(run_dir: Path) -> list[float]:
    return [r["train/loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "step"]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("single")
    proc = subprocess.run(
        [sys.executable, "-m", "dlexp", *ARGS],
        cwd=tmp,
        env=cli_env(tmp),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = runs(tmp)
    return run


def assert_same_training(single: Path, ddp: Path) -> None:
    a, b = weights(single), weights(ddp)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)
    assert losses(ddp) == pytest.approx(losses(single), rel=1e-5)


def _torchrun(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*torchrun(), "--nproc_per_node=2", f"--master_port={free_port()}", "-m", "dlexp", *args],
        cwd=tmp, env=cli_env(tmp), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_processes_match_one_on_the_same_global_batch(single, tmp_path):
    _torchrun(tmp_path, *ARGS)
    (run,) = runs(tmp_path)  # one run folder, written by rank 0 only
    assert json.loads((run / "summary.json").read_text())["status"] == "done"
    assert_same_training(single, run)
    # throughput counts the global batch: both runs trained on the same number of samples
    seen = [json.loads((r / "summary.json").read_text()) for r in (single, run)]
    one, two = (s["samples_per_sec"] * s["train_time_s"] for s in seen)
    assert two == pytest.approx(one, rel=0.02)

    # resume works under torchrun too: train the same run one epoch further
    _torchrun(tmp_path, "resume", str(run), "trainer.epochs=2")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_completed"] == 2
    assert summary["steps"] == 16 and len(losses(run)) == 4, "each logged step once"
    # and it took the same steps as one process training 2 epochs straight
    straight = tmp_path / "straight"
    straight.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "dlexp", *ARGS, "trainer.epochs=2"],
        cwd=straight, env=cli_env(straight), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (single_two,) = runs(straight)
    assert_same_training(single_two, run)


def test_dropout_under_torchrun_resumes_exactly_with_each_ranks_generator(tmp_path):
    # each rank draws its own dropout masks; a resume must give each rank its own stream back
    dropout = (*ARGS, "regularization=[dropout]")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _torchrun(tmp_path / "a", *dropout, "trainer.epochs=2")
    _torchrun(tmp_path / "b", *dropout)
    (resumed,) = runs(tmp_path / "b")
    ckpt = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert len(ckpt["rng_by_rank"]) == 2
    assert not torch.equal(ckpt["rng_by_rank"][0]["torch"], ckpt["rng_by_rank"][1]["torch"])
    _torchrun(tmp_path, "resume", str(resumed), "trainer.epochs=2")
    (straight,) = runs(tmp_path / "a")
    assert_same_training(straight, resumed)


def test_other_ranks_seed_their_own_stream(monkeypatch):
    from dlexp.engine import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    draws = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        torch.manual_seed(0)
        distributed.seed_rank(0)
        draws.append(torch.rand(4))
    torch.manual_seed(0)
    assert torch.equal(draws[0], torch.rand(4)), "rank 0 keeps a single process's stream"
    assert not torch.equal(draws[0], draws[1])


def test_two_nodes_meet_through_a_c10d_rendezvous(single, tmp_path):
    port = free_port()
    nodes = [
        subprocess.Popen(
            [
                *torchrun(),
                "--nnodes=2",
                "--nproc_per_node=1",
                "--rdzv_backend=c10d",
                f"--rdzv_endpoint=127.0.0.1:{port}",
                "--rdzv_id=dlexp-test",
                "-m",
                "dlexp",
                *ARGS,
            ],
            cwd=tmp_path,
            env=cli_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    (run,) = runs(tmp_path)
    assert_same_training(single, run)
