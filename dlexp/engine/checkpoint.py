"""Checkpoints: plain dicts of tensors and plain types, written atomically, read with weights_only.

Anyone can open one without dlexp: `torch.load("last.pt", weights_only=True)`. Keys:
  format, model, optimizer, scheduler, scaler, train_state, rng, config, classes, metrics, versions
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlexp.errors import DlexpError

FORMAT = "dlexp.checkpoint/1"


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file, flush it to disk, then rename over `path`.

    The rename is atomic, so a process killed mid-save leaves the previous file intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_epoch_checkpoints(
    save: Callable[[str], None], folder: Path, epoch: int, is_best: bool, keep_last: int
) -> None:
    """last.pt every epoch, best.pt on improvement, and epoch_NNNN.pt of the last N epochs."""
    save("last")
    if is_best:
        save("best")
    if keep_last > 1:
        save(f"epoch_{epoch:04d}")
        for old in sorted(folder.glob("epoch_*.pt"))[:-keep_last]:
            old.unlink()  # only after the newer copy is safely on disk


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True`: a file carrying arbitrary pickled objects is refused."""
    if not path.is_file():
        raise DlexpError(f"checkpoint not found: {path}")
    import zipfile

    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":  # a zip archive's start, without its end
                raise DlexpError(
                    f"{path} is damaged: a zip archive cut short (a write that did not finish, "
                    "or a copy that stopped); use another checkpoint of the run"
                )
        raise DlexpError(
            f"{path} is not a PyTorch checkpoint (torch.save writes a zip archive); give the "
            "checkpoints/best.pt or last.pt of a dlexp run"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError for unsafe globals, RuntimeError for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DlexpError(
            f"refusing to load {path}: it is not a plain tensor checkpoint ({first}). "
            "dlexp only opens checkpoints with torch.load(weights_only=True), so files that "
            "carry pickled code are never executed."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DlexpError(f"{path} is not a dlexp checkpoint (no '{FORMAT}' format tag)")
    return payload


def capture_rng() -> dict[str, Any]:
    """Every RNG a run touches, as tensors and plain types."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, np_keys.tolist(), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, np_gauss = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_optimizer_state(optimizer: Any, state: dict[str, Any], keep_settings: bool) -> None:
    """Load the saved moments and step counts. With `keep_settings` (a resume that changed the
    optimizer's config on purpose) the optimizer keeps its own lr, weight decay, betas, ...
    instead of the saved ones, which `load_state_dict` would bring back."""
    own = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    if keep_settings:
        for group, settings in zip(optimizer.param_groups, own, strict=True):
            group.update(settings)
