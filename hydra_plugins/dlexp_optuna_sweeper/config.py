"""The sweeper's structured configs, registered in Hydra's ConfigStore. Imports nothing heavy.

Hydra imports every module under `hydra_plugins` on each start (even `dlexp --help`), so this
file and `optuna_sweeper.py` must not import optuna at module level. Nor may they use
`from __future__ import annotations`: Hydra executes them outside `sys.modules`, where a
dataclass cannot resolve string annotations.

    hydra/sweeper: dlexp_optuna          the sweeper itself
    hydra/sweeper/sampler: tpe | random  how the next trial's values are proposed
    hydra/sweeper/pruner: median | hyperband | threshold | none

Samplers and pruners are `_target_` nodes with Optuna's own argument names, so every Optuna
option is one `hydra.sweeper.pruner.<arg>=...` away, and a user's own pruner is a YAML file in
`hydra/sweeper/pruner/` of their config folder.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    """Tree-structured Parzen Estimator: Bayesian, handles conditional and categorical spaces."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None  # offset by the trials already in the study (no replays)
    n_startup_trials: int = 5  # random trials before the model (Optuna: 10, half of 20 trials)
    multivariate: bool | None = None  # null: Optuna's default


@dataclass
class RandomSamplerConf:
    """Uniform random search: the baseline a Bayesian search has to beat."""

    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class MedianPrunerConf:
    """Prune a trial whose epoch value is worse than the median of earlier trials' at that epoch.

    Steps are epochs (1, 2, ...): a trial can be pruned at epoch `n_warmup_steps` at the earliest.
    """

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 3  # finished trials needed before anything is pruned
    n_warmup_steps: int = 3  # epochs before that are never pruned
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class HyperbandPrunerConf:
    """Successive halving in several brackets: most trials get `min_resource` epochs."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "${trainer.epochs}"  # a full run ("auto": guessed from the first trial)
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class ThresholdPrunerConf:
    """Prune a trial whose epoch value leaves [lower, upper], e.g. a diverged loss."""

    _target_: str = "optuna.pruners.ThresholdPruner"
    lower: float | None = None
    upper: float | None = None
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class NopPrunerConf:
    """Never prune: every trial runs all its epochs."""

    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class DlexpOptunaSweeperConf:
    """`hydra.sweeper` for `dlexp -m hparams_search=...` (see the README's Optuna section)."""

    _target_: str = "hydra_plugins.dlexp_optuna_sweeper.optuna_sweeper.DlexpOptunaSweeper"
    # sampler and pruner are handed over as configs: the sweeper stores the pruner's config in
    # the study, so a job in another process can rebuild the same pruner
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])

    direction: str = "maximize"  # maximize | minimize (max | min, as trainer.monitor_mode, too)
    study_name: str = "dlexp"
    # null: sqlite:///<hydra.sweep.dir>/optuna.db, so a sweep folder holds its own study
    storage: str | None = None
    n_trials: int = 20  # the study's total, counting trials already in it (done or pruned)
    n_jobs: int = 1  # trials per batch: run in parallel by a parallel launcher (joblib)
    sampler: Any = MISSING
    pruner: Any = MISSING
    # key: Hydra sweep syntax, e.g. optim.lr: tag(log, interval(1e-4, 1e-1))
    params: dict[str, Any] = field(default_factory=dict)


def register() -> None:
    """Put the sweeper, samplers and pruners in the ConfigStore (Hydra's plugin scan imports us)."""
    cs = ConfigStore.instance()
    provider = "dlexp_optuna_sweeper"
    cs.store(
        group="hydra/sweeper", name="dlexp_optuna", node=DlexpOptunaSweeperConf, provider=provider
    )
    for name, node in (("tpe", TPESamplerConf), ("random", RandomSamplerConf)):
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider=provider)
    pruners = (
        ("median", MedianPrunerConf),
        ("hyperband", HyperbandPrunerConf),
        ("threshold", ThresholdPrunerConf),
        ("none", NopPrunerConf),
    )
    for name, node in pruners:
        cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider=provider)


register()
