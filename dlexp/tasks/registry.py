"""The one place that knows the families: `model.task` in a config → its task and its checks.

A new family is a package under `tasks/` (its schema, loop and task), its models and configs,
and one line in `FAMILIES`. Everything else — `validate`, `eval`, `sample`, `predict`,
`export`, HParams, compare — asks this module. A family that exports names its hook,
`export_module(payload, source) -> engine.export.Exportable`: the module to write (a
classifier; a generator or decoder: noise in, images out), real inputs to check the file on,
and the JSON that tells a user how to prepare inputs without dlexp. Importing this module is
torch-free: the task classes and hooks load when they are used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlexp.config.derived import one_per_mistake
from dlexp.config.schema import validate_common
from dlexp.errors import DlexpError
from dlexp.tasks.classify import schema as classify_schema
from dlexp.tasks.gan import schema as gan_schema
from dlexp.tasks.vae import schema as vae_schema
from dlexp.tracking.runfolder import RunFolder

DEFAULT = "classify"


@dataclass(frozen=True)
class Family:
    name: str
    task: str  # "module:Class" of its Task, imported when a run starts (it needs torch)
    validate: Callable[[Mapping[str, Any]], list[str]]  # torch-free checks of a whole config
    noun: str  # what a run of it is called in messages
    verbs: tuple[str, ...] = ()  # the run-folder verbs that apply to it, besides resume/rerun
    unused_groups: tuple[str, ...] = ()  # config groups it ignores: not its hyperparameters
    override_hints: Mapping[str, str] | None = None  # group → why setting it is a mistake
    exporter: str = ""  # "module:function" of its export hook (dlexp export), if it exports
    # "module:function" that draws images for `dlexp sample`: (checkpoint, n, seed) → [-1, 1]
    sampler: str = ""


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "classify", "dlexp.tasks.classify.task:ClassifyTask", classify_schema.validate,
            "classification run", verbs=("eval", "validate", "predict", "export"),
            exporter="dlexp.tasks.classify.export:export_module",
        ),
        Family(
            "gan", "dlexp.tasks.gan.task:GanTask", gan_schema.validate, "GAN run",
            verbs=("sample", "export"), unused_groups=("optim", "scheduler", "regularization"),
            override_hints={"optim": gan_schema.OPTIM_HINT}, sampler="dlexp.tasks.gan.task:draw",
            exporter="dlexp.tasks.gan.export:export_module",
        ),
        Family(
            "vae", "dlexp.tasks.vae.task:VaeTask", vae_schema.validate, "VAE or autoencoder run",
            verbs=("eval", "sample", "export"), unused_groups=("regularization",),
            sampler="dlexp.tasks.vae.network:draw", exporter="dlexp.tasks.vae.export:export_module",
        ),
    )
}  # fmt: skip


def family_name(cfg: Mapping[str, Any]) -> str:
    return str((cfg.get("model") or {}).get("task", DEFAULT))


def family_of(cfg: Mapping[str, Any]) -> Family:
    name = family_name(cfg)
    if name not in FAMILIES:
        raise DlexpError(f"model.task: must be one of {', '.join(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def validate(cfg: Mapping[str, Any]) -> list[str]:
    """Every problem in a resolved, plain config; empty when the config is valid."""
    problems = validate_common(cfg)
    name = family_name(cfg)
    if name in FAMILIES:
        problems += FAMILIES[name].validate(cfg)
    else:
        problems.append(f"model.task: must be one of {', '.join(FAMILIES)}, got {name!r}")
    return one_per_mistake(problems)


def unused_groups(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """The config groups a run's family ignores (for HParams and `dlexp compare`)."""
    name = family_name(cfg)
    return FAMILIES[name].unused_groups if name in FAMILIES else ()


def override_problems(cfg: Mapping[str, Any], overrides: list[str]) -> list[str]:
    """Command-line overrides of a group the family ignores, with what to set instead."""
    name = family_name(cfg)
    hints = (FAMILIES[name].override_hints or {}) if name in FAMILIES else {}
    return [
        f"{item}: {hints[group]}"
        for item in overrides
        if (group := item.lstrip("+~").split("=")[0].split(".")[0]) in hints
    ]


def supports(cfg: Mapping[str, Any], verb: str) -> bool:
    return verb in family_of(cfg).verbs


def require(cfg: Mapping[str, Any], verb: str, run_dir: Path | str) -> None:
    """A clear message when `dlexp <verb>` does not apply to the run's family."""
    family = family_of(cfg)
    if verb in family.verbs:
        return
    others = [f"dlexp {v}" for v in family.verbs if v != "validate"]
    hint = f"; for a {family.noun} use {' or '.join(others)}" if others else ""
    able = [f.noun for f in FAMILIES.values() if verb in f.verbs]
    model = cfg.get("model") or {}
    target = model.get("_target_") or (model.get("generator") or {}).get("_target_", "?")
    raise DlexpError(
        f"{run_dir} is a {family.noun} ({target}), not a {' or '.join(able) or 'run it works on'}: "
        f"dlexp {verb} works on {' and '.join(f'{n}s' for n in able) or 'no runs'}{hint}"
    )


def make_task(cfg: Mapping[str, Any]) -> Any:
    """A new, unbuilt Task for the config's family."""
    module, _, name = family_of(cfg).task.partition(":")
    return getattr(importlib.import_module(module), name)()


def export_module(cfg: Mapping[str, Any], payload: Mapping[str, Any], source: Path) -> Any:
    """What `dlexp export` writes for a run of the config's family: its hook's `Exportable`.
    The caller has checked the checkpoint's config with `check_trust`."""
    family = family_of(cfg)
    if not family.exporter:
        raise DlexpError(f"a {family.noun} has nothing to export")
    module, _, name = family.exporter.partition(":")
    return getattr(importlib.import_module(module), name)(payload, source)


def sampler(cfg: Mapping[str, Any]) -> Callable[[Mapping[str, Any], int, int], Any]:
    """The function that draws `dlexp sample`'s images for the config's family."""
    family = family_of(cfg)
    if not family.sampler:
        raise DlexpError(f"a {family.noun} has nothing to sample from")
    module, _, name = family.sampler.partition(":")
    return getattr(importlib.import_module(module), name)


def train(
    cfg: Mapping[str, Any],
    run_dir: Path,
    choices: Mapping[str, str],
    resume: Path | None = None,
) -> float:
    """Train in `run_dir` (a fresh folder, or the same folder again when resuming) and
    return the monitored metric."""
    from dlexp.engine.runner import Runner  # torch: only when a run starts

    return Runner(make_task(cfg), cfg, RunFolder(run_dir), choices, resume).run()
