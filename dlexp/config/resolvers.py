"""The OmegaConf resolvers the shipped configs use, and turning a config into plain data."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlexp.config.naming import job_name, run_name
from dlexp.config.paths import slug, unique_dir


def register_resolvers() -> None:
    """Resolvers the shipped configs use; registering twice is harmless."""
    # cached: every job of a sweep (and every re-resolution) sees the one folder first claimed
    OmegaConf.register_new_resolver("dlexp.unique_dir", unique_dir, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("dlexp.slug", slug, replace=True)
    OmegaConf.register_new_resolver("dlexp.run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("dlexp.job_name", job_name, replace=True)


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts/lists/scalars (what checkpoints and summaries store)."""
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(plain, dict)
    return plain
