"""Schemas of the GAN family (`model.task: gan`). Torch-free.

`schema.validate` calls `validate` instead of the classifier's model/optim checks when the
model config says `task: gan`. The top-level `optim` group is not used by GANs (each network has
its own optimizer in the model config), so it is not checked here. Settings a GAN would silently
ignore — a learning-rate schedule, explicit penalties, fp16 — are reported, so nobody waits for a
run that does not do what its config says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dlexp.config.paths import expand_path
from dlexp.config.schema import OPTIMIZERS
from dlexp.config.spec import BOOL, Choice, Float, Int, Spec, _check_table, _check_target_group

LOSSES = ("bce", "lsgan", "hinge")
OPTIM_HINT = (
    "a GAN has two optimizers of its own and ignores the optim group; "
    "set model.optim_g.* and model.optim_d.* (e.g. model.optim_d.lr=2e-4)"
)
GAN_INITS = ("dcgan", "default")
_WIDTHS = Spec("ints", lo=1, min_length=1)
_SLOPE = Float(0.0, 1.0)

GENERATORS: dict[str, dict[str, Any]] = {
    "dlexp.models.gan.MLPGenerator": {
        "_target_": Spec("str"),
        "hidden_sizes": _WIDTHS,
        "negative_slope": _SLOPE,
        "batch_norm": BOOL,
    },
    "dlexp.models.gan.DCGenerator": {
        "_target_": Spec("str"),
        "features": Int(1),
        "init": Choice(*GAN_INITS),
    },
}
DISCRIMINATORS: dict[str, dict[str, Any]] = {
    "dlexp.models.gan.MLPDiscriminator": {
        "_target_": Spec("str"),
        "hidden_sizes": _WIDTHS,
        "negative_slope": _SLOPE,
    },
    "dlexp.models.gan.DCDiscriminator": {
        "_target_": Spec("str"),
        "features": Int(1),
        "negative_slope": _SLOPE,
        "batch_norm": BOOL,
        "init": Choice(*GAN_INITS),
    },
}
# keys of the model node checked by their own tables below
_GROUPS = {
    "generator": GENERATORS,
    "discriminator": DISCRIMINATORS,
    "optim_g": OPTIMIZERS,
    "optim_d": OPTIMIZERS,
}
EVAL: dict[str, Any] = {
    "feature_checkpoint": Spec("str", nullable=True),
    "trust_feature_checkpoint": BOOL,
    "num_samples": Int(2),
    "every_n_epochs": Int(1),
}
EVAL_REQUIRED = tuple(k for k in EVAL if k != "trust_feature_checkpoint")  # older runs lack it
MODEL: dict[str, Any] = {
    "task": Choice("gan"),
    "latent_dim": Int(1),
    "loss": Choice(*LOSSES),
    "n_critic": Int(1),
    # one-sided smoothing: at 0.5 the real target would equal the fake one
    "label_smoothing": Float(0.0, 0.5, hi_open=True),
    "fixed_samples": Int(1, 1024),
    "eval": EVAL,
}
REQUIRED = (*MODEL, *_GROUPS)
# what a search config puts in model.eval.feature_checkpoint to say it must be given
PLACEHOLDER = "set model.eval.feature_checkpoint="


def validate(cfg: Mapping[str, Any]) -> list[str]:
    """Problems in a GAN config (model, its two optimizers, losses, evaluation) and in the
    other groups' settings that a GAN run would not honour."""
    model = cfg.get("model") or {}
    problems = [
        f"model.{key}: missing; a GAN model config needs {', '.join(REQUIRED)} "
        "(see configs/model/gan.yaml)"
        for key in REQUIRED
        if key not in model
    ]
    if isinstance(model.get("eval"), Mapping):
        problems += [
            f"model.eval.{key}: missing; model.eval needs {', '.join(EVAL_REQUIRED)}"
            for key in EVAL_REQUIRED
            if key not in model["eval"]
        ]
    problems += _check_table("model", {k: v for k, v in model.items() if k not in _GROUPS}, MODEL)
    for key, tables in _GROUPS.items():
        node = model.get(key)
        if isinstance(node, Mapping):
            problems += _check_target_group(f"model.{key}", node, tables)
        elif key in model:
            problems.append(f"model.{key}: expected a group of keys with a _target_, got {node!r}")
    if model.get("loss") == "hinge" and model.get("label_smoothing"):
        problems.append(
            f"model.label_smoothing: the hinge loss has no targets to smooth, got "
            f"{model['label_smoothing']!r} with model.loss=hinge; use 0, or loss=bce or lsgan"
        )
    data = cfg.get("data") or {}
    if data.get("kind", "image") != "image":
        return problems + [
            f"data: GANs generate images, and data={data.get('name')} is text; use an image "
            "data set (mnist_sample, mnist, fashion_mnist, kmnist, cifar10)"
        ]
    return problems + _eval_problems(cfg) + _unused_settings(cfg)


def _eval_problems(cfg: Mapping[str, Any]) -> list[str]:
    ev = (cfg.get("model") or {}).get("eval")
    path = ev.get("feature_checkpoint") if isinstance(ev, Mapping) else None
    if not isinstance(path, str) or not path:
        return []
    problems = []
    if path.startswith(PLACEHOLDER):  # a search config's reminder, not a path
        problems.append(
            "model.eval.feature_checkpoint: this search judges the generator with a feature "
            "network and needs one: add model.eval.feature_checkpoint=<a classifier run>/"
            "checkpoints/best.pt to the command (train one on the same data with dlexp "
            "model=lenet)"
        )
    elif expand_path(path).is_dir():
        problems.append(
            f"model.eval.feature_checkpoint: {path} is a folder; give the checkpoint file in "
            f"it, e.g. {path.rstrip('/')}/checkpoints/best.pt"
        )
    elif not expand_path(path).is_file():
        problems.append(
            f"model.eval.feature_checkpoint: no file at {path!r}; give the checkpoints/best.pt of "
            "a classification run on the same data set (e.g. dlexp model=lenet), or null"
        )
    if (cfg.get("data") or {}).get("val_fraction") == 0:
        problems.append(
            "data.val_fraction: the Fréchet distance compares with the validation split, which "
            "data.val_fraction=0 leaves empty; use e.g. 0.1, or model.eval.feature_checkpoint=null"
        )
    return problems


def _unused_settings(cfg: Mapping[str, Any]) -> list[str]:
    """Values a GAN run would not use: an error beats a run that quietly ignores them."""
    problems = []
    trainer = cfg.get("trainer") or {}
    if str(trainer.get("precision")) == "16-mixed":
        problems.append(
            "trainer.precision: GANs support 32 and bf16, got 16-mixed (one loss scaler cannot "
            "serve two optimizers)"
        )
    if trainer.get("nonfinite") == "skip":
        problems.append(
            "trainer.nonfinite: GANs stop on a non-finite loss (skipping would need a host sync "
            "per step), got skip; use stop"
        )
    if trainer.get("compile"):
        problems.append(
            "trainer.compile: not supported for GANs yet (two networks, two optimizers), got "
            "true; use false"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        problems.append(
            "GANs train in one process: under torchrun every process would train its own copy "
            "on all the data; start it with plain `dlexp` instead"
        )
    if trainer.get("overfit_batches"):
        problems.append(
            f"trainer.overfit_batches: not supported for GANs, got "
            f"{trainer['overfit_batches']!r}; use trainer.limit_train_batches for short runs"
        )
    if (cfg.get("data") or {}).get("loader") == "dataloader":
        problems.append(
            "data.loader: GANs keep the training images on the device, got dataloader; "
            "use auto or tensor"
        )
    sched = cfg.get("scheduler") or {}
    constant = "GANs train at the constant learning rates of model.optim_g and model.optim_d"
    if sched.get("name", "none") != "none":
        problems.append(f"scheduler.name: {constant}, got {sched['name']!r}; use scheduler=none")
    elif sched.get("warmup_epochs"):
        problems.append(
            f"scheduler.warmup_epochs: {constant}, got {sched['warmup_epochs']!r}; use 0"
        )
    reg = cfg.get("regularization") or {}
    for key, off in (("l1", 0.0), ("l2", 0.0), ("dropout", None), ("batch_norm", None)):
        if reg.get(key, off) not in (off, 0):
            problems.append(
                f"regularization.{key}: the regularization group does not apply to GAN models, "
                f"got {reg[key]!r}; use regularization=[none] (batch norm is set in "
                "model.generator / model.discriminator)"
            )
    return problems
