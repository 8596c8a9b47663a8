"""Schemas of the GAN family (`model.task: gan`). Torch-free.

`schema.validate` calls `validate` instead of the classifier's model/optim checks when the
model config says `task: gan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def validate(cfg: Mapping[str, Any]) -> list[str]:
    """Problems in a GAN config (model, its two optimizers, losses, evaluation)."""
    return []
