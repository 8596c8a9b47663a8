"""Schemas of the sequence family (RNN/LSTM/GRU models, text data sets). Torch-free.

`schema.validate` merges MODELS into the model tables and calls `validate_data` for data
configs with `kind: text` and `check_combination` for every classification config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MODELS: dict[str, dict[str, Any]] = {}


def validate_data(prefix: str, data: Mapping[str, Any]) -> list[str]:
    """Problems in a `kind: text` data config."""
    return []


def check_combination(cfg: Mapping[str, Any]) -> list[str]:
    """Model/data pairs that cannot work together (e.g. a token model on images)."""
    return []
