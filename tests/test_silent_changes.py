"""What a run does is what its config says, and what dlexp decides is recorded as decided.

A one-cycle schedule leaves the optimizer's momentum and betas alone unless asked to cycle
them; a value the config leaves to dlexp (null, auto) is recorded in summary.json under
"effective" and in HParams as the value that ran, while config.yaml keeps what was asked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlexp.config.derived import monitor_mode
from dlexp.config.resolvers import to_plain
from dlexp.engine.builders import build_optimizer, build_scheduler
from dlexp.tracking.runlog import hparams_of
from dlexp.tracking.summary import effective_settings
from tests.conftest import latest_run, run_cli


def onecycle(make_cfg, *overrides: str):
    cfg = to_plain(make_cfg("scheduler=onecycle", *overrides))
    model = torch.nn.Linear(4, 2)
    optimizer = build_optimizer(cfg["optim"], model)
    scheduler = build_scheduler(cfg["scheduler"], optimizer, steps_per_epoch=10, epochs=2)
    return cfg, model, optimizer, scheduler


@pytest.mark.parametrize(
    ("optim", "key", "configured"),
    [("sgd", "momentum", 0.0), ("rmsprop", "momentum", 0.0), ("momentum", "momentum", 0.9),
     ("adam", "betas", (0.9, 0.999)), ("adamw", "betas", (0.9, 0.999))],
)  # fmt: skip
def test_onecycle_keeps_the_configured_momentum(make_cfg, optim, key, configured) -> None:
    cfg, model, optimizer, scheduler = onecycle(make_cfg, f"optim={optim}")
    for _ in range(12):  # through the peak and into the annealing
        assert optimizer.param_groups[0][key] == configured
        model(torch.ones(1, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
    ran = effective_settings(cfg, device="cpu", grad_clip=None, optimizers={"optim": optimizer})
    assert ran[f"optim.{key}"] == (list(configured) if key == "betas" else configured)
    assert (
        ran["scheduler.cycle_momentum"] is False and ran["scheduler.max_lr"] == cfg["optim"]["lr"]
    )


def test_cycling_the_momentum_is_an_option_and_recorded(make_cfg) -> None:
    overrides = ("optim=sgd", "scheduler.cycle_momentum=true", "scheduler.max_momentum=0.9")
    cfg, _, optimizer, _ = onecycle(make_cfg, *overrides)
    assert optimizer.param_groups[0]["momentum"] == 0.9  # the cycle starts at its top
    ran = effective_settings(cfg, device="cpu", grad_clip=None, optimizers={"optim": optimizer})
    assert ran["optim.momentum"] == 0.9 and ran["scheduler.cycle_momentum"] is True
    assert cfg["optim"]["momentum"] == 0.0  # config.yaml keeps what was asked


def test_a_model_families_default_clip_is_recorded_as_the_value_used(
    tmp_path: Path, make_cfg
) -> None:
    done = run_cli(
        tmp_path,
        "model=lstm",
        "trainer=debug",
        "trainer.progress=none",
        "trainer.test_after_fit=false",
    )
    assert done.returncode == 0, done.stderr
    run = latest_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    ran = summary["effective"]
    assert ran["trainer.grad_clip"] == 1.0 and ran["trainer.device"] == "cpu"
    assert ran["trainer.monitor_mode"] == "max" and ran["optim.betas"] == [0.9, 0.999]
    assert "grad_clip: null" in (run / "config.yaml").read_text()  # what was asked
    cfg = to_plain(make_cfg("model=lstm"))
    assert hparams_of(cfg, {}, effective=ran)["trainer.grad_clip"] == 1.0
    assert hparams_of(cfg, {})["trainer.grad_clip"] == "null"
    from tests.tbread import hparams_sessions

    _, (group,) = hparams_sessions(run)  # what TensorBoard's dashboard shows
    assert group["hparams"]["trainer.grad_clip"] == 1.0


def test_an_image_models_size_and_the_loader_are_recorded(make_cfg) -> None:
    from types import SimpleNamespace

    cfg = to_plain(make_cfg("model=cnn", "trainer.monitor=val/loss"))
    data = SimpleNamespace(loader_kind="tensor", image_size=28)
    optimizer = build_optimizer(cfg["optim"], torch.nn.Linear(2, 2))
    ran = effective_settings(
        cfg, device="cpu", grad_clip=None, optimizers={"optim": optimizer}, threads=2,
        channels_last=True, data=data, monitor_mode=monitor_mode(cfg["trainer"]),  # as classify's
    )  # fmt: skip
    assert ran["model.image_size"] == 28 and ran["data.loader"] == "tensor"
    assert ran["trainer.monitor_mode"] == "min" and ran["trainer.grad_clip"] == 0.0
    assert ran["trainer.threads"] == 2 and ran["trainer.channels_last"] is True


def test_the_regularization_switch_that_won_is_recorded_on_the_model(make_cfg) -> None:
    cfg = to_plain(make_cfg("regularization=[dropout]"))
    optimizer = build_optimizer(cfg["optim"], torch.nn.Linear(2, 2))
    ran = effective_settings(cfg, device="cpu", grad_clip=None, optimizers={"optim": optimizer})
    assert cfg["model"]["dropout"] != cfg["regularization"]["dropout"]
    assert ran["model.dropout"] == cfg["regularization"]["dropout"]
