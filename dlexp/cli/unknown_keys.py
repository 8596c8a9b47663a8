"""An override of a key the composed config lacks: which key, and what is valid instead.

Hydra's answer ("Key 'mlflow' is not in struct", with advice to append the key with `+`) names
no alternative, and the `+` is wrong when the key belongs to another option of a config group:
`logger.mlflow.tracking_uri=...` while mlflow is not among the loggers, `scheduler.gamma=...`
with scheduler=none. Those options are found by reading the group's option files (not composing
them: cheap, no torch); any other key gets "did you mean". Torch-free.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from hydra import compose
from hydra._internal.defaults_list import create_defaults_list
from hydra.core.default_element import ConfigDefault
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from dlexp.cli.overrides import config_repository, group_options, search_path
from dlexp.config.spec import unknown_key


def explain_failed_key(
    config_dir: Path, config_name: str, overrides: list[str], failed: str
) -> str | None:
    """The message for the override that set `failed` (or a key under it), which the config
    lacks; None when the config cannot be composed without that override either."""
    bad = [o for o in overrides if _under(o, failed)]
    if not bad:
        return None
    key, rest = _key(bad[0]), [o for o in overrides if o not in bad]
    for _ in overrides:  # other unknown keys are left out too: this one is named
        try:
            cfg = compose(config_name, rest, return_hydra_config=True)
            break
        except (HydraException, OmegaConfBaseException) as exc:
            also = failed_key(exc)
            if also is None or not any(_under(o, also) for o in rest):
                return None
            rest = [o for o in rest if not _under(o, also)]
    else:
        return None
    dirs = [config_dir, *(Path(p[7:]) for p in search_path(overrides) if p.startswith("file://"))]
    return explain_group_key(key, cfg, dirs, config_name, rest) or explain_unknown_key(key, cfg)


def failed_key(exc: BaseException) -> str | None:
    """The key Hydra could not set, when that is why composing failed."""
    cause = exc.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(
        cause, "full_key", None
    ):
        return str(cause.full_key)
    return None


def _key(override: str) -> str:
    return override.split("=", 1)[0]


def _under(override: str, key: str) -> bool:
    return _key(override) == key or _key(override).startswith(f"{key}.")


def explain_unknown_key(full_key: str, cfg: DictConfig) -> str:
    """'optim.lrr' → "optim.lrr: unknown key. Did you mean 'optim.lr'? Valid keys: ..."""
    node: Any = cfg
    parts = full_key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig) or part not in node:
            prefix = ".".join(parts[: i + 1])
            if not isinstance(node, DictConfig):
                return f"{prefix}: '{'.'.join(parts[:i])}' is a value, not a group of keys"
            message = unknown_key(prefix, part, node.keys())
            return message + f". To add a new key on purpose, write +{full_key}=..."
        node = node[part]
    return f"{full_key}: cannot be overridden"


def explain_group_key(
    key: str, cfg: DictConfig, config_dirs: list[Path], config_name: str, overrides: list[str]
) -> str | None:
    """The message for `key`, missing from the composed `cfg`, when some other option of a
    config group has it; None when no option has it (a typo: the caller says "unknown key")."""
    parts = key.split(".")
    node: Any = cfg
    depth = 0
    while depth < len(parts) and isinstance(node, DictConfig) and parts[depth] in node:
        node, depth = node[parts[depth]], depth + 1
    if depth == len(parts) or not isinstance(node, DictConfig) or parts[0] == "hydra":
        return None
    missing = ".".join(parts[: depth + 1])
    repo = config_repository(config_dirs)
    for end in range(depth, 0, -1):  # the innermost group the key lies under
        group = "/".join(parts[:end])
        if repo.group_exists(group):
            break
    else:
        return None
    have, rest = _options_with(repo, group, parts[end:], depth + 1 - end)
    if not have:
        return None
    choices = cfg.hydra.runtime.choices
    if group in choices:  # one option at a time: model=lenet
        chosen = choices[group]
        them = f"{', '.join(have[:-1])} or {have[-1]}" if len(have) > 1 else have[0]
        now = f"{group}={chosen} has no {missing}" if chosen else f"no {group} is chosen"
        return f"{key}: {now} ({group}={them} has it){rest}"
    chosen = _chosen_in_list(repo, config_name, overrides, group)
    plural = group if group.endswith("s") else f"{group}s"
    return (
        f"{key}: {missing} is there only when {' or '.join(have)} is one of the {plural}: "
        f"add {group}=[{','.join([*chosen, have[0]])}]{rest}"
    )


def _options_with(repo: Any, group: str, path: list[str], needed: int) -> tuple[list[str], str]:
    """The options of `group` that have `path` in their own file, and "" after them; else those
    that have its first `needed` parts, and what their node lacks."""
    full: list[str] = []
    partial: dict[str, tuple[Any, int]] = {}
    for option in group_options(repo, group):
        config = _option_config(repo, group, option)
        if config is None:
            continue
        node, depth = config, 0
        while depth < len(path) and isinstance(node, DictConfig) and path[depth] in node:
            node, depth = node[path[depth]], depth + 1
        if depth == len(path):
            full.append(option)
        elif depth >= needed:
            partial[option] = (node, depth)
    if full or not partial:
        return full, ""
    deepest = max(depth for _, depth in partial.values())
    nodes = [node for node, depth in partial.values() if depth == deepest]
    where = ".".join([group.replace("/", "."), *path[:deepest]])
    keys = sorted({str(k) for n in nodes if isinstance(n, DictConfig) for k in n})
    if not any(isinstance(n, DictConfig) for n in nodes):
        lack = f"; even then {where} is a value, not a group of keys"
    elif not keys:
        lack = f"; even then {where} has no keys to set"
    else:
        close = difflib.get_close_matches(path[deepest], keys, n=1, cutoff=0.6)
        hint = f" Did you mean '{where}.{close[0]}'?" if close else ""
        lack = f"; even then {where} has no {path[deepest]}.{hint} Its keys: {', '.join(keys)}"
    return sorted(partial), lack


def _option_config(repo: Any, group: str, option: str, seen: tuple[str, ...] = ()) -> Any:
    """An option's keys, with those it takes from other options of its group (model=lstm:
    `defaults: [rnn]`); None for one placed elsewhere (_global_, ...), not under the group."""
    loaded = repo.load_config(f"{group}/{option}")
    if loaded is None or (loaded.header or {}).get("package") not in (None, "", "_group_"):
        return None
    parents = [
        _option_config(repo, group, d.path, (*seen, option))
        for d in loaded.defaults_list or []
        if isinstance(d, ConfigDefault) and d.path not in ("_self_", *seen, option)
    ]
    return OmegaConf.merge(*[p for p in parents if p is not None], loaded.config)


def _chosen_in_list(repo: Any, config_name: str, overrides: list[str], group: str) -> list[str]:
    """The options of a list group (logger=[tensorboard,csv]) this command line chooses."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        found = create_defaults_list(repo, config_name, parsed, True, True)
    except Exception:  # the composed config was fine; this is only for the suggestion
        return []
    prefix = f"{group}/"
    return [
        d.config_path.removeprefix(prefix)
        for d in found.defaults
        if d.config_path and d.config_path.startswith(prefix) and not d.is_self
    ]
