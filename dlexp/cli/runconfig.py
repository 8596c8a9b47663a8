"""An earlier run's config, read back for resume, rerun, eval, sample, export and predict.

config.yaml as the run saved it (broken YAML is named with its line and column by
`RunFolder.read_config`); one written by an older dlexp (an older `dlexp_schema`) gets
today's defaults for the keys it lacks, with a note naming them. `check_valid` gives every
problem at once, and says which unknown keys come from the run's own config.yaml rather than
from the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlexp import __version__
from dlexp.config.paths import CONFIG_DIR
from dlexp.config.resolvers import to_plain
from dlexp.errors import DlexpError, format_problems
from dlexp.tasks.registry import validate
from dlexp.tracking.console import print_note
from dlexp.tracking.runfolder import SCHEMA_KEY, SCHEMA_VERSION, RunFolder


def load_run_config(run_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The run's resolved config and its group choices (model=lenet, ...).

    A config.yaml written by an older dlexp may lack keys added since: they get this version's
    defaults for the run's choices, with a note saying which."""
    folder = RunFolder(run_dir)
    cfg = folder.read_config()
    version = cfg.pop(SCHEMA_KEY, 0)
    choices = dict(folder.read_summary().get("choices") or {})
    if version < SCHEMA_VERSION and choices:  # the defaults of the options the run chose
        added = fill_defaults(cfg, shipped_defaults(choices))
        if added:
            print_note(
                f"{folder.config_path} was written by an older dlexp and lacks "
                f"{', '.join(added)}: using today's defaults for them"
            )
    return cfg, choices


def shipped_defaults(choices: Mapping[str, str]) -> dict[str, Any]:
    """The shipped configs composed with a run's group choices; {} when they can't be (a
    choice from the user's own --config-dir)."""
    from hydra import compose, initialize_config_dir  # heavy: only for an older run folder

    overrides = [f"{group}={option}" for group, option in choices.items() if "/" not in group]
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return to_plain(compose("config", overrides=overrides))
    except Exception:  # noqa: BLE001 - any failure: no defaults to fill in
        return {}


def fill_defaults(cfg: dict[str, Any], defaults: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Add the keys of `defaults` that `cfg` lacks (in place); returns their dotted names.
    A group that builds another `_target_` (or names another data set or schedule) than the
    default's is another option, not an older version of it: skipped."""
    for identity in ("_target_", "name", "task"):
        if cfg.get(identity, defaults.get(identity)) != defaults.get(identity):
            return []
    added = []
    for key, value in defaults.items():
        if key not in cfg:
            if key not in ("hydra", "optuna"):
                cfg[key] = value
                added.append(f"{prefix}{key}")
        elif isinstance(value, Mapping) and isinstance(cfg[key], dict):
            added += fill_defaults(cfg[key], value, f"{prefix}{key}.")
    return added


def check_valid(
    cfg: Mapping[str, Any], source: Path | None = None, overrides: list[str] = ()
) -> None:
    """Every problem of a config at once; keys the run folder's `source` holds (not the
    command line) that this version does not know are said to come from that file."""
    problems = validate(cfg)
    if not problems:
        return
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    foreign = [p for p in problems if "unknown key" in p and p.split(":")[0] not in given]
    if source is not None and foreign:
        keys = ", ".join(p.split(":")[0] for p in foreign)
        rest = [p for p in problems if p not in foreign]
        rest.append(
            f"{source} holds keys this dlexp ({__version__}) does not know: {keys}. Was the run "
            "made by a newer dlexp? Use that version, or remove the keys from the file."
        )
        problems = rest
    raise DlexpError(format_problems(problems))
