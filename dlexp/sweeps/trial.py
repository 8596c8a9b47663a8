"""The link between a training run and a hyperparameter search (pruning). Torch-free.

The runner calls `should_prune(cfg, epoch, value)` after every epoch with the monitored metric;
when a search decides the trial is hopeless it returns True and the runner raises `Pruned`,
marking the run "pruned". Outside a search it always returns False, without importing optuna.

How a job finds its trial: the Optuna sweeper (`hydra_plugins/dlexp_optuna_sweeper`) launches
every trial as a Hydra job with three more overrides, made by `link_overrides`:

    +optuna.storage=sqlite:///<sweep folder>/optuna.db +optuna.study=<name> +optuna.trial=<number>

so the job's config (and its run folder's config.yaml) names its study and trial. The job opens
the study through that storage, never through in-memory state, so the same code works when the
launcher runs the job inside the sweeper's process (basic launcher) or in a worker process
(joblib). The pruner is rebuilt from the config the sweeper stored in the study (`PRUNER_ATTR`).
Epochs are Optuna's steps: 1, 2, ... as in metrics.jsonl.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dlexp.config.trust import foreign_targets, own_targets

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("dlexp")

LINK_KEY = "optuna"  # the job config's node: {storage, study, trial}
PRUNER_ATTR = "dlexp.pruner"  # study user attr: the pruner's `_target_` config
PRUNED_AT_ATTR = "pruned_at_epoch"  # trial user attr: set when this module says "prune"
RUN_DIR_ATTR = "run_dir"  # trial user attr: the job's folder (set by the sweeper)
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")  # Hydra reads these unquoted, as strings
_KEYWORDS = ("true", "false", "null", "nan", "inf")
SQLITE_TIMEOUT_S = 60  # parallel jobs write to one SQLite file: wait for the lock, don't fail


class Pruned(Exception):
    """A search stopped this trial early: not an error, and not the user's doing."""


def should_prune(cfg: Mapping[str, Any], epoch: int, value: float) -> bool:
    """Report `value` at `epoch` to the search this run belongs to, if any; True: stop now."""
    link = cfg.get(LINK_KEY)
    if not link:
        return False
    trial = _running_trial(str(link["storage"]), str(link["study"]), int(link["trial"]))
    if trial is None:
        return False
    trial.report(float(value), step=epoch)
    if not trial.should_prune():
        return False
    trial.set_user_attr(PRUNED_AT_ATTR, epoch)
    return True


def link_overrides(storage: str, study: str, number: int) -> list[str]:
    """The overrides that make a Hydra job trial `number` of `study` (read by `should_prune`)."""
    return [
        f"+{LINK_KEY}.storage={override_value(storage)}",
        f"+{LINK_KEY}.study={override_value(study)}",
        f"+{LINK_KEY}.trial={number}",
    ]


def override_value(value: Any) -> str:
    """A Python value as Hydra override text that parses back to the same value."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        plain = _PLAIN.fullmatch(value) and value.lower() not in _KEYWORDS
        return value if plain else quote(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a Hydra override")


def quote(text: str) -> str:
    """`text` as a Hydra override value that parses back to exactly `text` (a string).

    Inside Hydra's quotes only `\\'` and backslashes right before a quote are escapes, so
    paths with spaces, commas or `=` survive.
    """
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return f"'{body}'"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`, one per process and URL (the engine keeps its connections)."""
    if url not in _storages:
        import optuna

        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
        _storages[url] = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    return _storages[url]


def build_pruner(conf: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """The pruner a `_target_` config describes; no config: never prune."""
    import optuna

    if not conf:
        return optuna.pruners.NopPruner()
    from hydra.utils import instantiate

    return instantiate(dict(conf))


_storages: dict[str, optuna.storages.BaseStorage] = {}
# per process: a job reports every epoch, and re-opening the study each time would be slow
_trials: dict[tuple[str, str, int], optuna.trial.Trial | None] = {}


def _running_trial(url: str, study_name: str, number: int) -> optuna.trial.Trial | None:
    """Trial `number` of the study, while it runs. None when it has finished, the study is gone
    or optuna is missing: a `dlexp rerun`/`resume` of a search job trains without pruning."""
    key = (url, study_name, number)
    if key in _trials:
        return _trials[key]
    _trials[key] = None  # unless all goes well below
    try:
        import optuna
    except ImportError:  # e.g. a search job rerun elsewhere: train it, just never prune
        log.warning("this run is an Optuna trial, but optuna is not installed: not pruning")
        return None
    storage = open_storage(url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    except KeyError:
        log.warning("study %r has no trial %d in %s: not pruning", study_name, number, url)
        return None
    if storage.get_trial(trial_id).state.is_finished():
        log.info("trial %d of study %r has finished already: not reporting", number, study_name)
        return None
    conf = storage.get_study_user_attrs(study_id).get(PRUNER_ATTR)
    # a study anyone could have written (`optuna.storage` in a run's config.yaml): not even
    # torch's code, which includes torch.hub.load, is built from it; only Optuna's pruners
    foreign = foreign_targets(conf, own_targets(None), prefixes=("optuna.pruners.",))
    if foreign:
        log.warning(
            "study %r in %s stores a pruner from outside optuna.pruners and this command's "
            "config folders (%s): not building it, not pruning",
            study_name,
            url,
            ", ".join(foreign),
        )
        return None
    pruner = build_pruner(conf)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    _trials[key] = optuna.trial.Trial(study, trial_id)
    return _trials[key]
