"""Every shipped config option composes, validates and builds; the schema catches bad values.

Options are discovered from the YAML files in CONFIG_DIR, so a new file is covered without
touching this module. Nothing here trains: models run one forward pass on a zero batch.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dlexp.config.paths import CONFIG_DIR
from dlexp.engine.builders import build_model, build_optimizer, build_scheduler
from dlexp.tasks.registry import validate
from tests.conftest import compose_plain

GROUPS = (
    "data", "model", "optim", "regularization", "scheduler", "trainer", "experiment", "logger"
)  # fmt: skip
LIST_GROUPS = ("regularization", "logger")  # several options at once: group=[a,b]
SHAPES = ((1, 28), (3, 32))  # (channels, image size) of the data sets
NUM_CLASSES = 10


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def group_override(group: str, option: str) -> str:
    # a list group: `regularization=[l2,dropout]`; each logger is built in test_loggers.py
    return f"{group}=[{option}]" if group in LIST_GROUPS else f"{group}={option}"


# data.train must name a file that exists (checked before a run starts)
REVIEWS = Path(tempfile.mkdtemp(prefix="dlexp-configs-")) / "reviews.csv"
REVIEWS.write_text("text,label\ngood,pos\nbad,neg\n", encoding="utf-8")


def companions(group: str, option: str) -> list[str]:
    """Options that need a partner: text data sets a sequence model, token models text data."""
    if group == "data" and compose_plain(f"data={option}")["data"].get("kind") == "text":
        required = [f"data.train={REVIEWS}"] if option == "text_files" else []
        return ["model=lstm_sentiment", *required]
    if group == "model" and option == "lstm_sentiment":
        return ["data=imdb"]
    return []


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The learning rate each of `steps` optimizer steps uses (read before the step)."""
    optimizer = scheduler.optimizer
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


# --- discovery -------------------------------------------------------------------------------


def test_every_config_group_is_covered_here() -> None:
    """A new group folder needs its own build checks below; fail loudly until it has them."""
    groups = {
        p.name
        for p in CONFIG_DIR.iterdir()
        if p.is_dir()
        and p.name not in ("hydra", "hparams_search")
        and not p.name.startswith(("_", "."))
    }
    assert groups == set(GROUPS)
    for group in GROUPS:
        assert options(group), f"no options found in {CONFIG_DIR / group}"


# --- every option composes and validates ------------------------------------------------------


ALL_OPTIONS = [(g, o) for g in GROUPS for o in options(g)]


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_option_composes_and_validates(group: str, option: str) -> None:
    cfg = compose_plain(group_override(group, option), *companions(group, option))
    assert validate(cfg) == []
    if group == "data":
        assert cfg["data"]["name"] == option, "the data option and its name: key must agree"
    if group == "scheduler":
        assert cfg["scheduler"]["name"] == option


# --- every option builds -----------------------------------------------------------------------


def reads_images(option: str) -> bool:
    """Classifiers that take images; GANs and token-only models have their own build tests."""
    model = compose_plain(f"model={option}")["model"]
    return model.get("task", "classify") == "classify" and not model["_target_"].endswith(
        "SentimentLSTM"
    )


IMAGE_CLASSIFIERS = [o for o in options("model") if reads_images(o)]


@pytest.mark.parametrize("option", IMAGE_CLASSIFIERS)
@pytest.mark.parametrize(("channels", "size"), SHAPES, ids=["1x28", "3x32"])
def test_every_model_builds_and_gives_logits(option: str, channels: int, size: int) -> None:
    cfg = compose_plain(f"model={option}")
    model = build_model(
        cfg["model"],
        cfg["regularization"],
        {"in_channels": channels, "num_classes": NUM_CLASSES, "image_size": size},
    )
    # the data pipeline resizes to the model's own image_size when it has one (LeNet: 32)
    side = cfg["model"].get("image_size") or size
    model.eval()
    with torch.no_grad():
        logits = model(torch.zeros(2, channels, side, side))
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("option", options("optim"))
def test_every_optimizer_builds_and_steps(option: str) -> None:
    cfg = compose_plain(f"optim={option}")["optim"]
    model = tiny_model()
    opt = build_optimizer(cfg, model)
    assert type(opt).__name__ == cfg["_target_"].rsplit(".", 1)[1]
    assert all(g["lr"] == cfg["lr"] for g in opt.param_groups)
    # weight decay on matrices only; biases are in a group without it
    decayed = [g for g in opt.param_groups if any(p.ndim >= 2 for p in g["params"])]
    assert [g["weight_decay"] for g in decayed] == [cfg.get("weight_decay", 0.0)]

    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randn(5, 4)).square().mean()
    loss.backward()
    opt.step()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


@pytest.mark.parametrize("option", options("scheduler"))
def test_every_scheduler_builds_and_gives_finite_positive_lrs(option: str) -> None:
    cfg = compose_plain(f"scheduler={option}")
    opt = build_optimizer(cfg["optim"], tiny_model())
    sched = build_scheduler(cfg["scheduler"], opt, steps_per_epoch=10, epochs=3)
    if sched is None:  # a constant rate without warm-up has nothing to step
        assert option == "none"
        return
    seen = lrs(sched, 30)
    assert all(math.isfinite(lr) and lr > 0 for lr in seen), seen
    peak = cfg["scheduler"].get("max_lr") or cfg["optim"]["lr"]
    assert max(seen) <= peak * (1 + 1e-9)


WARMUP_SCHEDULERS = [o for o in options("scheduler") if o != "onecycle"]


@pytest.mark.parametrize("option", WARMUP_SCHEDULERS)
def test_warmup_ramps_the_lr_up_over_the_first_epoch(option: str) -> None:
    cfg = compose_plain(f"scheduler={option}", "scheduler.warmup_epochs=1")
    assert validate(cfg) == []
    base = cfg["optim"]["lr"]
    opt = build_optimizer(cfg["optim"], tiny_model())
    sched = build_scheduler(cfg["scheduler"], opt, steps_per_epoch=10, epochs=3)
    if sched is None:  # a constant rate without warm-up has nothing to step
        assert option == "none"
        return
    seen = lrs(sched, 30)
    assert all(math.isfinite(lr) and lr > 0 for lr in seen), seen
    assert seen[0] < seen[10]
    assert seen[0] < base / 2
    assert seen[:11] == sorted(seen[:11]), "warm-up must not decrease the lr"
    # warm-up ends at the configured lr, where the main schedule starts
    assert seen[10] == pytest.approx(base)


SPE, EPOCHS = 10, 3  # steps per epoch and epochs of the schedules below: 30 steps in all


def _cosine(start: float, end: float, t: float, span: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * t / span)) / 2


def _step_expected(base: float, i: int) -> float:
    # step_epochs=1, gamma=0.5: halved after every epoch of 10 steps
    return base * 0.5 ** (i // SPE)


def _cosine_expected(base: float, i: int) -> float:
    return _cosine(base, 1e-4, i, SPE * EPOCHS)  # min_lr=1e-4, reached at the very end


def _cosine_warmup_expected(base: float, i: int) -> float:
    if i < SPE:
        return base * (i + 1) / (SPE + 1)
    return _cosine(base, 1e-4, i - SPE, SPE * (EPOCHS - 1))


def _onecycle(peak: float, i: int) -> float:
    # pct_start=0.3 of 30 steps: up from peak/25 until step 0.3·30 − 1 = 8, then down to
    # peak/25/1e4 at the last step (29)
    start, low, top = peak / 25, peak / 25 / 1e4, 0.3 * SPE * EPOCHS - 1
    if i <= top:
        return _cosine(start, peak, i, top)
    return _cosine(peak, low, i - top, SPE * EPOCHS - 1 - top)


SCHEDULES = [
    pytest.param(
        ("scheduler=step", "scheduler.step_epochs=1", "scheduler.gamma=0.5"),
        _step_expected,
        id="step",
    ),
    pytest.param(("scheduler=cosine", "scheduler.min_lr=1e-4"), _cosine_expected, id="cosine"),
    pytest.param(
        ("scheduler=cosine", "scheduler.min_lr=1e-4", "scheduler.warmup_epochs=1"),
        _cosine_warmup_expected,
        id="cosine+warmup",
    ),
    pytest.param(("scheduler=onecycle",), _onecycle, id="onecycle"),
    pytest.param(
        ("scheduler=onecycle", "scheduler.max_lr=0.01"),
        lambda base, i: _onecycle(0.01, i),
        id="onecycle+max_lr",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), SCHEDULES)
def test_schedules_give_the_documented_lr_at_every_step(overrides, expected) -> None:
    cfg = compose_plain(*overrides)
    assert validate(cfg) == []
    base = cfg["optim"]["lr"]
    opt = build_optimizer(cfg["optim"], tiny_model())
    sched = build_scheduler(cfg["scheduler"], opt, steps_per_epoch=SPE, epochs=EPOCHS)
    seen = lrs(sched, SPE * EPOCHS)
    want = [expected(base, i) for i in range(SPE * EPOCHS)]
    assert seen == pytest.approx(want, rel=1e-6, abs=1e-12)
    if cfg["scheduler"]["name"] == "cosine":  # after the last step: exactly min_lr
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-4, rel=1e-6)
    if cfg["scheduler"]["name"] == "onecycle":
        peak = cfg["scheduler"]["max_lr"] or base
        assert max(seen) == pytest.approx(peak) and seen.index(max(seen)) == 8


def test_onecycle_rejects_warmup_epochs() -> None:
    cfg = compose_plain("scheduler=onecycle", "scheduler.warmup_epochs=1")
    assert validate(cfg) == ["scheduler.warmup_epochs: onecycle has its own warm-up; set it to 0"]


@pytest.mark.parametrize("option", options("regularization"))
def test_every_regularization_builds_the_default_model(option: str) -> None:
    cfg = compose_plain(f"regularization=[{option}]")
    model = build_model(
        cfg["model"],
        cfg["regularization"],
        {"in_channels": 1, "num_classes": NUM_CLASSES, "image_size": 28},
    )
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, NUM_CLASSES)


# --- regularization options change what gets built --------------------------------------------


def _lenet(cfg: dict[str, Any]) -> nn.Module:
    return build_model(
        cfg["model"],
        cfg["regularization"],
        {"in_channels": 1, "num_classes": NUM_CLASSES, "image_size": 28},
    )


def test_regularization_list_combines_l2_and_dropout() -> None:
    cfg = compose_plain("regularization=[l2,dropout]")
    reg = cfg["regularization"]
    assert reg["l2"] == pytest.approx(5e-4)
    assert reg["dropout"] == pytest.approx(0.5)
    assert reg["l1"] == 0.0 and reg["batch_norm"] is None
    assert validate(cfg) == []
    assert cfg["model"]["dropout"] == 0.0  # LeNet's own default, overridden at build time
    dropouts = [m for m in _lenet(cfg).modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 2
    assert all(m.p == 0.5 for m in dropouts)


def test_default_lenet_has_no_dropout_and_no_batchnorm() -> None:
    model = _lenet(compose_plain())
    assert not any(
        isinstance(m, (nn.Dropout, nn.modules.batchnorm._BatchNorm)) for m in model.modules()
    )


def test_regularization_batchnorm_adds_batchnorm_layers() -> None:
    cfg = compose_plain("regularization=[batchnorm]")
    assert cfg["regularization"]["batch_norm"] is True
    norms = [m for m in _lenet(cfg).modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) >= 2


def test_regularization_l1_sets_a_positive_penalty() -> None:
    reg = compose_plain("regularization=[l1]")["regularization"]
    assert reg["l1"] > 0
    assert reg["l2"] == 0.0 and reg["dropout"] is None and reg["batch_norm"] is None


def test_regularization_dropout_overrides_the_models_own_dropout() -> None:
    cfg = compose_plain("model=mlp", "model.dropout=0.2", "regularization=[dropout]")
    model = build_model(
        cfg["model"],
        cfg["regularization"],
        {"in_channels": 1, "num_classes": NUM_CLASSES, "image_size": 28},
    )
    ps = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    assert ps == {0.5}


# --- the schema catches bad values --------------------------------------------------------------

# overrides -> phrases the single message must contain (the full key, the value or valid range)
BAD_VALUES: dict[str, tuple[list[str], list[str]]] = {
    "epochs_not_int": (["trainer.epochs=ten"], ["trainer.epochs", "integer", "'ten'"]),
    "epochs_zero": (["trainer.epochs=0"], ["trainer.epochs", ">= 1", "0"]),
    "lr_negative": (["optim.lr=-1"], ["optim.lr", "> 0", "-1"]),
    "dropout_one": (["model.dropout=1.0"], ["model.dropout", "< 1", "1.0"]),
    "batch_size_zero": (["trainer.batch_size=0"], ["trainer.batch_size", ">= 1"]),
    "precision_64": (["trainer.precision=64"], ["trainer.precision", "64", "bf16", "16-mixed"]),
    "val_fraction": (["data.val_fraction=1.5"], ["data.val_fraction", "< 1", "1.5"]),
    "onecycle_warmup": (
        ["scheduler=onecycle", "scheduler.warmup_epochs=1"],
        ["scheduler.warmup_epochs", "onecycle", "0"],
    ),
    "nesterov_no_momentum": (
        ["optim=sgd", "optim.nesterov=true", "optim.momentum=0"],
        ["optim.nesterov", "optim.momentum > 0"],
    ),
    "activation": (
        ["model.activation=relux"],
        ["model.activation", "relux", "relu", "tanh", "gelu"],
    ),
    "monitor_mode": (
        ["trainer.monitor_mode=max", "trainer.monitor=val/loss"],
        ["trainer.monitor_mode", "val/loss", "min"],
    ),
    "betas_length": (["optim.betas=[0.9]"], ["optim.betas", "2 values", "0.9"]),
    "beta_one": (["optim.betas=[0.9,1.0]"], ["optim.betas", "< 1"]),
    "augment": (["data.augment=flip"], ["data.augment", "flip", "none", "crop_flip"]),
    "channels": (["model=cnn", "model.channels=[64,0]"], ["model.channels", ">= 1"]),
    "deterministic": (["trainer.deterministic=yes"], ["trainer.deterministic", "true or false"]),
    "patience": (["trainer.early_stopping.patience=0"], ["trainer.early_stopping.patience"]),
    "l2_negative": (["regularization.l2=-1"], ["regularization.l2", ">= 0"]),
    "gamma_zero": (["scheduler=step", "scheduler.gamma=0"], ["scheduler.gamma", "> 0"]),
    "data_name": (["data.name=svhn"], ["data.name", "svhn", "mnist_sample", "cifar10"]),
}


@pytest.mark.parametrize(("overrides", "phrases"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_schema_names_key_value_and_valid_range(overrides: list[str], phrases: list[str]) -> None:
    problems = validate(compose_plain(*overrides))
    assert len(problems) == 1, problems
    for phrase in phrases:
        assert phrase in problems[0], f"{phrase!r} missing from {problems[0]!r}"


def test_schema_reports_every_problem_at_once() -> None:
    problems = validate(compose_plain("trainer.epochs=0", "optim.lr=-1", "model.activation=x"))
    assert len(problems) == 3, problems
    keys = sorted(p.split(":", 1)[0] for p in problems)
    assert keys == ["model.activation", "optim.lr", "trainer.epochs"]


def test_schema_suggests_the_key_meant_for_an_unknown_one() -> None:
    problems = validate(compose_plain("+trainer.epochz=3"))
    assert len(problems) == 1, problems
    assert problems[0].startswith("trainer.epochz: unknown key.")
    assert "Did you mean 'trainer.epochs'" in problems[0]


def test_schema_lists_valid_keys_when_nothing_is_close() -> None:
    (problem,) = validate(compose_plain("+optim.zzz=1"))
    assert "optim.zzz: unknown key" in problem and "Did you mean" not in problem
    assert "lr" in problem and "betas" in problem


@pytest.mark.parametrize(
    "override", ["optim.lr=nan", "optim.lr=inf", "trainer.grad_clip=nan", "model.dropout=nan"]
)
def test_schema_rejects_non_finite_numbers(override: str) -> None:
    assert validate(compose_plain(override)), override


def test_schema_accepts_precision_32_as_typed_on_the_command_line() -> None:
    assert validate(compose_plain("trainer.precision=32")) == []


# --- nothing on the config path imports torch ---------------------------------------------------

TORCH_FREE = (
    "dlexp.config.paths",
    "dlexp.config.schema",
    "dlexp.cli.preflight",
    "dlexp.cli.train",
    "dlexp.cli.main",
)


def _python(code: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_config_modules_do_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "    if 'torch' in sys.modules:\n"
        "        print('torch imported by', name); break\n"
        "else:\n"
        "    print('torch-free')\n"
    )
    assert _python(code, *TORCH_FREE, cwd=tmp_path).strip() == "torch-free"


CLI_PROBE = """
import sys
import tempfile
sys.argv = ["dlexp", *sys.argv[1:]]
from dlexp.cli.main import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
print(f"EXIT={code}")
print(f"TORCH={'torch' in sys.modules}")
"""


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [(["--help"], 0), (["--cfg", "job"], 0), (["trainer.epochs=ten"], 2)],
    ids=["help", "cfg-job", "config-error"],
)
def test_cli_paths_that_do_not_train_do_not_import_torch(
    tmp_path: Path, args: list[str], exit_code: int
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["DLEXP_OUTPUT_ROOT"] = str(tmp_path / "outputs")
    env["DLEXP_DATA_DIR"] = str(tmp_path / "data")
    out = _python(CLI_PROBE, *args, cwd=tmp_path, env=env)
    assert f"EXIT={exit_code}" in out
    if args == ["--help"]:  # lists every option of every group
        for group in GROUPS:
            assert f"{group}: {', '.join(options(group))}" in out
    assert "TORCH=False" in out
    assert not (tmp_path / "outputs").exists(), "nothing may be written for these commands"


def test_schema_does_not_take_1_for_true() -> None:
    problems = validate(compose_plain("trainer.channels_last=1"))
    assert problems and "auto, true, false" in problems[0]
