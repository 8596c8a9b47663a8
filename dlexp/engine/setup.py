"""The parts of a run every task shares: torch set-up, the run folder's files, provenance."""

from __future__ import annotations

import importlib
import os
import platform
import random
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from dlexp.engine.builders import resolve_device
from dlexp.errors import DlexpError

_DEFAULT_THREADS = torch.get_num_threads()  # torch's choice (OMP_NUM_THREADS or the cores)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_torch(trainer: Mapping[str, Any]) -> torch.device:
    """Device, threads, determinism and seeds, from the trainer config."""
    device = resolve_device(trainer["device"])
    # every setting both ways: the jobs of a sweep share one process, one after another
    torch.set_num_threads(int(trainer.get("threads") or _DEFAULT_THREADS))
    deterministic = bool(trainer["deterministic"])
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    # fixed input shapes: let cuDNN pick the fastest kernels, unless results must repeat
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = str(trainer["precision"])
    if precision == "16-mixed" and device.type != "cuda":
        raise DlexpError(
            f"trainer.precision=16-mixed needs a CUDA device (this run uses {device}). "
            "Use trainer.precision=bf16 on CPU, or 32."
        )
    seed_everything(int(trainer["seed"]))
    return device


def autocast_for(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return nullcontext()


def wants_channels_last(setting: Any, model: torch.nn.Module) -> bool:
    """`auto`: on for conv nets (measured 1.3-1.8x faster for LeNet on CPU), off otherwise."""
    if setting == "auto":
        return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return bool(setting)


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile, or a clear message where this platform cannot compile."""
    if not hasattr(torch, "compile"):
        raise DlexpError("trainer.compile=true needs torch>=2.0; set trainer.compile=false")
    try:
        check_dynamo()
    except Exception as exc:
        raise DlexpError(
            f"trainer.compile=true is not supported here ({exc}). Set trainer.compile=false."
        ) from None
    return torch.compile(model)


def check_dynamo() -> None:
    """Import torch's compiler front end: it fails early where compiling is unsupported."""
    importlib.import_module("torch._dynamo")


def git_info(where: Path) -> dict[str, Any]:
    """Commit and dirty flag of the git checkout dlexp was started from, if any."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {}


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware, for summary.json."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
    }
    try:
        from importlib.metadata import version

        info["dlexp"] = version("dlexp")
    except Exception:
        from dlexp import __version__

        info["dlexp"] = __version__
    return info


def write_run_files(run_dir: Path, cfg: Mapping[str, Any], resumed: bool = False) -> None:
    """The resolved config, the exact command and the provenance: the folder describes itself."""
    text = OmegaConf.to_yaml(OmegaConf.create(dict(cfg)))
    (run_dir / "config.yaml").write_text(text, encoding="utf-8")
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    with open(run_dir / "command.txt", "a" if resumed else "w", encoding="utf-8") as f:
        f.write(f"{command}\n" if not resumed else f"# {now_iso()} resumed with:\n{command}\n")
    write_provenance(run_dir / "provenance")


def write_provenance(folder: Path) -> None:
    """Installed packages (pip freeze format) and, in a git checkout, uncommitted changes."""
    from importlib.metadata import distributions

    folder.mkdir(exist_ok=True)
    names = sorted(
        {f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata["Name"]}
    )
    (folder / "requirements.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    info = git_info(Path.cwd())
    if info.get("dirty"):
        try:
            patch = subprocess.run(
                ["git", "diff", "HEAD"], cwd=Path.cwd(), capture_output=True, timeout=10, check=True
            ).stdout
            (folder / "git.patch").write_bytes(patch)
        except (OSError, subprocess.SubprocessError):
            pass


def check_writable(folder: Path, expected_bytes: int) -> None:
    """Fail at start-up, not hours later, when checkpoints cannot be written."""
    import shutil

    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"0" * 1024)
        probe.unlink()
    except OSError as exc:
        raise DlexpError(
            f"cannot write to {folder} ({exc.strerror or exc}). Choose another place with "
            "paths.output_root=... or DLEXP_OUTPUT_ROOT, or fix the folder's permissions."
        ) from None
    free = shutil.disk_usage(folder).free
    needed = 3 * expected_bytes + 64 * 2**20  # last + best + a temporary copy, plus logs
    if free < needed:
        raise DlexpError(
            f"only {free / 2**20:.0f} MiB free under {folder}; checkpoints of this model need "
            f"about {needed / 2**20:.0f} MiB. Free some space or set paths.output_root=..."
        )


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def update_latest(run_dir: Path, output_root: Path) -> None:
    """Record this run (or sweep job) in `<output_root>/latest`, a one-line text file.

    A text file rather than a symlink: TensorBoard follows links, so a `latest` link would
    show the newest run twice in `tensorboard --logdir outputs`.
    """
    output_root.mkdir(parents=True, exist_ok=True)
    link = output_root / "latest"
    if link.is_symlink() or link.is_dir():
        return  # never replace something the user made
    tmp = link.with_name(f".latest-{os.getpid()}")
    tmp.write_text(str(run_dir) + "\n", encoding="utf-8")
    os.replace(tmp, link)


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.time()
        self.started_at = now_iso()

    @property
    def elapsed(self) -> float:
        return time.time() - self.start
