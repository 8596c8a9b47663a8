"""Which code a config read from a file may build. Torch-free.

Configs name classes by `_target_`, and building one imports and calls it. A config that comes
from a file — a run folder's config.yaml, the config stored in a checkpoint, a search's stored
pruner — may come from someone else, so every path that builds from one asks `check_trust`
first. It allows dlexp's, torch's and torchvision's own code and the `_target_`s the run's own
config folders name; anything else needs the path's trust option (`--trust` on the command line,
`model.eval.trust_feature_checkpoint=true` for a feature checkpoint).

The run's own config folders: Hydra records in `<run>/.hydra/hydra.yaml` the folders the run was
started with (`--config-dir`, `--config-path`). That record alone proves nothing — whoever made
the folder wrote it — so a recorded folder counts only when it is an absolute path outside the
run folder and its YAML files, read now on this machine, name the `_target_`. A run folder from
someone else can thus build only what config folders on your own disk name. While Hydra runs
(training, a sweep's jobs), the config folders and `_target_` overrides of the current command
line count too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig

from dlexp.errors import DlexpError

TRUSTED_PREFIXES = ("dlexp.", "torch.", "torchvision.")
HYDRA_RECORD = Path(".hydra") / "hydra.yaml"  # Hydra's own record of how the run started
RERUN_RECORD = "rerun_of.txt"  # `dlexp rerun`: the folder whose config it copied
# `_target_: a.b.C`, in block or flow style, quoted or not
_TARGET = re.compile(r"""_target_['"]?\s*:\s*['"]?([A-Za-z_][\w.]*)""")
_MAX_DEPTH = 3  # <dir>/<group>/<subgroup>/<option>.yaml
_MAX_FILES = 2000
_MAX_BYTES = 1_000_000
_MAX_RERUNS = 8


def targets(node: Any) -> list[str]:
    """Every `_target_` string in a config (nested mappings and lists), in order."""
    found: list[str] = []
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if isinstance(target, str):
            found.append(target)
        for value in node.values():
            found += targets(value)
    elif isinstance(node, list):
        for value in node:
            found += targets(value)
    return found


def trust_switches(node: Any, prefix: str = "") -> list[str]:
    """`key=true` for every `trust_*` option a config turns on: set in a file someone else
    made, it would let that file vouch for more code (e.g. a feature checkpoint's)."""
    found: list[str] = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            if str(key).startswith("trust_") and value is True:
                found.append(f"{prefix}{key}=true")
            found += trust_switches(value, f"{prefix}{key}.")
    return found


def foreign_targets(
    cfg: Any, own: Collection[str] = (), prefixes: tuple[str, ...] = TRUSTED_PREFIXES
) -> list[str]:
    """The `_target_`s of `cfg` that start with none of `prefixes` and are not in `own`:
    sorted, each once."""
    return sorted({t for t in targets(cfg) if not t.startswith(prefixes) and t not in own})


def check_trust(
    cfg: Any,
    *,
    trusted: bool,
    source: str | os.PathLike[str],
    flag: str = "--trust",
    trains: bool = False,
) -> None:
    """Raise DlexpError naming every foreign `_target_` of `cfg` (read from `source`, a config
    file or a checkpoint) and the `flag` that allows them, unless `trusted`. The targets the
    config folders of `source`'s run folder name are not foreign (see the module doc). `trains`:
    `cfg` is to be trained, so its `trust_*` options need `flag` too."""
    if trusted:
        return
    run_dir = run_folder_of(Path(source))
    foreign = foreign_targets(cfg)
    if foreign:  # read the config folders only when they can make a difference
        own = own_targets(run_dir)
        foreign = [t for t in foreign if t not in own]
    switches = trust_switches(cfg) if trains else []
    parts = []
    if foreign:
        mine = " and the run's own config folders" if run_dir is not None else ""
        parts.append(f"names code outside dlexp, torch, torchvision{mine}: {', '.join(foreign)}")
    if switches:
        parts.append(f"sets {', '.join(switches)}, which trusts what another file names")
    if parts:
        raise DlexpError(
            f"{source} {'; and '.join(parts)}. A run folder or checkpoint from someone else can "
            f"run any importable code this way; if you trust it, pass {flag}."
        )


def run_folder_of(source: Path) -> Path | None:
    """The run folder a config.yaml or a checkpoint (`<run>/checkpoints/<name>.pt`) is part
    of; None for a file elsewhere."""
    if source.name == "config.yaml":
        folder = source.parent
    elif source.parent.name == "checkpoints":
        folder = source.parent.parent
    else:
        return None
    return folder if (folder / "config.yaml").is_file() else None


def own_targets(run_dir: Path | None) -> frozenset[str]:
    """The `_target_`s that the config folders `run_dir` was started with name, and, while
    Hydra runs, those of the current command line."""
    found = live_targets()
    if run_dir is not None:
        found |= named_targets(recorded_config_dirs(run_dir))
    return frozenset(found)


def live_targets() -> set[str]:
    """The `_target_`s the running Hydra command names: in its config folders and overrides
    (none outside Hydra)."""
    if not HydraConfig.initialized():
        return set()
    hc = HydraConfig.get()
    folders = [Path(s.path) for s in hc.runtime.config_sources if s.schema == "file" and s.path]
    overrides = (o.partition("=") for o in [*hc.overrides.hydra, *hc.overrides.task])
    return named_targets(folders) | {
        v.strip("'\"") for k, _, v in overrides if k.endswith("_target_")
    }


def recorded_config_dirs(run_dir: Path) -> list[Path]:
    """The config folders in `run_dir`'s Hydra record (for a rerun: its source's) that count:
    absolute paths of folders that exist, outside the run folder."""
    record = _hydra_record(run_dir.resolve())
    try:
        hydra = (yaml.safe_load(record.read_text(encoding="utf-8")) or {}).get("hydra") or {}
        sources = hydra["runtime"]["config_sources"]
        paths = [Path(s["path"]) for s in sources if s.get("schema") == "file" and s.get("path")]
    except (OSError, ValueError, yaml.YAMLError, AttributeError, KeyError, TypeError):
        return []  # no record (a missing file is an OSError too), or not Hydra's
    inside = (run_dir.resolve(), record.parent.parent)
    return [
        p
        for p in paths
        if p.is_absolute() and p.is_dir() and not any(p.resolve().is_relative_to(r) for r in inside)
    ]


def _hydra_record(run_dir: Path) -> Path:
    """`<run>/.hydra/hydra.yaml`; for a `dlexp rerun`, which has none, its source's."""
    for _ in range(_MAX_RERUNS):
        source = run_dir / RERUN_RECORD
        if (run_dir / HYDRA_RECORD).is_file() or not source.is_file():
            break
        try:
            run_dir = Path(source.read_text(encoding="utf-8").strip()).resolve()
        except (OSError, ValueError):
            break
    return run_dir / HYDRA_RECORD


def named_targets(folders: list[Path]) -> set[str]:
    """The `_target_`s the YAML files of `folders` name (at most 3 levels deep)."""
    found: set[str] = set()
    read = 0
    for folder in folders:
        top = len(folder.parts)
        for root, dirs, files in os.walk(folder):
            depth = len(Path(root).parts) - top
            dirs[:] = [] if depth >= _MAX_DEPTH else [d for d in dirs if not d.startswith(".")]
            for name in files:
                if not name.endswith((".yaml", ".yml")) or read >= _MAX_FILES:
                    continue
                read += 1
                path = Path(root) / name
                try:
                    if path.stat().st_size > _MAX_BYTES:  # not a config someone wrote
                        continue
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                found.update(_TARGET.findall(text))
    return found
