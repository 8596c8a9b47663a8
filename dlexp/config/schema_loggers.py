"""The logger group's schema: which loggers exist, their settings, and whether the package of
each chosen one is installed (found without importing it). Torch-free."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from dlexp.config.spec import BOOL, Choice, Spec, _check_table, unknown_key

# the logger group: one node per chosen logger (logger=[tensorboard,mlflow])
LOGGERS: dict[str, dict[str, Any]] = {
    "tensorboard": {},
    "csv": {},
    "mlflow": {
        "tracking_uri": Spec("str", nullable=True),
        "experiment": Spec("str", nullable=True),
        "log_checkpoints": BOOL,
    },
    "wandb": {
        "project": Spec("str"),
        "entity": Spec("str", nullable=True),
        "mode": Choice("online", "offline", "disabled", nullable=True),
        "dir": Spec("str", nullable=True),
        "tags": Spec("any"),
    },
}
EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}  # logger → the package (and dlexp's extra)


def check_loggers(loggers: Any) -> list[str]:
    """Known loggers with valid settings, and the package of each chosen one installed
    (found, not imported: importing mlflow takes seconds)."""
    if loggers is None:
        return []
    if not isinstance(loggers, Mapping):
        return [f"logger: expected loggers chosen with logger=[tensorboard,...], got {loggers!r}"]
    problems = []
    for name, settings in loggers.items():
        if name not in LOGGERS:
            problems.append(unknown_key(f"logger.{name}", str(name), LOGGERS))
            continue
        problems += _check_table(f"logger.{name}", settings or {}, LOGGERS[name])
        package = EXTRAS.get(name)
        if package and importlib.util.find_spec(package) is None:
            problems.append(
                f"logger={name}: the {package} package is not installed; "
                f"pip install 'dlexp[{name}]' (or pip install {package})"
            )
    return problems
