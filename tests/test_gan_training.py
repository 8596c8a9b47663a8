"""GANs trained for real on small data: the Fréchet distance falls, the run folder holds the
sample grids, TensorBoard images and checkpoints, `dlexp sample` reproduces grids, and a resumed
run equals an uninterrupted one bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dlexp.cli.sample import main as sample_main
from dlexp.cli.train import train
from dlexp.config.resolvers import to_plain
from dlexp.tasks.registry import train as run_task
from tests import conftest
from tests.conftest import cli_env, latest_run, read_jsonl, run_cli, stop_then_resume
from tests.fakedata import cifar10_md5_check_skipped, write_cifar10
from tests.tbread import hparams_sessions, scalar_and_image_tags, scalars

pytestmark = pytest.mark.slow

QUIET = ("trainer.progress=none",)
# DCGAN at half width: on 3,600 digits it makes recognisable strokes within two epochs on a CPU
SMALL_DCGAN = ("model=dcgan", "model.generator.features=32", "model.discriminator.features=32")


def compose_cfg(tmp: Path, *overrides: str):
    """The shipped configs with outputs and data under `tmp`, quiet (for module fixtures)."""
    return conftest.compose_cfg(tmp, *QUIET, *overrides)


@pytest.fixture(scope="module")
def feature_checkpoint(tmp_path_factory) -> Path:
    """A LeNet that dlexp trained on the same digits: the feature network of the evaluation."""
    tmp = tmp_path_factory.mktemp("lenet")
    run = tmp / "run"
    run.mkdir()
    train(compose_cfg(tmp, "trainer.epochs=2", "trainer.test_after_fit=false"), run_dir=run)
    return run / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, feature_checkpoint) -> tuple[Path, float, float]:
    tmp = tmp_path_factory.mktemp("dcgan")
    run = tmp / "run"
    run.mkdir()
    cfg = compose_cfg(
        tmp,
        *SMALL_DCGAN,
        "trainer.epochs=2",
        "trainer.log_every_n_steps=10",
        "model.fixed_samples=16",
        f"model.eval.feature_checkpoint={feature_checkpoint}",
    )
    t0 = time.perf_counter()
    result = train(cfg, run_dir=run)
    return run, result, time.perf_counter() - t0


def test_training_lowers_the_frechet_distance_clearly(gan_run) -> None:
    run, result, seconds = gan_run
    records = read_jsonl(run / "metrics.jsonl")
    (untrained,) = [r for r in records if r["kind"] == "eval"]
    assert untrained["step"] == 0 and untrained["epoch"] == 0
    before = untrained["eval/frechet_distance"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    after = [r["eval/frechet_distance"] for r in epochs]
    print(f"Fréchet distance: untrained {before:.1f}, epochs {after}, {seconds:.1f}s")
    assert result == min(after)
    assert result < 0.5 * before, f"{before:.1f} → {after}: the generator did not learn"
    # the classifier is far less sure about untrained noise than about real digits
    assert untrained["real/confidence_entropy"] < untrained["eval/confidence_entropy"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["best"]["value"] == pytest.approx(result)
    assert summary["monitor"] == {"metric": "eval/frechet_distance", "mode": "min"}
    assert summary["reference"]["untrained/frechet_distance"] == pytest.approx(before)
    assert summary["steps"] == 2 * 56 and summary["generator_steps"] == 2 * 56
    assert summary["samples_per_sec"] > 0 and summary["environment"]["torch"]


def test_run_folder_has_sample_grids_tensorboard_images_and_checkpoints(gan_run) -> None:
    from PIL import Image

    run, _, _ = gan_run
    for epoch in (0, 1, 2):  # 0: the untrained generator
        with Image.open(run / "figures" / f"samples_epoch_{epoch:03d}.png") as img:
            assert img.size == (4 * 30 + 2, 4 * 30 + 2)  # 16 images of 28 px, 2 px padding
    scalar_tags, image_tags = scalar_and_image_tags(run)
    logged = {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"}
    evaluated = {"eval/frechet_distance", "eval/confidence_entropy", "eval/coverage_entropy"}
    # TensorBoard: D and G loss in one group, D(x) with D(G(z)) in another
    shown = {"loss/train/d_loss", "loss/train/g_loss", "output/train/d_real", "output/train/d_fake"}
    assert shown | evaluated <= scalar_tags
    assert "samples/fixed_noise" in image_tags
    assert [step for step, _ in scalars(run, "eval/frechet_distance")] == [0, 56, 112]
    steps = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "step"]
    assert all(logged <= r.keys() for r in steps)
    assert all(0 < r["train/d_real"] < 1 and 0 < r["train/d_fake"] < 1 for r in steps)

    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    for key in ("generator", "discriminator", "optimizer_g", "optimizer_d", "fixed_noise"):
        assert key in ckpt, key
    assert ckpt["fixed_noise"].shape == (16, 100)
    assert ckpt["train_state"]["epoch"] == ckpt["train_state"]["best_epoch"]
    assert ckpt["data"] == {
        "name": "mnist_sample",
        "channels": 1,
        "image_size": 28,
        "mean": [0.5],
        "std": [0.5],
    }
    from dlexp.models.gan import DCGenerator

    DCGenerator(latent_dim=100, channels=1, image_size=28, features=32).load_state_dict(
        ckpt["generator"]
    )


def test_sample_reproduces_the_grid_for_a_seed(gan_run, tmp_path, capsys) -> None:
    run, _, _ = gan_run
    paths = [tmp_path / name for name in ("a.png", "b.png", "c.png")]
    for path, seed in zip(paths, (3, 3, 4), strict=True):
        assert sample_main([str(run), "n=9", f"seed={seed}", f"out={path}"]) == 0
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b, "same seed, same grid"
    assert a != c, "another seed, another grid"
    assert f"to {paths[0]}" in capsys.readouterr().out
    assert sample_main([str(run), "ckpt=last"]) == 0
    assert (run / "figures" / "sample_last_seed0_n64.png").is_file()


def test_sample_bad_input_gets_one_message_and_exit_2(
    gan_run, feature_checkpoint, tmp_path, capsys
) -> None:
    run, _, _ = gan_run
    lenet_run = feature_checkpoint.parent.parent
    no_best = tmp_path / "no_best"
    (no_best / "checkpoints").mkdir(parents=True)
    (no_best / "config.yaml").write_text((run / "config.yaml").read_text())
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text((run / "config.yaml").read_text())
    (broken / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    cases = {
        "": "usage: dlexp sample",
        str(tmp_path / "nowhere"): "not a dlexp run folder",
        str(lenet_run): "not a GAN run",
        f"{run} n=0": "n=0: must be from 1",
        f"{run} n=many": "expected an integer",
        f"{run} seed=-1": "seed=-1",
        f"{run} ckpt=middle": "must be one of best, last",
        f"{run} sed=3": "Did you mean seed=",
        f"{run} out=grid.txt": "out=grid.txt: give a file name ending in .png",
        f"{run} out={tmp_path}": "give a file name ending in .png",
        f"{run} out=/proc/dlexp/grid.png": "cannot write /proc/dlexp/grid.png",
        str(no_best): "no checkpoints/best.pt",
        str(broken): "is not a PyTorch checkpoint",
    }
    for args, phrase in cases.items():
        code = sample_main(args.split())
        err = " ".join(capsys.readouterr().err.split())
        assert code == 2, (args, err)
        assert phrase in err and "Traceback" not in err, (args, err)
    # and as a user runs it
    proc = subprocess.run(
        [sys.executable, "-m", "dlexp.cli.sample", str(lenet_run)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=cli_env(tmp_path),
    )
    assert proc.returncode == 2 and "not a GAN run" in proc.stderr, proc.stderr


def test_sample_checks_the_checkpoints_own_config_for_foreign_code(gan_run, tmp_path, capsys):
    # the generator is built from the config inside best.pt, not from config.yaml
    run, _, _ = gan_run
    copy = tmp_path / "copy"
    (copy / "checkpoints").mkdir(parents=True)
    (copy / "config.yaml").write_text((run / "config.yaml").read_text())
    payload = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    payload["config"]["model"]["generator"]["_target_"] = "somebody.elses.Generator"
    torch.save(payload, copy / "checkpoints" / "best.pt")
    assert sample_main([str(copy), "n=4"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "best.pt names code outside dlexp" in err and "somebody.elses.Generator" in err
    assert not (copy / "figures").exists()
    assert sample_main([str(copy), "n=4", "--trust"]) == 2  # trusted, but it doesn't exist
    assert "somebody" in capsys.readouterr().err


# -- resume --------------------------------------------------------------------------------------

EXACT = (
    "model=gan",
    "model.generator.hidden_sizes=[64,128]",
    "model.discriminator.hidden_sizes=[64]",
    "model.n_critic=2",  # the G-step schedule must survive the resume too
    "model.label_smoothing=0.1",
    "model.eval.num_samples=100",
    "trainer.deterministic=true",
    "trainer.batch_size=32",
    "trainer.limit_train_batches=7",
    "trainer.log_every_n_steps=4",
)


def _comparable(records: list[dict]) -> list[dict]:
    drop = {"time", "throughput/samples_per_sec"}
    return [{k: v for k, v in r.items() if k not in drop} for r in records]


def _assert_same_run(a: Path, b: Path) -> None:
    ca = torch.load(a / "checkpoints" / "last.pt", weights_only=True)
    cb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)
    for net in ("generator", "discriminator"):
        assert ca[net].keys() == cb[net].keys()
        for key in ca[net]:
            assert torch.equal(ca[net][key], cb[net][key]), f"{net}.{key} differs after resume"
    assert ca["train_state"]["step"] == cb["train_state"]["step"] == 14
    assert ca["train_state"]["g_steps"] == 7
    assert _comparable(read_jsonl(a / "metrics.jsonl")) == _comparable(
        read_jsonl(b / "metrics.jsonl")
    )
    sa, sb = (json.loads((run / "summary.json").read_text()) for run in (a, b))
    assert sb["status"] == "done"
    for key in ("best", "final", "reference", "epochs_completed", "steps", "generator_steps"):
        assert sa[key] == sb[key], key
    assert "untrained/frechet_distance" in sb["reference"]
    _, groups = hparams_sessions(b)  # the HParams dashboard: one run, and it ended well
    assert len(groups) == 1 and groups[0]["sessions"][0]["status"] == "STATUS_SUCCESS"


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, feature_checkpoint) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("straight")
    eval_ckpt = f"model.eval.feature_checkpoint={feature_checkpoint}"
    run = tmp / "run"
    run.mkdir()
    run_task(to_plain(compose_cfg(tmp, *EXACT, eval_ckpt, "trainer.epochs=2")), run, {})
    return run, feature_checkpoint


def test_one_epoch_then_resume_equals_two_epochs(straight_run, tmp_path) -> None:
    straight, feature_checkpoint = straight_run
    eval_ckpt = f"model.eval.feature_checkpoint={feature_checkpoint}"
    run = tmp_path / "run"
    run.mkdir()
    run_task(to_plain(compose_cfg(tmp_path, *EXACT, eval_ckpt, "trainer.epochs=1")), run, {})
    cfg = to_plain(compose_cfg(tmp_path, *EXACT, eval_ckpt, "trainer.epochs=2"))
    run_task(cfg, run, {}, resume=run / "checkpoints" / "last.pt")
    _assert_same_run(straight, run)


def test_interrupted_mid_epoch_then_resumed_equals_uninterrupted(
    straight_run, tmp_path, monkeypatch
) -> None:
    straight, feature_checkpoint = straight_run
    eval_ckpt = f"model.eval.feature_checkpoint={feature_checkpoint}"
    cfg = to_plain(compose_cfg(tmp_path, *EXACT, eval_ckpt, "trainer.epochs=2"))
    run = tmp_path / "run"
    # step 10: in epoch 2, between G steps' log windows (4, 8, 12) — everything must carry over
    summary = stop_then_resume(cfg, run, monkeypatch, at_step=10)
    assert summary["status"] == "interrupted" and summary["steps"] == 10
    _assert_same_run(straight, run)


# -- other data, the CLI ---------------------------------------------------------------------------


def test_dcgan_on_cifar10_shaped_data(make_cfg, tmp_path) -> None:
    """3-channel 32 px images: `model=dcgan data=cifar10` just works; without a feature network
    the run returns its last generator loss."""
    write_cifar10(tmp_path / "data", n_per_batch=20, n_test=10)
    cfg = make_cfg(
        "model=dcgan",
        "data=cifar10",
        "model.generator.features=8",
        "model.discriminator.features=8",
        "trainer.batch_size=16",
        "trainer.epochs=2",
        *QUIET,
    )
    run = tmp_path / "run"
    run.mkdir()
    with cifar10_md5_check_skipped():
        result = train(cfg, run_dir=run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done"
    assert summary["monitor"]["metric"] == "train/g_loss"
    assert result == pytest.approx(summary["final"]["train/g_loss"])
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert (ckpt["data"]["channels"], ckpt["data"]["image_size"]) == (3, 32)
    assert ckpt["train_state"]["epoch"] == 2, "without evaluation best.pt is the last epoch"
    assert (run / "figures" / "samples_epoch_002.png").is_file()


def test_cli_trains_a_gan_and_samples_from_it(tmp_path) -> None:
    proc = run_cli(tmp_path, "model=gan", "trainer=debug", "model.fixed_samples=4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = latest_run(tmp_path)
    assert run.name.endswith("_gan")
    assert OmegaConf.load(run / "config.yaml").model.task == "gan"
    assert json.loads((run / "summary.json").read_text())["status"] == "done"
    assert "D(G(z))" in proc.stdout, "the epoch table shows D's view of real and fake"
    done = run_cli(tmp_path, "sample", "latest", "n=4", "seed=7")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "figures" / "sample_best_seed7_n4.png").is_file()
