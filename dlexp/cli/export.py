"""`dlexp export <run | latest> [format=onnx|torchscript] [ckpt=best|last] [out=FILE] [--trust]`

Writes a run's model as ONNX (opset 18, a dynamic batch axis) or TorchScript, with a JSON beside
it: input and output shapes and dtypes, the normalisation, the class names and, for text, the
vocabulary and `max_len` — what a user needs to prepare inputs without dlexp. A classification
run exports its classifier, a GAN its generator (noise in, images out). The file is checked on
real inputs from the run (its validation split, or its fixed noise) in batches of 1 and 7
against the eager model — by ONNX Runtime, or by the TorchScript interpreter — and kept only
when the largest difference is under 1e-4.
Default: <run>/exports/best.onnx (best.json beside it) or best.torchscript.pt.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from dlexp.cli.kvargs import parse_key_values
from dlexp.cli.predict import CHECKPOINTS, checkpoint_path, load_payload
from dlexp.cli.runconfig import load_run_config
from dlexp.cli.verbs import split_flags
from dlexp.config.trust import check_trust
from dlexp.errors import DlexpError
from dlexp.tasks import registry
from dlexp.tracking.runfolder import RunFolder, find_run

USAGE = (
    "usage: dlexp export <run folder | latest> format=onnx|torchscript ckpt=best|last "
    "out=FILE --trust (all but the run folder optional; the first of each is the default)"
)
DEFAULTS = {"format": "onnx", "ckpt": "best", "out": ""}
FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts")}
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def parse_args(args: list[str]) -> dict[str, Any]:
    raw = parse_key_values(args, DEFAULTS, "export", USAGE)
    fmt, ckpt = raw["format"], raw["ckpt"]
    if fmt not in FORMATS:
        raise DlexpError(f"format={fmt}: must be one of {', '.join(FORMATS)}")
    if ckpt not in CHECKPOINTS:
        raise DlexpError(f"ckpt={ckpt}: must be one of {', '.join(CHECKPOINTS)}")
    out = Path(raw["out"]) if raw["out"] else None
    if out is not None and (out.is_dir() or out.suffix.lower() not in SUFFIXES[fmt]):
        raise DlexpError(
            f"out={out}: give a file name ending in {' or '.join(SUFFIXES[fmt])} for "
            f"format={fmt} (its JSON goes beside it, as {out.with_suffix('.json').name})"
        )
    return {"format": fmt, "ckpt": ckpt, "out": out}


def check_extra(fmt: str) -> None:
    """ONNX needs the optional packages of dlexp[export]; name them when they are missing."""
    if fmt != "onnx":
        return
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise DlexpError(
            f"format=onnx needs {', '.join(ONNX_PACKAGES)} (missing: {', '.join(missing)}); "
            "install the export extra: pip install 'dlexp[export]' (make install does), or "
            "use format=torchscript"
        )


def writable(out: Path) -> None:
    """The file's folder (or the nearest one above it that exists) takes new files."""
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise DlexpError(f"cannot write {out}: {folder} is not a folder this user can write to")


def export_run(argv: list[str]) -> Any:
    """Check everything, export and check the file; returns what was written."""
    args, flags = split_flags(argv, ("--trust",))
    if not args:
        raise DlexpError(USAGE)
    options = parse_args(args[1:])
    run_dir = find_run(args[0])
    folder = RunFolder(run_dir)
    cfg, _ = load_run_config(run_dir)
    trusted = "--trust" in flags
    check_trust(cfg, trusted=trusted, source=folder.config_path)
    registry.require(cfg, "export", run_dir)
    fmt, ckpt = options["format"], options["ckpt"]
    check_extra(fmt)
    ckpt_path = checkpoint_path(run_dir, ckpt)
    out = options["out"] or folder.export(ckpt, fmt)
    writable(out)
    inside = out.resolve().is_relative_to(run_dir.resolve())

    from dlexp.engine.export import OPSET, export  # torch: once the request is checked

    payload = load_payload(ckpt_path, trusted)
    exp = registry.export_module(cfg, payload, ckpt_path)
    meta = {
        "format": fmt,
        **({"opset": OPSET} if fmt == "onnx" else {}),
        "run": str(run_dir),
        "checkpoint": ckpt_path.name,
        "epoch": (payload.get("train_state") or {}).get("epoch"),
    }
    if inside:  # the run folder is written: not while a run trains there
        with folder.lock("exports"):
            done = export(exp, fmt, out, meta)
    else:
        done = export(exp, fmt, out, meta)
    report(exp, done, fmt, ckpt_path, meta)
    return done


def report(exp: Any, done: Any, fmt: str, ckpt: Path, meta: dict[str, Any]) -> None:
    from dlexp.engine.export import TOLERANCE  # torch: only once the request is checked

    what = (
        f"ONNX opset {meta.get('opset')} with a dynamic batch axis"
        if fmt == "onnx"
        else "TorchScript (traced)"
    )
    judge = "ONNX Runtime" if fmt == "onnx" else "the TorchScript interpreter"
    worst = ", ".join(f"{d:.2g} (batch {n})" for n, d in done.differences.items())
    model = type(exp.module).__name__
    print(f"exported {model} ({ckpt.name}, epoch {meta['epoch']}) as {what} to {done.path}")
    print(
        f"checked with {judge} on {exp.checked_on}: largest difference from PyTorch {worst}, "
        f"under {TOLERANCE:g}"
    )
    print(f"how to prepare its inputs (shapes, dtypes, normalisation, classes): {done.sidecar}")


def main(argv: list[str]) -> int:
    """The `dlexp export` verb: 0 on success; a bad request raises DlexpError (exit 2)."""
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    export_run(argv)
    return 0
