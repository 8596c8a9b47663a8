"""Code named in a file runs only when the user trusts it, on every path that builds from one.

Each path gets a run folder or checkpoint naming harmless foreign code that writes a marker
file when it is built (tests/foreign.py). Without the path's trust option it must refuse: one
message naming the code and the option, exit 2, no marker, nothing written. With the option it
must build that code. A new verb that builds from a file (predict, export, ...) is one more
line in PATHS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from dlexp.cli.main import run_verb
from dlexp.cli.train import train
from dlexp.config.trust import check_trust, foreign_targets
from dlexp.engine.frechet import TRUST_OPTION
from dlexp.errors import DlexpError
from dlexp.tracking.console import print_error
from tests import foreign
from tests.foreign import Files

Call = Callable[[bool], int]  # trusted? -> exit status


@pytest.fixture
def files(tmp_path, monkeypatch):
    yield from foreign.files(tmp_path, monkeypatch)


def verb(name: str, run: Path) -> Call:
    return lambda trusted: run_verb(name, [str(run), *(["--trust"] if trusted else [])])


def with_args(name: str, run: Path, *args: str) -> Call:
    return lambda trusted: run_verb(name, [str(run), *args, *(["--trust"] if trusted else [])])


def classifier_run(files: Files, foreign_config: bool) -> Path:
    """A classification run whose checkpoint's own config names a foreign model, and its
    config.yaml too when `foreign_config`: what predict and export build from."""
    cfg = files.cfg()
    foreign = {**cfg, "model": {**cfg["model"], "_target_": "foreign_code.Net"}}
    data = {"mean": [0.5], "std": [0.5], "image_size": 32, "input_size": 28}
    payload = {"config": foreign, "model": {}, "classes": list("0123456789"), "data": data}
    payload["train_state"] = {"epoch": 1}
    return files.run_folder("classifier", foreign if foreign_config else cfg, payload)


def predict(foreign_config: bool) -> Callable[[Files], Call]:
    def make(files: Files) -> Call:
        digit = files.tmp / "digit.png"
        Image.new("L", (28, 28)).save(digit)
        out = f"out={files.tmp / 'predictions.csv'}"
        return with_args("predict", classifier_run(files, foreign_config), str(digit), out)

    return make


def train_judged(files: Files) -> Call:
    """`dlexp model=gan model.eval.feature_checkpoint=<judge> [...trust...=true]`, in-process."""

    def call(trusted: bool) -> int:
        run_dir = files.runs / "new"
        run_dir.mkdir(parents=True)  # what Hydra does before train()
        try:
            train(OmegaConf.create(files.judged(trusted)), run_dir=run_dir)
        except DlexpError as exc:  # what `dlexp` (train.hydra_main) does with it: exit 2
            print_error(str(exc))
            return 2
        return 0

    return call


def train_judged_vae(files: Files) -> Call:
    """`dlexp model=vae model.eval.feature_checkpoint=<judge> [...trust...=true]`, in-process."""

    def call(trusted: bool) -> int:
        run_dir = files.runs / "new_vae"
        run_dir.mkdir(parents=True)
        trust = f"model.eval.trust_feature_checkpoint={str(trusted).lower()}"
        cfg = files.cfg("model=vae", f"model.eval.feature_checkpoint={files.judge}", trust)
        try:
            train(OmegaConf.create(cfg), run_dir=run_dir)
        except DlexpError as exc:
            print_error(str(exc))
            return 2
        return 0

    return call


def vae_run(files: Files) -> Path:
    """A VAE run whose checkpoint's own config names a foreign network."""
    cfg = files.cfg("model=vae")
    foreign = {**cfg, "model": {**cfg["model"], "_target_": "foreign_code.Net"}}
    payload = {"config": foreign, "data": {"channels": 1, "image_size": 28}, "model": {}}
    return files.run_folder("vae", cfg, {**payload, "train_state": {"epoch": 1}})


@dataclass(frozen=True)
class Route:
    make: Callable[[Files], Call]
    names: str = "foreign_code."  # what the refusal must name, besides `flag`
    flag: str = "--trust"
    trains: bool = False  # a refused training run still leaves a failed run's folder


SWITCH = "model.eval.trust_feature_checkpoint=true"
PATHS = {
    "resume": Route(lambda f: verb("resume", f.classify_run)),
    "rerun": Route(lambda f: verb("rerun", f.classify_run)),
    "eval": Route(lambda f: verb("eval", f.classify_run)),
    "sample": Route(lambda f: verb("sample", f.gan_run(foreign_config=True))),
    "sample: the checkpoint's config": Route(lambda f: verb("sample", f.gan_run(False))),
    "predict": Route(predict(foreign_config=True)),
    "predict: the checkpoint's config": Route(predict(foreign_config=False)),
    "export": Route(lambda f: with_args("export", classifier_run(f, True), "format=torchscript")),
    "export: the checkpoint's config": Route(
        lambda f: with_args("export", classifier_run(f, False), "format=torchscript")
    ),
    "export: a GAN's generator": Route(
        lambda f: with_args("export", f.gan_run(False), "format=torchscript")
    ),
    "training: feature_checkpoint": Route(train_judged, flag=TRUST_OPTION, trains=True),
    "sample: a VAE checkpoint's config": Route(lambda f: verb("sample", vae_run(f))),
    "training a VAE: feature_checkpoint": Route(train_judged_vae, flag=TRUST_OPTION, trains=True),
    "resume: the switch in config.yaml": Route(lambda f: verb("resume", f.judged_gan_run), SWITCH),
    "rerun: the switch in config.yaml": Route(lambda f: verb("rerun", f.judged_gan_run), SWITCH),
}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", PATHS)
def test_without_trust_the_path_refuses_and_builds_nothing(name, files, capsys):
    route = PATHS[name]
    call = route.make(files)
    before = snapshot(files.tmp / "outputs")
    assert call(False) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert route.names in err and f"pass {route.flag}" in err, err
    assert not files.marker.exists()
    if not route.trains:
        assert snapshot(files.tmp / "outputs") == before, "a refused command changes nothing"


@pytest.mark.parametrize("name", PATHS)
def test_with_trust_the_path_builds_it(name, files):
    call = PATHS[name].make(files)
    with pytest.raises(Exception, match="built"):
        call(True)
    assert files.marker.is_file()


def test_the_message_names_each_foreign_target_the_file_and_the_flag(tmp_path):
    cfg = {
        "model": {"_target_": "a.Net", "blocks": [{"_target_": "b.Block"}, {"_target_": "a.Net"}]},
        "optim": {"_target_": "torch.optim.SGD"},
        "data": {"transform": {"_target_": "torchvision.transforms.ToTensor"}},
    }
    assert foreign_targets(cfg) == ["a.Net", "b.Block"]
    with pytest.raises(DlexpError) as err:
        check_trust(cfg, trusted=False, source=tmp_path / "x.yaml", flag="--allow-it")
    assert str(err.value).startswith(f"{tmp_path / 'x.yaml'} names code outside dlexp, torch")
    assert "a.Net, b.Block" in str(err.value) and str(err.value).endswith("pass --allow-it.")
    check_trust(cfg, trusted=True, source=tmp_path / "x.yaml")
    # a switch that trusts another file counts only where the config is to be trained
    switched = {"model": {"eval": {"trust_feature_checkpoint": True}}}
    check_trust(switched, trusted=False, source="config.yaml")
    with pytest.raises(DlexpError, match="sets model.eval.trust_feature_checkpoint=true"):
        check_trust(switched, trusted=False, source="config.yaml", trains=True)
