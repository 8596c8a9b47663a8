"""A run's hyperparameters: the flat table TensorBoard's HParams, MLflow, W&B and
`dlexp compare` show, and which of them to show first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 0.1}} → {'optim.lr': 0.1}; lists become text like `[l2, dropout]`
    (HParams takes scalars only)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = "[" + ", ".join(map(str, value)) + "]"
        elif value is None:
            flat[name] = "null"
        else:
            flat[name] = value
    return flat


# Settings that change how a run is reported or where it reads from, not what it learns.
NOT_HPARAMS = (
    "data.data_dir",
    "data.download",
    "data.loader",
    "data.memory_budget_mb",
    "data.num_workers",
    "trainer.device",
    "trainer.eval_batch_size",
    "trainer.figures_every_n_epochs",
    "trainer.keep_last",
    "trainer.log_every_n_steps",
    "trainer.log_graph",
    "trainer.log_histograms",
    "trainer.progress",
    "trainer.test_after_fit",
    "trainer.threads",
    "trainer.compile",
    "model.mkldnn",
    "model.pack",
)
# what a table shows first when nothing says what a run varies (up to five: see `headline`)
FIRST = (
    "model",
    "data",
    "optim",
    "optim.lr",
    "model.optim_g.lr",
    "model.optim_d.lr",
    "trainer.batch_size",
    "trainer.epochs",
)
SHOWN_FIRST = 5  # TensorBoard's HParams table shows five hyperparameters until you pick others


def hparams_of(
    cfg: Mapping[str, Any],
    choices: Mapping[str, str] | None = None,
    ignored: Sequence[str] = (),
    effective: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The hyperparameters shown in TensorBoard's HParams dashboard and `dlexp compare`;
    `ignored`: the groups the run's family does not use (a GAN's optimizers live in its model
    config, so optim, scheduler and regularization do not apply to it). `effective` (the
    summary's) replaces what the config left to dlexp (null, auto) with the value that ran."""
    groups = ("model", "optim", "scheduler", "regularization", "trainer", "data")
    groups = tuple(g for g in groups if g not in ignored)
    keep = {g: cfg[g] for g in groups if g in cfg}
    flat = flatten(keep)
    ran = flatten(dict(effective or {}))
    flat.update({k: v for k, v in ran.items() if k in flat or k.split(".")[0] in groups})
    for noisy in NOT_HPARAMS:
        flat.pop(noisy, None)
    for group, choice in (choices or {}).items():
        if group in groups or group not in ("optim", "scheduler", "regularization"):
            flat[group] = choice
    return flat


def without_targets(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Leave out `<group>._target_` under a chosen option: `optim._target_: torch.optim.Adam`
    only repeats `optim: adam`."""
    chosen = [k for k in hparams if "." not in k]
    return {
        k: v
        for k, v in hparams.items()
        if not (k.endswith("._target_") and any(k.startswith(f"{c}.") for c in chosen))
    }


def headline(hparams: Mapping[str, Any], varied: Iterable[str] | None) -> list[str]:
    """The hyperparameters to show first: what this run varies (a sweep's swept keys, a single
    run's command line), then the usual suspects (`FIRST`) up to five."""
    picked: list[str] = []
    for key in varied or ():
        # a key or a group's choice (optim=sgd); a list group (regularization=[l2]): its keys
        picked += [key] if key in hparams else [k for k in hparams if k.startswith(f"{key}.")]
    for key in FIRST:
        if len(set(picked)) >= SHOWN_FIRST:
            break
        if key in hparams:
            picked.append(key)
    return list(dict.fromkeys(picked))
