"""Names of run and job folders, and what a sweep varies. Torch-free.

A sweep's job folder is named by what differs between its jobs, not by every override: in
`dlexp -m trainer.epochs=3 optim.lr=0.1,0.01` the jobs are `0_optim.lr=0.1` and
`1_optim.lr=0.01` (TensorBoard cuts long run names, and the shared part would come first).

The sweep's master process knows which overrides every job shares; its jobs may run in other
processes (joblib, submitit). The Hydra callback `dlexp.sweeps.naming.JobNames` passes that
on through environment variables, which this module reads:

    DLEXP_SWEEP_SHARED  JSON list: keys of the overrides every job of the sweep shares
    DLEXP_SWEEP_DIR     the sweep folder (set in the sweep's processes only)
    DLEXP_VARIED        JSON list: keys this run was given that other runs may not share
                        (a sweep job: the swept ones; a single run: its command line's)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from dlexp.config.paths import slug

SHARED_ENV = "DLEXP_SWEEP_SHARED"
SWEEP_ENV = "DLEXP_SWEEP_DIR"
VARIED_ENV = "DLEXP_VARIED"


def override_key(line: str) -> str:
    """`+optim.lr=0.1` → `optim.lr`; `~model.dropout` → `model.dropout`."""
    return str(line).split("=", 1)[0].lstrip("+~")


def _env_list(name: str) -> list[str] | None:
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return [str(v) for v in value] if isinstance(value, list) else None


def shared_keys() -> set[str]:
    """Keys every job of the running sweep shares (none outside a sweep)."""
    return set(_env_list(SHARED_ENV) or ())


def varied_keys() -> list[str] | None:
    """Keys this run was given that set it apart; None when nobody said (not started by
    Hydra, e.g. `dlexp rerun`)."""
    return _env_list(VARIED_ENV)


def sweep_dir() -> Path | None:
    """The sweep folder this process runs jobs of, if any."""
    value = os.environ.get(SWEEP_ENV)
    return Path(value) if value else None


def varied(overrides: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """The overrides that are not shared by every job and not excluded, sorted (as Hydra's
    override_dirname sorts them)."""
    skip = set(map(str, exclude)) | shared_keys()
    return sorted(str(o) for o in overrides if override_key(o) not in skip)


def job_name(num: int, overrides: Iterable[str], exclude: Iterable[str] = ()) -> str:
    """A sweep job's folder: `<num>_<what it varies>`, or `<num>` when nothing varies."""
    kept = varied(overrides, exclude)
    return slug(f"{num}_{','.join(kept)}") if kept else str(num)


def run_name(name: object, default: str) -> str:
    """A run's (or sweep's) name for its folder: the user's `name=...`, else `default`."""
    return slug(str(name)) if name not in (None, "") else default
