"""Run folders and checkpoints that name harmless "foreign" code, for the trust tests.

`foreign_code` is a module written into the test's tmp_path: building any of its classes writes
a marker file and raises `Built`, so a test sees that a path got as far as building the code
and nothing runs beyond it. The files are made by hand: nothing is trained.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlexp.engine.checkpoint import FORMAT, save_checkpoint
from tests.conftest import compose_plain

FOREIGN_CODE = '''
"""Harmless code from someone else: building any of it writes a marker file, then stops."""
from pathlib import Path

MARKER = Path(__file__).with_name("marker")


class Built(Exception):
    """The path built the foreign code; it need go no further."""


class Net:
    def __init__(self, *args, **kwargs):
        MARKER.write_text(type(self).__name__)
        raise Built(f"built {type(self).__name__}")


class Generator(Net):
    pass


class Pruner(Net):
    pass
'''
QUIET = ("trainer=debug", "trainer.progress=none")


class Files:
    """The marker, and run folders and checkpoints naming `foreign_code`, under `tmp`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.runs = tmp / "outputs" / "runs"
        self.marker = tmp / "code" / "marker"

    def cfg(self, *overrides: str) -> dict[str, Any]:
        return compose_plain(*QUIET, *overrides, tmp=self.tmp)

    def run_folder(self, name: str, cfg: dict[str, Any], checkpoint: dict[str, Any]) -> Path:
        run = self.runs / name
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        for ckpt in ("best", "last"):
            save_checkpoint({"format": FORMAT, **checkpoint}, run / "checkpoints" / f"{ckpt}.pt")
        return run

    @cached_property
    def classify_run(self) -> Path:
        cfg = self.cfg()
        cfg["model"]["_target_"] = "foreign_code.Net"
        return self.run_folder("classify", cfg, {"config": cfg})

    def gan_run(self, foreign_config: bool) -> Path:
        """A GAN run whose checkpoint's own config names a foreign generator, and its
        config.yaml too when `foreign_config`."""
        cfg = self.cfg("model=gan")
        generator = {"_target_": "foreign_code.Generator"}
        foreign = {**cfg, "model": {**cfg["model"], "generator": generator}}
        payload = {"config": foreign, "data": {"channels": 1, "image_size": 28}, "generator": {}}
        payload["train_state"] = {"epoch": 1}
        return self.run_folder("gan", foreign if foreign_config else cfg, payload)

    @cached_property
    def judge(self) -> Path:
        """A classifier checkpoint (outside any run folder) naming a foreign classifier."""
        path = self.tmp / "judges" / "best.pt"
        config = {"model": {"_target_": "foreign_code.Net"}, "data": {"name": "mnist_sample"}}
        data = {"mean": [0.5], "std": [0.5], "image_size": 28}
        payload = {"format": FORMAT, "model": {}, "config": config, "data": data}
        save_checkpoint({**payload, "classes": list("0123456789")}, path)
        return path

    def judged(self, trusted: bool) -> dict[str, Any]:
        """A GAN config judged by `judge`, with model.eval.trust_feature_checkpoint=`trusted`."""
        trust = f"model.eval.trust_feature_checkpoint={str(trusted).lower()}"
        return self.cfg("model=gan", f"model.eval.feature_checkpoint={self.judge}", trust)

    @cached_property
    def judged_gan_run(self) -> Path:
        """A GAN run whose config.yaml itself sets model.eval.trust_feature_checkpoint=true."""
        return self.run_folder("judged", self.judged(True), {})


def files(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Files]:
    """The body of a `files` fixture: `foreign_code` importable and not yet imported; after
    the test, gone again, with the log files a verb opened."""
    (tmp / "code").mkdir()
    (tmp / "code" / "foreign_code.py").write_text(FOREIGN_CODE)
    monkeypatch.syspath_prepend(str(tmp / "code"))
    monkeypatch.delitem(sys.modules, "foreign_code", raising=False)
    root = logging.getLogger()
    before = list(root.handlers)
    yield Files(tmp)
    sys.modules.pop("foreign_code", None)
    for handler in [h for h in root.handlers if h not in before]:  # resume's train.log
        root.removeHandler(handler)
        handler.close()


def own_configs(tmp: Path, target: str = "foreign_code.Net") -> Path:
    """A config folder of the user's own (`--config-dir`) whose model option names `target`."""
    conf = tmp / "my_configs"
    (conf / "model").mkdir(parents=True, exist_ok=True)
    (conf / "model" / "mine.yaml").write_text(f"_target_: {target}  # mine\nhidden: 8\n")
    return conf


def record(run: Path, *config_dirs: str | Path) -> None:
    """What Hydra writes into a run folder about the config folders it was started with."""
    sources = [{"path": str(d), "schema": "file", "provider": "command-line"} for d in config_dirs]
    (run / ".hydra").mkdir(exist_ok=True)
    (run / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"config_sources": sources}}})
    )
