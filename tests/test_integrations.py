"""dlexp with things from outside: torchvision's file formats, users' configs and modules, pip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlexp.cli.train import train
from tests.conftest import REPO, cli_env, latest_run, read_jsonl, run_cli
from tests.fakedata import write_mnist_idx

pytestmark = pytest.mark.slow


def test_torchvision_mnist_from_idx_files_learns_and_returns_the_metric(make_cfg, tmp_path):
    """The real torchvision path, fed IDX files in the real format (no download)."""
    write_mnist_idx(tmp_path / "data", n_train=600, n_test=100)
    cfg = make_cfg("data=mnist", "trainer.epochs=3", "trainer.progress=none")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    best = train(cfg, run_dir=run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best"]["value"] == pytest.approx(best)
    assert best > 0.8, "the bar patterns are easy: LeNet must learn them"
    assert summary["test"]["test/acc"] > 0.8
    epochs = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "epoch"]
    assert len(epochs) == 3 and epochs[-1]["train/loss"] < epochs[0]["train/loss"]


TINY_MODEL = '''
import torch.nn as nn


class TinyNet(nn.Module):
    """A user's own model: any nn.Module; dlexp passes in_channels/num_classes if asked."""

    def __init__(self, num_classes: int, in_channels: int, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)
'''


def test_users_own_config_folder_and_module(tmp_path):
    (tmp_path / "mymodels.py").write_text(TINY_MODEL)
    model_dir = tmp_path / "myconfigs" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "tiny.yaml").write_text("_target_: mymodels.TinyNet\nhidden: 8\n")
    proc = run_cli(
        tmp_path,
        "--config-dir",
        str(tmp_path / "myconfigs"),
        "model=tiny",
        "trainer=debug",
        PYTHONPATH=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((latest_run(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "done"
    assert summary["choices"]["model"] == "tiny"
    # LazyLinear(8) on 28x28 (model has no image_size: native size) + Linear(8, 10)
    assert summary["num_params"] == 28 * 28 * 8 + 8 + 8 * 10 + 10

    proc = run_cli(
        tmp_path,
        "--config-dir",
        str(tmp_path / "myconfigs"),
        "model=tiny",
        "+model.depth=3",
        "trainer=debug",
        PYTHONPATH=str(tmp_path),
    )
    assert proc.returncode == 2
    assert "TinyNet does not take depth" in proc.stderr and "hidden" in proc.stderr


def test_non_editable_install_finds_packaged_configs(tmp_path):
    """A wheel installed elsewhere and run from an unrelated folder still finds its configs."""
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(REPO)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    wheel = next(wheel_dir.glob("dlexp-*.whl"))
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = cli_env(elsewhere, PYTHONPATH=str(site))
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import dlexp.config.paths as c; print(c.__file__); print(c.CONFIG_DIR)",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    module_file, config_dir = probe.stdout.split()
    assert module_file.startswith(str(site)) and config_dir.startswith(str(site))
    assert (Path(config_dir) / "model" / "lenet.yaml").is_file()
    assert str(REPO) not in config_dir
    proc = subprocess.run(
        [sys.executable, "-m", "dlexp", "trainer=debug"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (elsewhere / "outputs" / "latest").is_file()
    assert os.listdir(elsewhere / "outputs" / "runs")
