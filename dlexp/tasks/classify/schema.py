"""Schema checks of the classification family (images and token sequences). Torch-free."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dlexp.config import schema_text
from dlexp.config.derived import model_image_problems, monitor_problems
from dlexp.config.schema import (
    MODELS,
    OPTIMIZERS,
    check_monitor,
    check_switches,
    check_timm_installed,
)
from dlexp.config.spec import _check_target_group

TEXT_MODELS = "model=lstm_sentiment, model=lstm, model=gru or model=rnn"


def validate(cfg: Mapping[str, Any]) -> list[str]:
    """The model, its switches, the optimizer, the model/data pairing and the monitor."""
    model = cfg.get("model") or {}
    tables = {**MODELS, **schema_text.MODELS}
    problems = _check_target_group("model", model, tables)
    problems += check_switches(cfg.get("regularization") or {}, model, tables)
    problems += check_timm_installed(model)
    problems += _check_target_group("optim", cfg.get("optim") or {}, OPTIMIZERS)
    problems += check_combination(cfg)
    problems += check_monitor(cfg)
    if not any(p.startswith("trainer.monitor:") for p in problems):
        problems += monitor_problems(cfg.get("trainer") or {})
    data = cfg.get("data") or {}
    if data.get("kind", "image") == "image":
        problems += model_image_problems(model, data)
    return problems


def check_combination(cfg: Mapping[str, Any]) -> list[str]:
    """Model/data pairs that cannot work together (e.g. a token model on images)."""
    model, data = cfg.get("model") or {}, cfg.get("data") or {}
    target, kind, name = model.get("_target_"), data.get("kind", "image"), data.get("name")
    sentiment = schema_text.SENTIMENT
    if kind == "text" and target in MODELS:
        return [
            f"model._target_: {target} reads images, but data={name} is a text data set "
            f"(token ids). Use a sequence model: {TEXT_MODELS}"
        ]
    if kind != "text" and target == sentiment:
        return [
            f"model._target_: {sentiment} (model=lstm_sentiment) reads token ids, but "
            f"data={name} is an image data set. Use model=lstm to read images row by row "
            f"(sequential MNIST), or a text data set: data=imdb or data=text_files"
        ]
    return []
