"""Each trainer/regularization/precision option does what it says, in short in-process runs."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from typing import Any

import pytest
import torch
from torch import nn

from dlexp.cli.train import train
from dlexp.data.loaders import DataLoaderBatches
from dlexp.engine.checkpoint import load_checkpoint
from dlexp.engine.setup import autocast_for, wants_channels_last
from dlexp.models.cnn import MLP, ConvNet, LeNet5
from dlexp.tasks.classify import loop as classify
from dlexp.tasks.classify import task as classify_task
from dlexp.tasks.classify.loop import LoopOptions, TrainState, train_one_epoch
from tests.conftest import read_jsonl

pytestmark = pytest.mark.slow

QUICK = ("trainer.epochs=1", "trainer.limit_train_batches=4", "trainer.progress=none")
LR = 1e-3  # optim.lr of the default optimizer (adam)


def _run(make_cfg, tmp_path, *overrides: str, name: str = "run") -> tuple[float, dict, list]:
    run_dir = tmp_path / name
    run_dir.mkdir()
    best = train(make_cfg(*overrides), run_dir=run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    return best, summary, read_jsonl(run_dir / "metrics.jsonl")


def _spy_on_the_loop(monkeypatch) -> dict[str, Any]:
    """Record what the training loop really gets: the model, the loader, the flags, the dtypes."""
    seen: dict[str, Any] = {
        "model": None,
        "loaders": set(),
        "channels_last": set(),
        "dtypes": set(),
    }
    real_forward, real_epoch = classify.forward, classify.train_one_epoch

    def forward(model, x, channels_last):
        logits = real_forward(model, x, channels_last)
        if model.training:
            seen["model"] = model
            seen["channels_last"].add(channels_last)
            seen["dtypes"].add(logits.dtype)
        return logits

    def epoch(model, loader, *args, **kwargs):
        seen["loaders"].add(type(loader))
        return real_epoch(model, loader, *args, **kwargs)

    monkeypatch.setattr(classify, "forward", forward)
    monkeypatch.setattr(classify_task, "train_one_epoch", epoch)  # where the task calls it
    return seen


def _step_lrs(records: list[dict]) -> list[float]:
    return [r["lr"] for r in records if r["kind"] == "step"]


def _module_types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def _check_cnn(seen, records, run_dir):
    model = seen["model"]
    assert isinstance(model, ConvNet)
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [8, 8, 16, 16], widths  # model.channels, convs_per_block=2
    assert seen["channels_last"] == {True}, "channels_last=auto is on for conv nets"


def _check_mlp(seen, records, run_dir):
    assert isinstance(seen["model"], MLP)
    assert nn.Conv2d not in _module_types(seen["model"])
    assert seen["channels_last"] == {False}, "channels_last=auto is off without convs"


def _check_dataloader(seen, records, run_dir):
    assert isinstance(seen["model"], LeNet5)
    assert seen["loaders"] == {DataLoaderBatches}


def _check_bf16(seen, records, run_dir):
    assert seen["dtypes"] == {torch.bfloat16}, "the forward pass did not run under bf16 autocast"


def _check_onecycle(seen, records, run_dir):
    # 4 steps, pct_start=0.5: from LR/25 up to LR after step 1 (0.5·4 − 1), cosine down to
    # LR/25/1e4 after step 3 (the last one), half-way after step 2
    lrs = _step_lrs(records)
    low = LR / 25 / 1e4
    assert len(lrs) == 4
    assert lrs[:3] == pytest.approx([LR, (LR + low) / 2, low], rel=1e-6)


def _check_cosine_warmup(seen, records, run_dir):
    # 4 steps: warm-up over ceil(0.5·4) = 2 steps from LR/3, then cosine over the other 2 to
    # min_lr = 0 (the lr logged with a step is the one the next step uses)
    lrs = _step_lrs(records)
    assert lrs == pytest.approx([2 * LR / 3, LR, LR / 2, 0.0], rel=1e-6, abs=1e-12)


def _check_nesterov(seen, records, run_dir):
    group = load_checkpoint(run_dir / "checkpoints" / "last.pt")["optimizer"]["param_groups"][0]
    assert group["nesterov"] is True and group["momentum"] == 0.9 and group["lr"] == 0.01
    assert all(r["train/grad_norm"] > 0 for r in records if r["kind"] == "step")
    assert isinstance(seen["model"], LeNet5) and seen["channels_last"] == {False}


def _check_regularization(seen, records, run_dir):
    types = _module_types(seen["model"])
    assert {nn.BatchNorm2d, nn.BatchNorm1d, nn.Tanh, nn.AvgPool2d} <= types, types
    assert not {nn.ReLU, nn.MaxPool2d} & types, types
    dropouts = [m.p for m in seen["model"].modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(p == 0.5 for p in dropouts), dropouts


OPTION_CASES = [
    (("model=cnn", "model.channels=[8,16]"), _check_cnn),
    (("model=mlp",), _check_mlp),
    (("model=lenet", "data.loader=dataloader"), _check_dataloader),
    (("trainer.precision=bf16",), _check_bf16),
    (("scheduler=onecycle", "scheduler.pct_start=0.5"), _check_onecycle),
    (("scheduler=cosine", "scheduler.warmup_epochs=0.5"), _check_cosine_warmup),
    (("optim=nesterov", "trainer.grad_clip=1.0", "trainer.channels_last=false"), _check_nesterov),
    (
        ("regularization=[batchnorm,dropout]", "model.activation=tanh", "model.pooling=avg"),
        _check_regularization,
    ),
]


@pytest.mark.parametrize(
    ("overrides", "check"), [pytest.param(o, c, id=" ".join(o)) for o, c in OPTION_CASES]
)
def test_option_trains_without_error(make_cfg, tmp_path, monkeypatch, overrides, check):
    seen = _spy_on_the_loop(monkeypatch)
    best, summary, records = _run(
        make_cfg, tmp_path, *QUICK, "trainer.log_every_n_steps=1", *overrides
    )
    assert summary["status"] == "done"
    assert 0.0 <= best <= 1.0
    assert records[-1]["kind"] == "best"
    assert seen["model"] is not None, "the loop never ran a training step"
    if "trainer.precision=bf16" not in overrides:
        assert seen["dtypes"] == {torch.float32}
    check(seen, records, tmp_path / "run")


def test_bf16_autocast_runs_matmuls_in_bfloat16():
    cpu = torch.device("cpu")
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    layer = nn.Linear(16, 4)
    with autocast_for("bf16", cpu):
        assert (a @ b).dtype == torch.bfloat16
        assert layer(a).dtype == torch.bfloat16
    with autocast_for("32", cpu):
        assert (a @ b).dtype == torch.float32 and layer(a).dtype == torch.float32
    # bf16 keeps ~8 bits of mantissa: close to, but not the same as, float32
    with autocast_for("bf16", cpu):
        low = (a @ b).float()
    assert torch.allclose(low, a @ b, rtol=0.05, atol=0.05) and not torch.equal(low, a @ b)


def test_l1_and_l2_penalties_are_logged_separately(make_cfg, tmp_path):
    _, _, records = _run(
        make_cfg, tmp_path, *QUICK, "regularization=[l1,l2]", "trainer.log_every_n_steps=1"
    )
    steps = [r for r in records if r["kind"] == "step"]
    assert all(r["train/l1_penalty"] > 0 and r["train/l2_penalty"] > 0 for r in steps)
    # the penalties shrink the weights they act on: with l2 alone and a big λ, they fall
    _, _, strong = _run(
        make_cfg,
        tmp_path,
        *QUICK,
        "regularization=[l2]",
        "regularization.l2=0.05",
        "trainer.log_every_n_steps=1",
        name="strong",
    )
    penalty = [r["train/l2_penalty"] for r in strong if r["kind"] == "step"]
    assert penalty[-1] < penalty[0]


def test_overfit_batches_memorises_one_batch(make_cfg, tmp_path):
    best, _, _ = _run(
        make_cfg,
        tmp_path,
        "trainer.overfit_batches=1",
        "trainer.epochs=40",
        "trainer.progress=none",
        "trainer.test_after_fit=false",
    )
    assert best == 1.0


def test_early_stopping_stops_when_nothing_improves(make_cfg, tmp_path):
    _, summary, records = _run(
        make_cfg,
        tmp_path,
        "optim=sgd",
        "optim.lr=1e-12",  # effectively frozen: validation accuracy cannot improve
        "trainer.epochs=10",
        "trainer.limit_train_batches=2",
        "trainer.early_stopping.patience=2",
        "trainer.early_stopping.min_delta=0.01",
        "trainer.progress=none",
    )
    assert summary["stopped_early"] is True
    assert summary["epochs_completed"] == 3
    assert len([r for r in records if r["kind"] == "epoch"]) == 3


def test_warmup_ramps_the_learning_rate(make_cfg, tmp_path):
    _, _, records = _run(
        make_cfg,
        tmp_path,
        "trainer.epochs=2",
        "trainer.limit_train_batches=10",
        "trainer.log_every_n_steps=1",
        "scheduler.warmup_epochs=1",
        "trainer.progress=none",
    )
    lrs = [r["lr"] for r in records if r["kind"] == "step"]
    assert lrs[0] < lrs[5] < lrs[9] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-3)


def test_monitor_without_validation_split_is_explained(make_cfg, tmp_path):
    from dlexp.errors import DlexpError

    with pytest.raises(DlexpError, match="val_fraction=0"):
        _run(make_cfg, tmp_path, *QUICK, "data.val_fraction=0")
    best, summary, _ = _run(
        make_cfg,
        tmp_path,
        *QUICK,
        "data.val_fraction=0",
        "trainer.monitor=train/loss",
        "trainer.monitor_mode=min",
        name="ok",
    )
    assert summary["status"] == "done" and best > 0


def test_gradient_norm_is_logged_when_clipping(make_cfg, tmp_path):
    _, _, records = _run(
        make_cfg, tmp_path, *QUICK, "trainer.grad_clip=0.5", "trainer.log_every_n_steps=1"
    )
    norms = [r["train/grad_norm"] for r in records if r["kind"] == "step"]
    assert len(norms) == 4 and all(n > 0 for n in norms)


class _OneBatch:
    """The loader interface train_one_epoch uses: len() and batches(epoch, start)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return 1

    def batches(self, epoch: int, start: int = 0):
        if start == 0:
            yield self.x, self.y


def _one_sgd_step(grad_clip: float | None) -> tuple[float, float | None]:
    """Norm of the parameter change of one SGD step (lr=1, no momentum) and the logged norm."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = 50 * torch.randn(32, 8), torch.randint(0, 3, (32,))  # big inputs: big gradients
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.0)
    opts = LoopOptions(
        epochs=1, log_every=1, device=torch.device("cpu"), autocast=nullcontext, grad_clip=grad_clip
    )
    logged: list[dict[str, float]] = []
    train_one_epoch(
        model, _OneBatch(x, y), optimizer, None, None, TrainState(), opts, [],
        lambda metrics, _: logged.append(metrics),
    )  # fmt: skip
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert len(logged) == 1
    return float((after - before).norm()), logged[0].get("train/grad_norm")


def test_gradient_clipping_bounds_the_update():
    clip = 0.5
    free, not_logged = _one_sgd_step(None)
    assert free > 10 * clip, "the test batch must give a gradient far above the clip value"
    assert not_logged is None, "no clipping, no gradient norm measured"
    clipped, logged = _one_sgd_step(clip)
    # SGD with lr=1 moves the weights by exactly the (clipped) gradient
    assert clipped <= clip * (1 + 1e-4)
    assert clipped == pytest.approx(clip, rel=1e-3)
    # the logged norm is the one before clipping: the unclipped update's size
    assert logged == pytest.approx(free, rel=1e-4)


def _first_multichannel_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)


def test_channels_last_auto_is_on_for_conv_nets_and_changes_no_result(
    make_cfg, tmp_path, monkeypatch
):
    assert wants_channels_last("auto", LeNet5()) is True
    assert wants_channels_last("auto", MLP()) is False
    assert wants_channels_last(False, LeNet5()) is False
    losses, formats = {}, {}
    seen = _spy_on_the_loop(monkeypatch)
    for setting in ("auto", "false"):
        seen["channels_last"] = set()
        _, summary, records = _run(
            make_cfg,
            tmp_path,
            *QUICK,
            "trainer.log_every_n_steps=1",
            "trainer.test_after_fit=false",
            f"trainer.channels_last={setting}",
            name=setting,
        )
        assert summary["status"] == "done"
        losses[setting] = [r["train/loss"] for r in records if r["kind"] == "step"]
        conv = _first_multichannel_conv(seen["model"])
        formats[setting] = (
            seen["channels_last"],
            conv.weight.is_contiguous(memory_format=torch.channels_last),
            conv.weight.is_contiguous(),
        )
    assert formats["auto"] == ({True}, True, False), "auto: LeNet-5 runs in channels_last"
    assert formats["false"] == ({False}, False, True)
    assert len(losses["auto"]) == 4
    # the same training, in another memory layout: the same losses up to rounding
    assert losses["auto"] == pytest.approx(losses["false"], rel=1e-4)
    assert not math.isclose(losses["auto"][0], losses["auto"][-1]), "the model must train"


def test_threads_setting_reaches_torch_and_the_summary(make_cfg, tmp_path):
    default = torch.get_num_threads()
    wanted = 1 if default > 1 else 2  # differs from what torch would use anyway
    try:
        _, summary, _ = _run(
            make_cfg,
            tmp_path,
            *QUICK,
            "trainer.limit_train_batches=1",
            "trainer.test_after_fit=false",
            f"trainer.threads={wanted}",
        )
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(default)  # the rest of the suite keeps its threads
    assert summary["status"] == "done"
    assert summary["environment"]["threads"] == wanted


def test_an_oversized_batch_and_too_many_threads_get_a_note(make_cfg, tmp_path, caplog):
    import logging
    import os

    caplog.set_level(logging.INFO, logger="dlexp")
    cores, default = os.cpu_count() or 1, torch.get_num_threads()
    try:
        _, summary, _ = _run(
            make_cfg, tmp_path, *QUICK, "trainer.test_after_fit=false",
            "trainer.batch_size=100000", f"trainer.threads={cores + 1}",
        )  # fmt: skip
    finally:
        torch.set_num_threads(default)
    assert summary["status"] == "done" and summary["steps"] == 1
    text = " ".join(caplog.text.split())
    assert "trainer.batch_size=100000 is more than the 3,600 training samples" in text
    assert f"trainer.threads={cores + 1} is more than this machine's {cores} cores" in text


def test_compile_where_unsupported_says_so(make_cfg, tmp_path, monkeypatch):
    from dlexp.engine import setup as session
    from dlexp.errors import DlexpError

    def unsupported() -> None:
        raise RuntimeError("dynamo is not supported on this platform")

    monkeypatch.setattr(session, "check_dynamo", unsupported)
    with pytest.raises(DlexpError, match="not supported here.*trainer.compile=false"):
        _run(make_cfg, tmp_path, *QUICK, "trainer.compile=true")
