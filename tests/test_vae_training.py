"""Autoencoders and VAEs trained for real on the bundled digits: validation losses fall, the run
folder holds the pictures, TensorBoard and summary.json the metrics, `dlexp sample`, `eval` and
`compare` work on the runs, and a resumed VAE run equals an uninterrupted one bit for bit.

Every network is tiny and runs on one thread (on a shared 2-core machine, two threads spin
against each other and run several times slower)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from dlexp.cli.compare import main as compare_main
from dlexp.cli.main import run_verb
from dlexp.cli.sample import main as sample_main
from dlexp.cli.train import train
from dlexp.config.resolvers import to_plain
from dlexp.tasks.registry import train as run_task
from tests import conftest
from tests.conftest import read_jsonl, run_cli, stop_then_resume
from tests.fakedata import cifar10_md5_check_skipped, write_cifar10
from tests.tbread import hparams_sessions, scalar_and_image_tags

pytestmark = pytest.mark.slow

QUIET = ("trainer.progress=none", "trainer.threads=1")
TINY_VAE = ("model=vae", "model.widths=[8,16]", "model.latent_dim=4", "model.fixed_samples=16")
# the MLP variant, denoising, a 2-d code (the latent plane itself)
TINY_AE = (
    "model=autoencoder",
    "model._target_=dlexp.models.vae.MLPAutoencoder",
    "model.widths=[64]",
    "model.latent_dim=2",
    "model.denoise.kind=mask",
    "model.denoise.level=0.3",
)


def compose_cfg(tmp: Path, *overrides: str):
    return conftest.compose_cfg(tmp, *QUIET, *overrides)


def train_in(tmp: Path, *overrides: str) -> Path:
    run = tmp / "run"
    run.mkdir()
    train(compose_cfg(tmp, *overrides), run_dir=run)
    return run


def epochs(run: Path) -> list[dict]:
    return [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "epoch"]


@pytest.fixture(scope="module")
def feature_checkpoint(tmp_path_factory) -> Path:
    """A LeNet that dlexp trained on the same digits: the Fréchet distance's feature network."""
    tmp = tmp_path_factory.mktemp("lenet")
    overrides = (
        "trainer.epochs=1",
        "trainer.limit_train_batches=30",
        "trainer.test_after_fit=false",
    )
    return train_in(tmp, *overrides) / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, feature_checkpoint) -> Path:
    judge = (f"model.eval.feature_checkpoint={feature_checkpoint}", "model.eval.num_samples=200")
    overrides = ("trainer.epochs=3", "trainer.log_every_n_steps=10")
    return train_in(tmp_path_factory.mktemp("vae"), *TINY_VAE, *judge, *overrides)


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory) -> Path:
    overrides = ("trainer.epochs=3", "trainer.limit_train_batches=20")
    return train_in(tmp_path_factory.mktemp("ae"), *TINY_AE, *overrides)


# -- a VAE ---------------------------------------------------------------------------------------
def test_vae_validation_losses_fall_and_the_test_split_is_scored(vae_run) -> None:
    records = epochs(vae_run)
    elbo = [r["val/neg_elbo"] for r in records]
    recon = [r["val/recon"] for r in records]
    print(f"val -ELBO {elbo}, recon {recon}")
    assert elbo[-1] < 0.8 * elbo[0] and recon[-1] < recon[0]
    for r in records:
        assert r["val/neg_elbo"] == pytest.approx(r["val/recon"] + r["val/kl"])
        assert r["val/kl"] > 0 and 0.1 < r["eval/probe_acc"] <= 1
        assert r["eval/frechet_distance"] > 0
    summary = json.loads((vae_run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["task"] == "vae"
    assert summary["monitor"] == {"metric": "val/neg_elbo", "mode": "min"}
    assert summary["best"]["value"] == pytest.approx(min(elbo))
    test = summary["test"]
    assert test.keys() == {"test/recon", "test/kl", "test/neg_elbo", "test/probe_acc"}
    assert test["test/neg_elbo"] == pytest.approx(test["test/recon"] + test["test/kl"])
    steps = [r for r in read_jsonl(vae_run / "metrics.jsonl") if r["kind"] == "step"]
    logged = {"train/loss", "train/recon", "train/kl", "train/neg_elbo", "train/kl_weight"}
    assert steps and all(logged <= r.keys() for r in steps)


def test_vae_pictures_tensorboard_and_a_plain_checkpoint(vae_run) -> None:
    figures = vae_run / "figures"
    for epoch in (1, 2, 3):
        with Image.open(figures / f"reconstructions_epoch_{epoch:03d}.png") as img:
            assert img.size == (8 * 30 + 2, 4 * 30 + 2)  # 2 rows of 8 inputs, 2 of outputs
        with Image.open(figures / f"samples_epoch_{epoch:03d}.png") as img:
            assert img.size == (8 * 30 + 2, 2 * 30 + 2)  # 16 samples
    with Image.open(figures / "interpolation.png") as img:
        assert img.size == (10 * 30 + 2, 4 * 30 + 2)  # 4 pairs of classes, 10 steps
    assert (figures / "latent_space.png").is_file()
    scalar_tags, image_tags = scalar_and_image_tags(vae_run)
    # TensorBoard groups what belongs together: -ELBO, reconstruction, KL, train beside val
    shown = {"loss/val/neg_elbo", "recon/val/recon", "regularizer/val/kl", "eval/probe_acc"}
    assert shown <= scalar_tags
    assert {"eval/frechet_distance", "summary/test/neg_elbo"} <= scalar_tags
    assert {"reconstructions/val", "samples/fixed_noise"} <= image_tags
    assert {"val/interpolation", "val/latent_space"} <= image_tags
    _, groups = hparams_sessions(vae_run)
    assert groups[0]["sessions"][0]["status"] == "STATUS_SUCCESS"
    ckpt = torch.load(vae_run / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["fixed_noise"].shape == (16, 4)
    assert ckpt["data"] == {
        "name": "mnist_sample",
        "channels": 1,
        "image_size": 28,
        "mean": [0.0],
        "std": [1.0],
    }
    from dlexp.models.vae import ConvVAE

    ConvVAE(latent_dim=4, widths=[8, 16]).load_state_dict(ckpt["model"])


def test_sample_decodes_vae_samples_reproducibly(vae_run, ae_run, tmp_path, capsys) -> None:
    paths = [tmp_path / name for name in ("a.png", "b.png", "c.png")]
    for path, seed in zip(paths, (3, 3, 4), strict=True):
        assert sample_main([str(vae_run), "n=9", f"seed={seed}", f"out={path}"]) == 0
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b and a != c
    with Image.open(paths[0]) as img:
        assert img.size == (3 * 30 + 2, 3 * 30 + 2)
    capsys.readouterr()
    assert sample_main([str(ae_run)]) == 2
    assert "no prior to sample from" in " ".join(capsys.readouterr().err.split())


def test_eval_scores_a_checkpoint_on_a_split(vae_run, capsys) -> None:
    assert run_verb("eval", [str(vae_run), "split=test"]) == 0
    record = json.loads((vae_run / "eval_test_best.json").read_text())
    summary = json.loads((vae_run / "summary.json").read_text())
    for key in ("test/recon", "test/kl", "test/neg_elbo", "test/probe_acc"):
        assert record[key] == pytest.approx(summary["test"][key]), key


# -- an autoencoder --------------------------------------------------------------------------------
def test_autoencoder_learns_to_denoise_and_draws_its_pictures(ae_run) -> None:
    recon = [r["val/recon"] for r in epochs(ae_run)]
    print(f"val recon {recon}")
    assert recon[-1] < 0.9 * recon[0]
    summary = json.loads((ae_run / "summary.json").read_text())
    assert summary["monitor"] == {"metric": "val/recon", "mode": "min"}
    assert summary["test"].keys() == {"test/recon", "test/probe_acc"}
    assert "val/kl" not in summary["final"] and "train/kl" not in summary["final"]
    figures = ae_run / "figures"
    with Image.open(figures / "reconstructions_epoch_003.png") as img:
        assert img.size == (8 * 30 + 2, 6 * 30 + 2)  # inputs, corrupted inputs, outputs
    assert not list(figures.glob("samples_*")), "no prior: no samples"
    assert (figures / "latent_space.png").is_file() and (figures / "interpolation.png").is_file()


def test_compare_puts_the_runs_side_by_side(vae_run, ae_run, tmp_path, capsys) -> None:
    out = tmp_path / "table.csv"
    assert compare_main([str(vae_run), str(ae_run), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2
    assert {"eval/frechet_distance", "eval/probe_acc", "test/recon"} <= rows[0].keys()


def test_a_gaussian_vae_on_cifar10_shaped_data(tmp_path) -> None:
    """3-channel 32 px images: the networks follow the data set."""
    write_cifar10(tmp_path / "data", n_per_batch=20, n_test=10)
    overrides = ("data=cifar10", "model.likelihood=gaussian", "trainer.batch_size=16")
    with cifar10_md5_check_skipped():
        run = train_in(tmp_path, *TINY_VAE, *overrides, "trainer.epochs=1")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and math.isfinite(summary["test"]["test/neg_elbo"])
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert (ckpt["data"]["channels"], ckpt["data"]["image_size"]) == (3, 32)
    with Image.open(run / "figures" / "samples_epoch_001.png") as img:
        assert img.size == (8 * 34 + 2, 2 * 34 + 2) and img.mode == "RGB"


# -- resume ----------------------------------------------------------------------------------------
EXACT = (
    *TINY_VAE,
    "model.kl_warmup_epochs=1",  # the warm-up, the corruption noise and the schedule must survive
    "model.denoise.kind=gaussian",
    "model.denoise.level=0.2",
    "scheduler=step",  # halves the rate after epoch 1: a schedule that does not depend on epochs
    "scheduler.step_epochs=1",
    "scheduler.gamma=0.5",
    "trainer.deterministic=true",
    "trainer.batch_size=32",
    "trainer.limit_train_batches=7",
    "trainer.log_every_n_steps=4",
    "trainer.limit_val_batches=1",
    "trainer.eval_batch_size=100",
)


def _comparable(records: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k not in ("time", "throughput/samples_per_sec")}
        for r in records
    ]


def _assert_same_run(a: Path, b: Path) -> None:
    ca, cb = (torch.load(r / "checkpoints" / "last.pt", weights_only=True) for r in (a, b))
    assert ca["model"].keys() == cb["model"].keys()
    for key in ca["model"]:
        assert torch.equal(ca["model"][key], cb["model"][key]), f"{key} differs after resume"
    assert ca["train_state"]["step"] == cb["train_state"]["step"] == 14
    assert _comparable(read_jsonl(a / "metrics.jsonl")) == _comparable(
        read_jsonl(b / "metrics.jsonl")
    )
    sa, sb = (json.loads((run / "summary.json").read_text()) for run in (a, b))
    assert sb["status"] == "done"
    for key in ("best", "final", "test", "epochs_completed", "steps"):
        assert sa[key] == sb[key], key


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("straight")
    run = tmp / "run"
    run.mkdir()
    run_task(to_plain(compose_cfg(tmp, *EXACT, "trainer.epochs=2")), run, {})
    return run


def test_one_epoch_then_resume_equals_two_epochs(straight_run, tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    run_task(to_plain(compose_cfg(tmp_path, *EXACT, "trainer.epochs=1")), run, {})
    cfg = to_plain(compose_cfg(tmp_path, *EXACT, "trainer.epochs=2"))
    run_task(cfg, run, {}, resume=run / "checkpoints" / "last.pt")
    _assert_same_run(straight_run, run)


def test_interrupted_mid_epoch_then_resumed_equals_uninterrupted(
    straight_run, tmp_path, monkeypatch
) -> None:
    cfg = to_plain(compose_cfg(tmp_path, *EXACT, "trainer.epochs=2"))
    run = tmp_path / "run"
    # step 10: in epoch 2, between the log windows (8, 12): everything must carry over
    summary = stop_then_resume(cfg, run, monkeypatch, at_step=10)
    assert summary["status"] == "interrupted" and summary["steps"] == 10
    _assert_same_run(straight_run, run)


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_sweeps_both_models_then_compares_and_samples(tmp_path) -> None:
    # ++: Hydra composes the sweep's base config with the default model, which has no widths
    tiny = ("++model.widths=[4,8]", "++model.latent_dim=2", "trainer.threads=1")
    proc = run_cli(tmp_path, "-m", "model=autoencoder,vae", "trainer=debug", *tiny)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    runs = sorted(p for p in sweep.iterdir() if (p / "summary.json").is_file())
    assert len(runs) == 2
    assert all(json.loads((r / "summary.json").read_text())["status"] == "done" for r in runs)
    table = run_cli(tmp_path, "compare", str(sweep), "--csv", str(tmp_path / "t.csv"))
    assert table.returncode == 0, table.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert sorted(r["model"] for r in rows) == ["autoencoder", "vae"]
    vae = next(r for r in runs if "vae" in r.name)
    done = run_cli(tmp_path, "sample", str(vae), "n=4", "seed=7")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (vae / "figures" / "sample_best_seed7_n4.png").is_file()
