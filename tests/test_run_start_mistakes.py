"""Mistakes found only once a run starts: one message, exit 2, and the run folder's
summary.json and train.log say `failed` with the same message, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlexp.engine.builders import build_model
from dlexp.errors import DlexpError
from tests.conftest import run_cli


class TooWide(torch.nn.Module):
    """Expects 100 features: the data's images do not fit."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class ThreeScores(torch.nn.Module):
    """Ignores num_classes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(784, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class Lazy(torch.nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = torch.nn.LazyLinear(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


IMAGES = torch.zeros(2, 1, 28, 28)


def build(cls: type) -> torch.nn.Module:
    globals()[cls.__name__] = cls
    return build_model({"_target_": f"{__name__}.{cls.__name__}"}, {}, {"num_classes": 10}, IMAGES)


def test_a_model_that_cannot_take_the_data_is_named_with_the_shapes() -> None:
    with pytest.raises(
        DlexpError,
        match=r"model: TooWide cannot take this data's input \(a batch shaped \[2, 1, 28, 28\]\)",
    ):
        build(TooWide)


def test_a_model_with_the_wrong_number_of_scores_is_named() -> None:
    with pytest.raises(
        DlexpError, match=r"ThreeScores returns \[2, 3\].*must return \[batch, 10\]"
    ):
        build(ThreeScores)


def test_lazy_layers_still_get_their_shapes_before_training() -> None:
    model = build(Lazy)
    assert model.fc.weight.shape == (10, 784)


@pytest.mark.slow
def test_a_users_model_that_does_not_fit_fails_the_run_with_one_message(tmp_path: Path) -> None:
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "wide.yaml").write_text("_target_: mine.TooWide\n")
    (tmp_path / "mine.py").write_text(
        "import torch\n\nclass TooWide(torch.nn.Module):\n"
        "    def __init__(self, num_classes):\n        super().__init__()\n"
        "        self.fc = torch.nn.Linear(100, num_classes)\n\n"
        "    def forward(self, x):\n        return self.fc(x)\n"
    )
    import os

    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    done = run_cli(
        tmp_path, "--config-dir", "conf", "model=wide", "trainer=debug", "trainer.progress=none",
        PYTHONPATH=path,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output, output
    assert "model: TooWide cannot take this data's input" in output
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "cannot take this data's input" in summary["error"]
    assert "cannot take this data's input" in (run / "train.log").read_text()
