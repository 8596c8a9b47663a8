"""Run folders never collide; checkpoints are atomic and never unpickle code."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlexp.config.paths import slug, unique_dir
from dlexp.engine.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from dlexp.errors import DlexpError


def _claim(args: tuple[str, str]) -> str:
    folder = unique_dir(*args)
    (Path(folder) / "used").touch()  # a used folder is kept at exit (an empty one is removed)
    return folder


def test_concurrent_claims_of_one_name_get_distinct_folders(tmp_path: Path):
    # a fresh process per claim: the per-process memo must not hide a collision
    with mp.get_context("spawn").Pool(4, maxtasksperchild=1) as pool:
        dirs = pool.map(_claim, [(str(tmp_path), "2026-01-01_00-00-00_lenet")] * 8)
    assert len(set(dirs)) == 8
    assert all(Path(d).is_dir() for d in dirs)
    assert str(tmp_path / "2026-01-01_00-00-00_lenet") in dirs


def test_a_claimed_folder_left_empty_is_removed_at_exit(tmp_path: Path):
    # Hydra claims a default sweep folder even when a config replaces it
    code = (
        "import sys; from pathlib import Path; from dlexp.config.paths import unique_dir\n"
        "used = Path(unique_dir(sys.argv[1], 'used')); (used / 'f').touch()\n"
        "unique_dir(sys.argv[1], 'unused')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]


def test_slug_keeps_folder_names_safe():
    assert "/" not in slug("optim=sgd,model=../../etc")
    assert slug("a b") == "a-b"
    assert len(slug("x" * 500)) == 120


def _payload(value: float) -> dict:
    return {"format": FORMAT, "model": {"w": torch.full((2,), value)}}


def test_checkpoint_roundtrip_with_weights_only(tmp_path: Path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(_payload(1.0), path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert not list(path.parent.glob(".*tmp*")), "no temporary file left behind"


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(_payload(1.0), path)

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # the process is stopped between write and rename

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_payload(2.0), path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))


class Payload:
    def __reduce__(self):
        return (print, ("this code must never run",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path: Path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": Payload()}, path, pickle_module=pickle)
    with pytest.raises(DlexpError, match="weights_only"):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


def test_non_dlexp_file_is_refused_with_a_clear_message(tmp_path: Path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(1)}, path)
    with pytest.raises(DlexpError, match="not a dlexp checkpoint"):
        load_checkpoint(path)
    with pytest.raises(DlexpError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    table = tmp_path / "reviews.csv"  # e.g. the wrong path in model.eval.feature_checkpoint
    table.write_text("text,label\ngood,pos\n")
    with pytest.raises(DlexpError, match="reviews.csv is not a PyTorch checkpoint"):
        load_checkpoint(table)


def test_parallel_sweep_jobs_share_cores_and_take_their_own_gpu(monkeypatch):
    from dlexp.sweeps.manifest import parallel_jobs, pin_job

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    pinned = [pin_job({"device": "auto", "threads": None}, num, 4) for num in range(6)]
    assert [p["device"] for p in pinned] == ["cuda:0", "cuda:1", "cuda:2"] * 2
    assert {p["threads"] for p in pinned} == {4}
    assert pin_job({"device": "cpu", "threads": 2}, 5, 4) == {"device": "cpu", "threads": 2}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert pin_job({"device": "auto", "threads": None}, 1, 1) == {"device": "auto", "threads": None}
    assert parallel_jobs({"launcher": {"n_jobs": 3}}) == 3
    assert parallel_jobs({"launcher": {"n_jobs": -1}}) == 16
    assert parallel_jobs({}) == 1
