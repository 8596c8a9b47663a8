"""Schemas of the autoencoder family (`model.task: vae`): autoencoders and VAEs. Torch-free.

A model config holds the network's keys (`_target_`, `latent_dim`, `widths`, `batch_norm`,
`activation`, passed to its constructor) beside the family's own (`FAMILY_KEYS`: likelihood,
denoising, β, KL warm-up, the monitor and the evaluation). The network trains with the common
`optim` and `scheduler` groups. Settings this family would silently ignore — the
regularization group, `trainer.monitor`, fp16, ... — are reported, as for the GANs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dlexp.config.names import ACTIVATIONS
from dlexp.config.paths import expand_path
from dlexp.config.spec import BOOL, Choice, Float, Int, Spec, _check_table

LIKELIHOODS = ("bernoulli", "gaussian")
CORRUPTIONS = ("none", "gaussian", "mask")
_NET = {
    "_target_": Spec("str"),
    "latent_dim": Int(1),
    "widths": Spec("ints", lo=1),
    "batch_norm": BOOL,
    "activation": Choice(*ACTIVATIONS),
}
AUTOENCODERS = ("dlexp.models.vae.ConvAutoencoder", "dlexp.models.vae.MLPAutoencoder")
VAES = ("dlexp.models.vae.ConvVAE", "dlexp.models.vae.MLPVAE")
# metric → mode: what `model.monitor` may name (null: val/neg_elbo for a VAE, else val/recon)
MONITORS = {
    "val/neg_elbo": "min",
    "val/recon": "min",
    "train/loss": "min",
    "eval/frechet_distance": "min",
    "eval/probe_acc": "max",
}
EVAL: dict[str, Any] = {
    "every_n_epochs": Int(1),
    "probe": BOOL,  # the linear probe on the latent means
    "feature_checkpoint": Spec("str", nullable=True),  # VAE samples' Fréchet distance
    "trust_feature_checkpoint": BOOL,
    "num_samples": Int(2),
}
COMMON: dict[str, Any] = {
    "task": Choice("vae"),
    "likelihood": Choice(*LIKELIHOODS),
    "gaussian_std": Float(0.0, lo_open=True),
    "denoise": {"kind": Choice(*CORRUPTIONS), "level": Float(0.0)},
    "monitor": Choice(*MONITORS, nullable=True),
    "eval": EVAL,
}
VARIATIONAL: dict[str, Any] = {
    "beta": Float(0.0),
    "kl_warmup_epochs": Float(0.0),
    "fixed_samples": Int(1, 1024),
}
# the keys the family reads; every other key of the model node goes to the network
FAMILY_KEYS = (*COMMON, *VARIATIONAL)
REQUIRED = ("_target_", "latent_dim", *COMMON)
EVAL_REQUIRED = ("every_n_epochs", "probe")


def variational(model: Mapping[str, Any]) -> bool | None:
    """Whether the model config is a VAE: by its class when it is dlexp's, else by its keys."""
    target = model.get("_target_")
    if target in VAES or target in AUTOENCODERS:
        return target in VAES
    return None if "beta" not in model else True


def validate(cfg: Mapping[str, Any]) -> list[str]:
    """Problems in an autoencoder/VAE config and in the other groups' settings it would not
    honour."""
    model = cfg.get("model") or {}
    vae = variational(model)
    needed = [*REQUIRED, *(VARIATIONAL if vae else ())]
    problems = [
        f"model.{key}: missing; this model config needs {', '.join(needed)} "
        f"(see configs/model/{'vae' if vae else 'autoencoder'}.yaml)"
        for key in needed
        if key not in model
    ]
    ev = model.get("eval")
    if isinstance(ev, Mapping):
        problems += [
            f"model.eval.{key}: missing; model.eval needs {', '.join(EVAL_REQUIRED)}"
            for key in EVAL_REQUIRED
            if key not in ev
        ]
    table = {**COMMON, **_NET, **VARIATIONAL}
    if vae is False:
        problems += [
            f"model.{key}: an autoencoder has no KL term or prior, got {key}={model[key]!r}; "
            f"use model=vae for a VAE"
            for key in VARIATIONAL
            if key in model
        ]
        table = {**COMMON, **_NET}
    if model.get("_target_") not in (*AUTOENCODERS, *VAES):  # a user's own class
        table = {**table, **{k: Spec("any") for k in model if k not in table}}
    problems += _check_table("model", {k: v for k, v in model.items() if k in table}, table)
    data = cfg.get("data") or {}
    if data.get("kind", "image") != "image":
        return problems + [
            f"data: autoencoders reconstruct images, and data={data.get('name')} is text; use an "
            "image data set (mnist_sample, mnist, fashion_mnist, kmnist, cifar10)"
        ]
    return problems + _model_problems(cfg, vae) + _unused_settings(cfg)


def _model_problems(cfg: Mapping[str, Any], vae: bool | None) -> list[str]:
    """Values that are each valid but do not fit together."""
    model = cfg.get("model") or {}
    ev = model.get("eval") if isinstance(model.get("eval"), Mapping) else {}
    problems = []
    denoise = model.get("denoise") if isinstance(model.get("denoise"), Mapping) else {}
    kind, level = denoise.get("kind", "none"), denoise.get("level", 0.0)
    if kind != "none" and level == 0:
        problems.append(
            f"model.denoise.level: {kind} corruption at level 0 leaves the inputs as they are; "
            "give a level (e.g. 0.3), or model.denoise.kind=none"
        )
    if kind == "mask" and isinstance(level, (int, float)) and level >= 1:
        problems.append(
            f"model.denoise.level: the share of pixels masked must be below 1, got {level!r}"
        )
    path = ev.get("feature_checkpoint")
    if path and vae is False:
        problems.append(
            "model.eval.feature_checkpoint: an autoencoder has no prior to sample from, so "
            "there are no samples to judge; use model=vae, or null"
        )
    elif isinstance(path, str) and path and not expand_path(path).is_file():
        problems.append(
            f"model.eval.feature_checkpoint: no file at {path!r}; give the checkpoints/best.pt of "
            "a classification run on the same data set (e.g. dlexp model=lenet), or null"
        )
    if vae and "feature_checkpoint" in ev and "num_samples" not in ev:
        problems.append("model.eval.num_samples: missing; the Fréchet distance needs it")
    monitor = model.get("monitor")
    needs = {
        "val/neg_elbo": (vae is not False, "an autoencoder has no ELBO; use val/recon"),
        "eval/frechet_distance": (bool(path), "it needs model.eval.feature_checkpoint"),
        "eval/probe_acc": (ev.get("probe") is not False, "it needs model.eval.probe=true"),
    }
    if isinstance(monitor, str) and monitor in needs and not needs[monitor][0]:
        problems.append(f"model.monitor: {monitor} is not measured: {needs[monitor][1]}")
    if (cfg.get("data") or {}).get("val_fraction") == 0:
        problems.append(
            "data.val_fraction: autoencoders are judged on the validation split (best.pt, the "
            "pictures, the linear probe), which data.val_fraction=0 leaves empty; use e.g. 0.1"
        )
    return problems


def _unused_settings(cfg: Mapping[str, Any]) -> list[str]:
    """Values this family would not use: an error beats a run that quietly ignores them."""
    problems = []
    trainer = cfg.get("trainer") or {}
    if trainer.get("monitor", "val/acc") != "val/acc" or trainer.get("monitor_mode") == "min":
        problems.append(
            f"trainer.monitor: autoencoders pick best.pt by model.monitor (null: val/neg_elbo "
            f"for a VAE, val/recon for an autoencoder), got trainer.monitor="
            f"{trainer.get('monitor')!r}; set model.monitor to one of {', '.join(MONITORS)}"
        )
    unsupported = {
        "precision": ("16-mixed", "use 32 or bf16"),
        "nonfinite": ("skip", "they stop on a non-finite loss; use stop"),
        "compile": (True, "not supported for autoencoders yet; use false"),
    }
    for key, (bad, hint) in unsupported.items():
        if trainer.get(key) == bad or str(trainer.get(key)) == bad:
            problems.append(f"trainer.{key}: got {bad!r} ({hint})")
    if trainer.get("overfit_batches"):
        problems.append(
            f"trainer.overfit_batches: not supported for autoencoders, got "
            f"{trainer['overfit_batches']!r}; use trainer.limit_train_batches for short runs"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        problems.append(
            "autoencoders train in one process: under torchrun every process would train its "
            "own copy on all the data; start it with plain `dlexp` instead"
        )
    if (cfg.get("data") or {}).get("loader") == "dataloader":
        problems.append(
            "data.loader: autoencoders keep the images on the device, got dataloader; "
            "use auto or tensor"
        )
    reg = cfg.get("regularization") or {}
    for key, off in (("l1", 0.0), ("l2", 0.0), ("dropout", None), ("batch_norm", None)):
        if reg.get(key, off) not in (off, 0):
            problems.append(f"regularization.{key}: got {reg[key]!r}; {REGULARIZATION_HINT}")
    return problems


REGULARIZATION_HINT = (
    "the regularization group does not apply to autoencoders; use regularization=[none] "
    "(batch norm is model.batch_norm, weight decay optim.weight_decay)"
)
