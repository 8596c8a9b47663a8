"""The command line's overrides, option by option: what the first job gets, and whether every
swept or listed option exists and every swept value is valid. Torch-free (see preflight.py).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from dlexp.errors import format_problems
from dlexp.tasks.registry import validate
from dlexp.tracking.console import print_error


def fail(message: str) -> None:
    """One message on stderr and exit status 2: the command line is wrong."""
    print_error(message)
    sys.exit(2)


def _first_value(override: Any) -> str:
    if override.is_sweep_override():
        return str(next(iter(override.sweep_string_iterator())))
    return override.get_value_element_as_str()


def first_job_overrides(overrides: list[str]) -> list[str] | None:
    """Each sweep replaced by its first value; None when the overrides can't be read here."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        out = []
        for o in parsed:
            if o.is_delete():
                out.append(o.input_line)
                continue
            # the key element keeps its own + / ++ prefix
            out.append(f"{o.get_key_element()}={_first_value(o)}")
        return out
    except Exception:  # parse errors, glob sweeps...: Hydra reports those itself
        return None


def search_path(overrides: list[str]) -> list[str]:
    """The entries of a hydra.searchpath=[...] given on the command line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with contextlib.suppress(Exception):
        for o in OverridesParser.create().parse_overrides(overrides):
            if o.key_or_group == "hydra.searchpath" and isinstance(o.value(), list):
                return [str(_unquoted(v)) for v in o.value()]
    return []


def _unquoted(value: Any) -> Any:
    """'sgd' typed with quotes reaches us as Hydra's QuotedString: its text, lists item by item."""
    from hydra.core.override_parser.types import QuotedString

    if isinstance(value, QuotedString):
        return value.text
    if isinstance(value, list):
        return [_unquoted(v) for v in value]
    if isinstance(value, dict):
        return {k: _unquoted(v) for k, v in value.items()}
    return value


def config_repository(config_dirs: list[Path]) -> Any:
    """Hydra's own view of the config groups: dlexp's configs, --config-dir, hydra.searchpath,
    and the groups plugins add (hydra/launcher, hydra/sweeper/pruner, ...)."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path

    search = create_config_search_path(f"file://{config_dirs[0]}")
    for extra in config_dirs[1:]:
        search.append("command-line", f"file://{extra}")
    return ConfigRepository(search)


def group_options(repo: Any, group: str) -> list[str]:
    """The options of `group`, those in its subfolders by their path (model=mine/tiny)."""
    from hydra.core.object_type import ObjectType

    options = set(repo.get_group_options(group, ObjectType.CONFIG))
    for sub in repo.get_group_options(group, ObjectType.GROUP):
        options |= {f"{sub}/{o}" for o in group_options(repo, f"{group}/{sub}")}
    return sorted(options)


def check_group_options(overrides: list[str], config_dirs: list[Path]) -> None:
    """Every option named for a config group must exist, with a "did you mean" when it does
    not: only the first job is composed here, Hydra would find a bad later value after creating
    the sweep folder, and its own message names no close option."""
    import difflib

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return  # grammar.check_grammar has reported it
    repo = None
    for o in parsed:
        group, value = o.key_or_group, o.value()
        if "." in group or o.is_delete() or not isinstance(value, (ChoiceSweep, list, str)):
            continue  # a key, not a config group (or range(), glob(), null: Hydra's to judge)
        repo = repo or config_repository(config_dirs)
        if not repo.group_exists(group):
            continue
        valid = group_options(repo, group)
        items = _unquoted(value.list if isinstance(value, ChoiceSweep) else [value])
        for item in items:
            twice = (
                sorted({str(v) for v in item if item.count(v) > 1})
                if isinstance(item, list)
                else []
            )
            if twice:
                fail(f"{o.input_line}: {', '.join(twice)} listed more than once")
        chosen = [v for item in items for v in (item if isinstance(item, list) else [item])]
        for option in map(str, chosen):  # regularization=[l2,dropout],[none]: each name
            if option not in valid:
                close = difflib.get_close_matches(option, valid, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                where = "" if o.input_line == f"{group}={option}" else f" (in {o.input_line})"
                fail(
                    f"{group}={option}{where}: no such option (no {group}/{option}.yaml in the "
                    f"config folders).{hint} Options of {group}: {', '.join(valid)}"
                )


def check_swept_values(overrides: list[str], first: dict[str, Any]) -> None:
    """Each value of a swept key is validated too (the first job's config with that value in
    place): a typo in the last value must not wait for the earlier jobs to finish."""
    import copy

    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return
    for o in parsed:
        key = o.key_or_group
        if not o.is_sweep_override() or key.startswith("hydra") or "." not in key:
            continue  # config groups are checked by check_group_options
        try:
            values = [_unquoted(v) for v in o.sweep_iterator()]
        except Exception:
            continue  # interval(...) and other search spaces: the sweeper checks those
        parent_path, _, leaf = key.rpartition(".")
        for value in values[1:]:
            cfg = copy.deepcopy(first)
            parent = cfg
            for part in parent_path.split("."):
                parent = parent.get(part) if isinstance(parent, dict) else None
            if not isinstance(parent, dict) or (isinstance(value, str) and "${" in value):
                break
            parent[leaf] = value
            problems = validate(cfg)
            if problems:
                fail(f"{key}={value} (in {o.input_line}): " + format_problems(problems))
