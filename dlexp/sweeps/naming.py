"""Tells every run what sets it apart: the Hydra callback behind job folder names and the
hyperparameters TensorBoard's HParams table shows first (see `dlexp.config.naming`).

A sweep's master process parses the command line once: the overrides that are not sweeps are
shared by every job. Environment variables carry that to the jobs, in this process or in
worker processes started after it (joblib, submitit). Torch-free.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dlexp.config.naming import SHARED_ENV, SWEEP_ENV, VARIED_ENV, override_key, varied


def shared_overrides(arguments: list[str]) -> list[str]:
    """Keys of the command line's overrides that are no sweep: every job has them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(arguments)
    except Exception:  # Hydra reports its own parse errors
        return []
    return [o.key_or_group for o in parsed if not o.is_sweep_override()]


class JobNames(Callback):
    """Registered in configs/config.yaml (hydra.callbacks.job_names)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # (not hydra.sweep.dir: resolving it claims the folder, before the sweep is known to run)
        task = [str(o) for o in config.hydra.overrides.task]
        os.environ[SHARED_ENV] = json.dumps(shared_overrides(task))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hc = config.hydra
        exclude = list(hc.job.config.override_dirname.exclude_keys)
        keys = [override_key(o) for o in varied(list(hc.overrides.task), exclude)]
        os.environ[VARIED_ENV] = json.dumps(keys)
        if str(hc.mode) == "RunMode.MULTIRUN":
            os.environ[SWEEP_ENV] = str(hc.sweep.dir)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        os.environ.pop(VARIED_ENV, None)  # the next job (or a later run in-process) says its own
        os.environ.pop(SWEEP_ENV, None)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SHARED_ENV, None)
