"""torchvision and timm classifiers by name, and models built by a function `_target_`.

Three ways to bring a model: a dlexp config (model=lenet), model=torchvision|timm model.arch=...,
and a `_target_` class or function in the user's own --config-dir. No test downloads anything:
pretrained weights come from a cache the test writes, and "no internet" is an address that
refuses connections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from dlexp.cli.train import train
from dlexp.engine.builders import build_model
from dlexp.errors import DlexpError
from dlexp.models import hub
from dlexp.models.adapt import adapt_input_conv
from dlexp.models.hub import timm_classifier, torchvision_classifier
from dlexp.tasks.registry import validate
from tests.conftest import REPO, cli_env, latest_run, read_jsonl
from tests.fakedata import write_cifar10
from tests.test_configs import compose_plain

pytestmark = pytest.mark.slow

TINY = ("trainer=debug", "trainer.batch_size=16", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.test_after_fit=false",
        "trainer.figures_every_n_epochs=null", "trainer.progress=none")  # fmt: skip
INPUTS = {"in_channels": 1, "num_classes": 10, "image_size": 28}


def run_cifar_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`dlexp ARGS` as a user runs it, on the CIFAR-10 files the test wrote (whose md5 sums
    cannot match the real release: torchvision's check is relaxed to 'the file exists')."""
    if not (tmp_path / "data" / "cifar-10-batches-py").is_dir():
        write_cifar10(tmp_path / "data", n_per_batch=12, n_test=20)
    script = textwrap.dedent(f"""
        import sys
        from tests.fakedata import cifar10_md5_check_skipped
        from dlexp.cli.main import main
        sys.argv = ["dlexp", *{list(args)!r}]
        with cifar10_md5_check_skipped():
            main()
    """)
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=cli_env(tmp_path, PYTHONPATH=path),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


# -- the three ways, end to end ------------------------------------------------------------------


def test_torchvision_resnet18_trains_on_cifar10_and_evaluates(tmp_path: Path) -> None:
    proc = run_cifar_cli(
        tmp_path, "model=torchvision", "model.arch=resnet18", "data=cifar10", *TINY
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = latest_run(tmp_path)
    summary = summary_of(run)
    assert summary["status"] == "done"
    assert summary["num_params"] == 11_181_642, "ResNet-18 with a 10-class head"
    # a plain torchvision ResNet-18: anyone can load the checkpoint without dlexp
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert state["config"]["model"]["arch"] == "resnet18"
    torchvision.models.resnet18(num_classes=10).load_state_dict(state["model"])

    evaluated = run_cifar_cli(tmp_path, "eval", "latest")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (run / "eval_test_best.json").is_file()


def test_timm_resnet18_trains_on_cifar10(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    proc = run_cifar_cli(tmp_path, "model=timm", "model.arch=resnet18", "data=cifar10", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = latest_run(tmp_path)
    assert summary_of(run)["status"] == "done"
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    timm.create_model("resnet18", num_classes=10).load_state_dict(state["model"])


def test_a_function_target_from_the_users_config_dir(tmp_path: Path) -> None:
    """The issue's own example: `_target_: torchvision.models.resnet18`. The function passes
    **kwargs on to ResNet, which takes num_classes but not in_channels or image_size: those
    are left out, as for a class that does not take them."""
    (tmp_path / "cfg" / "model").mkdir(parents=True)
    (tmp_path / "cfg" / "model" / "resnet.yaml").write_text(
        "_target_: torchvision.models.resnet18\n"
    )
    proc = run_cifar_cli(tmp_path, "--config-dir", "cfg", "model=resnet", "data=cifar10", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(latest_run(tmp_path) / "checkpoints" / "best.pt", weights_only=True)
    assert state["model"]["fc.weight"].shape == (10, 512)


def test_a_users_function_gets_only_the_arguments_it_takes(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent("""
        from torch import nn

        def tiny(num_classes, width=4):
            return nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.ReLU(),
                                 nn.Linear(width, num_classes))
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    example = torch.zeros(2, 1, 28, 28)
    model = build_model({"_target_": "my_models.tiny", "width": 6}, {}, INPUTS, example)
    assert model(example).shape == (2, 10) and model[1].out_features == 6
    with pytest.raises(DlexpError, match="tiny does not take depth. Valid keys: num_classes"):
        build_model({"_target_": "my_models.tiny", "depth": 2}, {}, INPUTS, example)
    with pytest.raises(DlexpError, match="no dropout argument"):
        build_model({"_target_": "my_models.tiny"}, {"dropout": 0.5}, INPUTS, example)
    (tmp_path / "my_numbers.py").write_text("def not_a_model(num_classes):\n    return 3\n")
    with pytest.raises(DlexpError, match="did not build an nn.Module"):
        build_model({"_target_": "my_numbers.not_a_model"}, {}, INPUTS)


def test_an_unimportable_target_asks_for_a_class_or_a_function() -> None:
    with pytest.raises(DlexpError, match="a class or a function, e.g. dlexp.models.cnn.LeNet5"):
        build_model({"_target_": "torchvision.models.resnet_eighteen"}, {}, INPUTS)


# -- names ---------------------------------------------------------------------------------------


def test_an_unknown_torchvision_arch_gets_did_you_mean_and_exit_2(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    proc = run_cli(tmp_path, "model=torchvision", "model.arch=resnet181", *TINY)
    assert proc.returncode == 2
    assert "torchvision has no classifier 'resnet181'. Did you mean resnet18" in proc.stderr
    assert "Traceback" not in proc.stderr
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    summary = summary_of(run)
    assert summary["status"] == "failed" and "Did you mean resnet18" in summary["error"]


def test_unknown_names_are_explained() -> None:
    with pytest.raises(ValueError, match="is not an image classifier"):
        torchvision_classifier("fasterrcnn_resnet50_fpn", 10)
    with pytest.raises(ValueError, match="no weights 'IMAGENET1K_V9'. Valid: IMAGENET1K_V1"):
        torchvision_classifier("resnet18", 10, weights="IMAGENET1K_V9")
    with pytest.raises(ValueError, match="resnet18 takes no argument 'dropout'"):
        torchvision_classifier("resnet18", 10, dropout=0.2)
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="timm has no model 'resnet181'. Did you mean resnet18"):
        timm_classifier("resnet181", 10)


# -- adapting the network to the data -------------------------------------------------------------


def test_a_gray_image_gives_what_the_rgb_network_gives_it_repeated() -> None:
    """The one documented way to feed 1 channel to a pretrained 3-channel network."""
    torch.manual_seed(0)
    rgb = torchvision.models.resnet18(num_classes=10).eval()
    gray = torchvision.models.resnet18(num_classes=10).eval()
    gray.load_state_dict(rgb.state_dict())
    adapt_input_conv(gray, 1, pretrained=True)
    assert gray.conv1.in_channels == 1
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(gray(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-5)


def test_small_input_keeps_32_px_maps_large() -> None:
    model = torchvision_classifier("resnet18", 10, in_channels=3, image_size=32, small_input=True)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        maps = nn.Sequential(*list(model.children())[:-2])(torch.zeros(1, 3, 32, 32))
    assert maps.shape[-2:] == (4, 4), "the usual stem leaves 1x1 here"
    with pytest.raises(ValueError, match="no ResNet-style stem"):
        torchvision_classifier("convnext_tiny", 10, image_size=32, small_input=True)


def test_an_image_size_the_network_cannot_take_is_named_at_build_time() -> None:
    with pytest.raises(ValueError, match=r"squeezenet1_1 cannot read 16 px.*model.image_size=224"):
        torchvision_classifier("squeezenet1_1", 10, image_size=16)


# -- pretrained weights, offline -----------------------------------------------------------------


def cache_resnet18(torch_home: Path) -> dict[str, torch.Tensor]:
    """A 'pretrained' ResNet-18 in torch.hub's cache, under the name torchvision downloads."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18().state_dict()
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / Path(url).name)
    return state


def test_torchvision_weights_load_from_the_cache_and_fit_the_data(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(hub, "check_reachable", lambda *a: pytest.fail("the cache was not used"))
    saved = cache_resnet18(tmp_path)
    model = torchvision_classifier(
        "resnet18", 10, in_channels=1, image_size=28, weights="IMAGENET1K_V1"
    )
    assert torch.equal(model.layer1[0].conv1.weight, saved["layer1.0.conv1.weight"])
    assert torch.allclose(model.conv1.weight, saved["conv1.weight"].sum(1, keepdim=True))
    assert model.fc.out_features == 10, "ImageNet's 1000-class head is replaced"


def test_the_weights_option_reaches_torchvision(monkeypatch) -> None:
    seen = {}

    def resnet18(**kwargs):
        seen.update(kwargs)
        return torchvision.models.resnet18(num_classes=1000)

    monkeypatch.setattr(torchvision.models, "get_model_builder", lambda name: resnet18)
    monkeypatch.setattr(hub, "check_reachable", lambda *a: None)
    cfg = compose_plain("model=torchvision", "model.weights=IMAGENET1K_V1")
    assert validate(cfg) == []
    model = build_model(cfg["model"], cfg["regularization"], {**INPUTS, "in_channels": 3})
    assert seen["weights"] == torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert "num_classes" not in seen, "the pretrained head is built with ImageNet's classes"
    assert model.fc.out_features == 10


def test_without_internet_a_clear_message_within_seconds(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    real = hub.check_reachable
    # an address that refuses connections stands for a machine without internet
    monkeypatch.setattr(
        hub, "check_reachable", lambda url, *a: real("http://127.0.0.1:9/resnet18.pth", *a)
    )
    start = time.monotonic()
    with pytest.raises(DlexpError) as failed:
        torchvision_classifier("resnet18", 10, weights="DEFAULT")
    assert time.monotonic() - start < 10
    message = str(failed.value)
    assert "cannot download resnet18's DEFAULT weights" in message
    assert str(tmp_path / "hub" / "checkpoints") in message and "model.weights=null" in message


def test_a_download_that_fails_midway_is_reported(tmp_path, monkeypatch) -> None:
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(hub, "check_reachable", lambda *a: None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(DlexpError, match="cannot download resnet18's DEFAULT weights .*URLError"):
        torchvision_classifier("resnet18", 10, weights="DEFAULT")


def test_timm_pretrained_loads_from_the_hugging_face_cache(tmp_path, monkeypatch) -> None:
    timm = pytest.importorskip("timm")
    from huggingface_hub import constants
    from safetensors.torch import save_file

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub, "check_reachable", lambda *a: pytest.fail("the cache was not used"))
    torch.manual_seed(2)
    saved = timm.create_model("resnet18").state_dict()
    repo = tmp_path / (
        "models--" + timm.models.get_pretrained_cfg("resnet18").hf_hub_id.replace("/", "--")
    )
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file(saved, str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))
    model = timm_classifier("resnet18", 10, in_channels=1, image_size=32, pretrained=True)
    assert torch.equal(model.layer1[0].conv1.weight, saved["layer1.0.conv1.weight"])
    assert torch.allclose(model.conv1.weight, saved["conv1.weight"].sum(1, keepdim=True))
    assert model.fc.out_features == 10


def test_timm_without_internet_says_so(tmp_path, monkeypatch) -> None:
    pytest.importorskip("timm")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub, "_timm_hub_url", lambda: "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(DlexpError) as failed:
        timm_classifier("resnet18", 10, pretrained=True)
    assert "cannot download resnet18's pretrained weights" in str(failed.value)
    assert f"Hugging Face cache ({tmp_path})" in str(failed.value)
    assert "model.pretrained=false" in str(failed.value)
    assert time.monotonic() - start < 10


def test_model_timm_without_timm_names_the_extra(monkeypatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "timm" else find_spec(name, *a),
    )
    problems = validate(compose_plain("model=timm"))
    assert problems == [
        "model=timm needs the timm package: pip install 'dlexp[timm]' (or pip install timm)"
    ]
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    with pytest.raises(DlexpError, match=r"pip install 'dlexp\[timm\]'"):
        timm_classifier("resnet18", 10)


# -- every option works with them -----------------------------------------------------------------


def test_a_torchvision_network_learns(make_cfg, tmp_path) -> None:
    """Overfitting one batch: the training loss falls well below chance's log(10)."""
    write_cifar10(tmp_path / "data", n_per_batch=4, n_test=4)
    from tests.fakedata import cifar10_md5_check_skipped

    cfg = make_cfg(
        "model=torchvision", "model.arch=resnet18", "data=cifar10", "data.augment=none",
        "trainer.overfit_batches=1", "trainer.batch_size=16", "trainer.epochs=10",
        "trainer.monitor=train/loss", "trainer.monitor_mode=min", *TINY[-3:],
    )  # fmt: skip
    (tmp_path / "run").mkdir()
    with cifar10_md5_check_skipped():
        train(cfg, run_dir=tmp_path / "run")
    epochs = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "epoch"]
    first, last = epochs[0]["train/loss"], epochs[-1]["train/loss"]
    assert last < 0.3 * first and epochs[-1]["train/acc"] > 0.9, (first, last)


def test_bf16_channels_last_and_dropout(make_cfg, tmp_path) -> None:
    cfg = make_cfg(
        "model=torchvision", "model.arch=mobilenet_v3_small", "trainer.precision=bf16",
        "trainer.channels_last=true", "regularization=[dropout]", *TINY,
    )  # fmt: skip
    (tmp_path / "run").mkdir()
    train(cfg, run_dir=tmp_path / "run")
    assert summary_of(tmp_path / "run")["status"] == "done"


def test_a_sweep_over_architectures_and_resume(tmp_path: Path) -> None:
    """The architecture is a hyperparameter: swept, and one HParams column."""
    from tests.conftest import run_cli
    from tests.tbread import hparams_sessions

    proc = run_cli(tmp_path, "-m", "model=torchvision", "model.arch=resnet18,squeezenet1_1", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    jobs = json.loads((sweep / "manifest.json").read_text())["jobs"]
    assert [jobs[n]["status"] for n in ("0", "1")] == ["done", "done"]
    _, groups = hparams_sessions(sweep)
    assert {g["hparams"]["model.arch"] for g in groups} == {"resnet18", "squeezenet1_1"}

    # one more epoch of the first job, in its own folder
    run = Path(jobs["0"]["run_dir"])
    resumed = run_cli(tmp_path, "resume", str(run), "trainer.epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert summary_of(run)["epochs_completed"] == 2 and summary_of(run)["sessions"] == 2
