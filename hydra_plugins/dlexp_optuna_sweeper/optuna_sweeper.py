"""A Hydra sweeper that runs an Optuna study (ask/tell): Bayesian search with pruning behind `-m`.

Our own because Hydra's hydra-optuna-sweeper 1.3 pins optuna<3 (its SQLite storage breaks under
SQLAlchemy 2), has no pruning, and needs the storage folder to exist first (see the README's Optuna section).
Each trial is one Hydra job from the configured launcher, in `<sweep>/<trial number>_...` (job
number = trial number, also in a continued study), with the sampled overrides plus
`dlexp.sweeps.trial.link_overrides`, through which the job reports every epoch and asks whether to
stop. Its return value is the objective: NaN or an error makes the trial FAIL, `Pruned` PRUNED.
Optuna is imported only inside `sweep`; no `from __future__ import annotations` (config.py).
"""

import importlib.util
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn, JobStatus, configure_log
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from dlexp.config.derived import monitor_mode
from dlexp.sweeps import trial as link  # torch-free: the job side of the contract

log = logging.getLogger(__name__)
# trainer.monitor_mode's words, too; auto: as trainer.monitor_mode=auto, from trainer.monitor
DIRECTIONS = {"max": "maximize", "min": "minimize", "auto": "auto"}
LINK_KEYS = [f"{link.LINK_KEY}.{key}" for key in ("storage", "study", "trial")]


@dataclass
class SearchSpace:
    """What Optuna samples, and how a sample becomes a job's overrides."""

    distributions: dict[str, Any] = field(default_factory=dict)
    choice_texts: dict[str, list[str]] = field(default_factory=dict)  # override text per choice
    fixed: list[str] = field(default_factory=list)
    fixed_keys: list[str] = field(default_factory=list)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        out = list(self.fixed)
        for key, value in params.items():
            if key in self.choice_texts:
                text = self.choice_texts[key][self.distributions[key].choices.index(value)]
            else:
                text = link.override_value(value)
            out.append(f"{key}={text}")
        return out


def parse_space(params: Mapping[str, Any], arguments: Iterable[str]) -> SearchSpace:
    """`hydra.sweeper.params` plus the command line's overrides (the command line wins)."""
    lines = [
        f"{k}={v if isinstance(v, str) else link.override_value(v)}" for k, v in params.items()
    ]
    by_key: dict[str, Override] = {}
    for override in OverridesParser.create().parse_overrides([*lines, *arguments]):
        by_key[override.get_key_element()] = override
    space = SearchSpace()
    for key, override in by_key.items():
        if not override.is_sweep_override():
            space.fixed.append(override.input_line)
            space.fixed_keys.append(override.key_or_group)
            continue
        space.distributions[key], texts = to_distribution(override)
        if texts is not None:
            space.choice_texts[key] = texts
    return space


def to_distribution(override: Override) -> tuple[Any, list[str] | None]:
    """One sweep override as an Optuna distribution (+ the override text of each choice)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if override.is_choice_sweep():
        values = list(override.sweep_iterator())
        texts = [link.override_value(v) for v in values]
        # Optuna stores scalars only: a list or dict choice is stored as its override text
        scalar = (type(None), bool, int, float, str)
        choices = [v if isinstance(v, scalar) else t for v, t in zip(values, texts, strict=True)]
        return CategoricalDistribution(choices), texts
    if override.is_range_sweep() and not value.shuffle:
        values = list(override.sweep_iterator())
        low, high, step = min(values), max(values), abs(value.step)
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(low, high, step=step), None
        return FloatDistribution(low, high, step=step), None
    if override.is_interval_sweep():
        log_scale, ints = "log" in value.tags, "int" in value.tags
        kind = IntDistribution if ints else FloatDistribution
        low, high = (int(value.start), int(value.end)) if ints else (value.start, value.end)
        try:
            return kind(low, high, log=log_scale), None
        except ValueError as exc:  # low > high, a log scale that reaches 0, ...
            raise HydraException(f"{override.input_line}: {exc}") from None
    raise HydraException(
        f"{override.input_line}: not a search space the Optuna sweeper understands; use "
        "choice(...), interval(...), tag(log, interval(...)), tag(int, interval(...)) or range(...)"
    )


class DlexpOptunaSweeper(Sweeper):
    """Asks Optuna for trials, launches them as Hydra jobs, tells Optuna how they ended."""

    def __init__(
        self,
        direction: str,
        study_name: str,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        sampler: DictConfig,
        pruner: DictConfig,
        params: DictConfig | None = None,
    ) -> None:
        self.direction = DIRECTIONS.get(str(direction), str(direction))
        # reported by sweep(), as one message before anything is written
        self.problems = [
            text
            for bad, text in (
                (
                    self.direction not in ("maximize", "minimize", "auto"),
                    f"hydra.sweeper.direction: must be maximize or minimize (or max, min, auto), "
                    f"got {direction!r}",
                ),
                (n_jobs < 1, f"hydra.sweeper.n_jobs: must be >= 1, got {n_jobs}"),
                (n_trials < 1, f"hydra.sweeper.n_trials: must be >= 1, got {n_trials}"),
            )
            if bad
        ]
        self.study_name, self.storage = study_name, storage
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.params, self.sampler_conf, self.pruner_conf = map(_plain, (params, sampler, pruner))

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        if self.direction == "auto":  # the direction of the metric the runs report
            self.direction = DIRECTIONS[monitor_mode(config.get("trainer") or {})]
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        """Run the trials the study lacks to reach `n_trials` (done + pruned), then report."""
        if importlib.util.find_spec("optuna") is None:
            _refuse("the Optuna sweeper needs optuna: pip install 'dlexp[sweeps]'")
        try:
            space = parse_space(self.params, arguments)
        except HydraException as exc:
            self.problems.append(str(exc))
        if self.problems:
            _refuse("the search has problems:\n  " + "\n  ".join(self.problems))
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not the folder
        url = self.storage or f"sqlite:///{sweep_dir / 'optuna.db'}"
        study = self._open_study(url)
        have = _counted(study)
        if have >= self.n_trials:  # the total is reached: say so rather than run nothing
            _refuse(
                f"study {self.study_name!r} in {url} has {have} trials already (complete or "
                f"pruned), and hydra.sweeper.n_trials={self.n_trials} is the study's total, so "
                f"none would run. For 10 more: the same command with "
                f"hydra.sweeper.n_trials={have + 10}"
            )
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        to_run = self.n_trials - have
        log.info(f"Optuna study {self.study_name!r} in {url}: {to_run} trials to run")
        returns = []
        while to_run > 0:  # failed trials are not replaced here: a broken config can't loop
            trials = [study.ask(space.distributions) for _ in range(min(self.n_jobs, to_run))]
            to_run -= len(trials)
            returns.append(self._run_batch(study, trials, space, url))
        self._report(study, sweep_dir, url)
        return returns

    def _open_study(self, url: str) -> Any:
        import optuna
        from hydra.utils import instantiate

        pruner = link.build_pruner(self.pruner_conf)
        try:
            study = optuna.create_study(
                storage=link.open_storage(url),
                study_name=self.study_name,
                direction=self.direction,
                load_if_exists=True,
                pruner=pruner,
            )
        except Exception as exc:  # a damaged database, a server that does not answer, ...
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            _refuse(f"cannot open the Optuna study in {url}: {first}")
        if study.direction.name.lower() != self.direction:
            _refuse(
                f"study {self.study_name!r} in {url} is to {study.direction.name.lower()}; "
                f"this search asks to {self.direction} (hydra.sweeper.direction)"
            )
        sampler = dict(self.sampler_conf)
        if sampler.get("seed") is not None:  # a continued study must not replay suggestions
            sampler["seed"] = int(sampler["seed"]) + len(study.get_trials(deepcopy=False))
        study.sampler = instantiate(sampler)
        study.set_user_attr(link.PRUNER_ATTR, self.pruner_conf)  # jobs rebuild it from here
        return study

    def _run_batch(
        self, study: Any, trials: list[Any], space: SearchSpace, url: str
    ) -> list[JobReturn]:
        # folder names show what differs between trials: not the fixed values, nor the link
        exclude = list(self.config.hydra.job.config.override_dirname.exclude_keys)
        exclude += [k for k in (*space.fixed_keys, *LINK_KEYS) if k not in exclude]
        naming = f"hydra.job.config.override_dirname.exclude_keys={link.override_value(exclude)}"
        name = self.study_name
        batch = [
            [*space.overrides(t.params), *link.link_overrides(url, name, t.number), naming]
            for t in trials
        ]
        try:
            self.validate_batch_is_legal(batch)
            results: list[JobReturn] = []
            for start, stop in _consecutive([t.number for t in trials]):
                # job number = trial number: folders and study agree, continued or not
                first = trials[start].number
                results += self.launcher.launch(batch[start:stop], initial_job_idx=first)
        except BaseException:  # interrupted, or a job that cannot be composed: close the trials
            import optuna

            for t in trials:
                study.tell(t, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            raise
        finally:  # a job reconfigures logging (to its train.log): the sweep's output is ours
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        for t, ret in zip(trials, results, strict=True):
            self._tell(study, t, ret)
        return results

    def _tell(self, study: Any, trial: Any, ret: JobReturn) -> None:
        from optuna.trial import TrialState

        run_dir = str(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg else None
        trial.set_user_attr(link.RUN_DIR_ATTR, run_dir)
        value = ret._return_value  # `return_value` would re-raise a job's exception
        # a job says "pruned" by its exception, and by a mark in the study (set from the job's
        # process) for a launcher or task function that turns exceptions into something else
        mark = _stored(study, trial).user_attrs.get(link.PRUNED_AT_ATTR)
        if isinstance(value, link.Pruned) or mark is not None:
            study.tell(trial, state=TrialState.PRUNED)
            log.info(f"Trial {trial.number} pruned after epoch {mark}")
        elif ret.status == JobStatus.COMPLETED and _finite(value):
            study.tell(trial, float(value))
            log.info(f"Trial {trial.number} finished: {value:.6g}")
        else:
            error = value if isinstance(value, BaseException) else None  # with its traceback
            study.tell(trial, state=TrialState.FAIL)
            log.warning(f"Trial {trial.number} failed ({value!r}); see {run_dir}", exc_info=error)

    def _report(self, study: Any, sweep_dir: Path, url: str) -> None:
        """Print the best trial and write optimization_results.yaml into the sweep folder."""
        import yaml

        trials = study.get_trials(deepcopy=False)
        states = Counter(t.state.name.lower() for t in trials)
        best = study.best_trial if states["complete"] else None
        results = {
            "study": self.study_name,
            "storage": url,
            "direction": self.direction,
            "best_params": best.params if best else None,
            "best_value": best.value if best else None,
            "best_trial": _describe(best) if best else None,
            "states": dict(states),
            "trials": [_describe(t) for t in trials],
        }
        path = sweep_dir / "optimization_results.yaml"
        path.write_text(yaml.safe_dump(results, sort_keys=False), encoding="utf-8")
        counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        log.info(f"Study {self.study_name!r}: {len(trials)} trials ({counts}). Results: {path}")
        if best is not None:
            shown = " ".join(f"{k}={link.override_value(v)}" for k, v in best.params.items())
            log.info(f"Best trial #{best.number}: {best.value:.6g} ({self.direction}) with {shown}")
            log.info(f"  folder: {best.user_attrs.get(link.RUN_DIR_ATTR)}")
        log.info(
            f"More trials in this study: the same command with hydra.sweep.dir={sweep_dir} "
            f"hydra.sweeper.n_trials={self.n_trials + 10} (a total)"
        )


def _refuse(message: str) -> NoReturn:
    """One message and exit status 2, as for every other mistake (Hydra would say exit 1)."""
    from dlexp.tracking.console import print_error

    print_error(message)
    raise SystemExit(2)


def _plain(node: Any) -> dict[str, Any]:
    """A config node as plain data: stored in the study and handed to `instantiate`."""
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return dict(plain or {})


def _counted(study: Any) -> int:
    """Trials that count toward `n_trials`: finished or pruned (failed ones are run again)."""
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))


def _stored(study: Any, trial: Any) -> Any:
    """The trial as stored now (its job may have written to it from another process)."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)


def _consecutive(numbers: list[int]) -> list[tuple[int, int]]:
    """Index ranges of runs of consecutive numbers (another process may share the study)."""
    starts = [i for i, n in enumerate(numbers) if i == 0 or n != numbers[i - 1] + 1]
    return list(zip(starts, [*starts[1:], len(numbers)], strict=True))


def _finite(value: Any) -> bool:
    """A usable objective: NaN (a job's DlexpError in a sweep) or inf mark a failed trial."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe(trial: Any) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": dict(trial.params),
        "run_dir": trial.user_attrs.get(link.RUN_DIR_ATTR),
        "pruned_at_epoch": trial.user_attrs.get(link.PRUNED_AT_ATTR),
    }
