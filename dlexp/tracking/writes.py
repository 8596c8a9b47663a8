"""How dlexp writes a file: atomically (a temporary file renamed over the old one), so a
reader never sees half a file and a killed process leaves the previous version; JSON that
strict parsers accept; the time stamp the files carry. Torch-free.

The run folder (tracking/runfolder.py) names the files; its lock (tracking/lock.py) writes
through here too.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    """Write `text` atomically: a temporary file in the same folder, renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """JSON, atomically; NaN and infinities as strings ("nan"): strict parsers reject them."""
    write_text(path, json.dumps(_json_safe(data), indent=2, default=str, allow_nan=False) + "\n")


def finite_or_str(value: float) -> float | str:
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return finite_or_str(value)
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
