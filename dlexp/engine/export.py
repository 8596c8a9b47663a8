"""Write a trained module as ONNX or TorchScript, and prove the file computes what PyTorch does.

A family says what it exports with an `Exportable` (see `tasks/registry.py`): the module, real
inputs, names and a description of its inputs for the JSON beside the file. The file is written
under a temporary name, run on the real inputs in batches of 1 and 7 — by ONNX Runtime, or by
the TorchScript interpreter — and compared with the eager module; only when the largest
difference is under `TOLERANCE` do the file and its JSON take their names. A failed export
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dlexp.errors import DlexpError
from dlexp.tracking.writes import write_json

FORMATS = ("onnx", "torchscript")
OPSET = 18  # ONNX Runtime >= 1.14 runs it
TOLERANCE = 1e-4
BATCH_SIZES = (1, 7)
EXTRA = "pip install 'dlexp[export]'"


@dataclass
class Exportable:
    """What a family exports: a module (eval mode, CPU, float32) and how to feed it."""

    module: nn.Module
    batch: Callable[[int], tuple[Tensor, ...]]  # the first n real inputs, as one batch
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic: tuple[Mapping[int, str], ...]  # per input: axis → name; axis 0 is "batch"
    meta: dict[str, Any]  # for the JSON: how to prepare inputs and read outputs, without dlexp
    checked_on: str  # where the real inputs come from, e.g. "7 validation images"
    unsupported: Mapping[str, str] = field(default_factory=dict)  # format → why not


@dataclass
class Exported:
    path: Path
    sidecar: Path
    differences: dict[int, float]  # batch size → largest |exported - eager|


def check_noise(payload: Mapping[str, Any], latent: int) -> tuple[Tensor, str]:
    """The rows a generator's or decoder's export is checked on: the run's own fixed noise
    (behind its per-epoch grids), or seeded standard-normal rows where it has too few; and
    the words that say which."""
    count = max(BATCH_SIZES)
    noise = payload.get("fixed_noise")
    if noise is None or len(noise) < count:
        seeded = torch.randn(count, latent, generator=torch.Generator().manual_seed(0))
        return seeded, f"{count} noise vectors (seed 0)"
    return noise[:count].float().cpu(), f"{count} rows of the run's fixed noise"


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def export(exp: Exportable, fmt: str, path: Path, meta: Mapping[str, Any]) -> Exported:
    """Write `exp` to `path` in format `fmt`, check it, then write its JSON beside it."""
    if fmt in exp.unsupported:
        raise DlexpError(exp.unsupported[fmt])
    exp.module.eval()
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    done = False
    try:
        run = _onnx(exp, tmp) if fmt == "onnx" else _torchscript(exp, tmp)
        differences = {n: _difference(exp, run, n) for n in BATCH_SIZES}
        worst = max(differences.values())
        if not worst < TOLERANCE:  # also NaN
            raise DlexpError(
                f"the {fmt} file's outputs differ from PyTorch's by up to {worst:.3g} on "
                f"{exp.checked_on} (the limit is {TOLERANCE:g}); nothing was written"
            )
        info = {**meta, **_signature(exp), **exp.meta, "file": path.name}
        info["check"] = {
            "inputs": exp.checked_on,
            "max_difference": {str(n): d for n, d in differences.items()},
            "tolerance": TOLERANCE,
        }
        os.replace(tmp, path)
        write_json(sidecar_path(path), info)
        done = True
    finally:
        if tmp.exists():
            tmp.unlink()
        if created and not done:  # a failed export leaves no empty folder either
            with contextlib.suppress(OSError):
                path.parent.rmdir()
    return Exported(path, sidecar_path(path), differences)


def _difference(exp: Exportable, run: Callable[..., list[Tensor]], n: int) -> float:
    inputs = exp.batch(n)
    with torch.no_grad():
        expected = _outputs(exp.module(*inputs))
    got = run(*inputs)
    return max(
        float((g.float() - e.float()).abs().max()) for g, e in zip(got, expected, strict=True)
    )


def _outputs(value: Any) -> list[Tensor]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _signature(exp: Exportable) -> dict[str, Any]:
    """Names, shapes ("batch" and other named axes) and dtypes of the inputs and outputs."""
    inputs = exp.batch(BATCH_SIZES[-1])
    with torch.no_grad():
        outputs = _outputs(exp.module(*inputs))

    def describe(names: tuple[str, ...], tensors: list[Tensor], axes: tuple) -> list[dict]:
        return [
            {
                "name": name,
                "shape": [
                    axes[i].get(a, size) if i < len(axes) else size
                    for a, size in enumerate(t.shape)
                ],
                "dtype": str(t.dtype).removeprefix("torch."),
            }
            for i, (name, t) in enumerate(zip(names, tensors, strict=True))
        ]

    batch_only = tuple({0: "batch"} for _ in outputs)
    return {
        "inputs": describe(exp.input_names, list(inputs), exp.dynamic),
        "outputs": describe(exp.output_names, outputs, batch_only),
    }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' progress lines and warnings (deprecations, tracer notes) are theirs, not
    the user's: the parity check afterwards is what tells whether the file is right."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _failure(fmt: str, exp: Exportable, exc: Exception) -> DlexpError:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    summary = next((line for line in lines if line.startswith("<class")), lines[0] if lines else "")
    return DlexpError(
        f"{type(exp.module).__name__} cannot be exported to {fmt} "
        f"({type(exc).__name__}: {summary[:300]}); nothing was written"
    )


def _onnx(exp: Exportable, path: Path) -> Callable[..., list[Tensor]]:
    import onnxruntime  # optional (dlexp[export]); the CLI checks for it first

    dims: dict[str, Any] = {}
    shapes = tuple(
        {axis: dims.setdefault(name, torch.export.Dim(name, min=1)) for axis, name in d.items()}
        for d in exp.dynamic
    )
    try:
        with _quiet():
            torch.onnx.export(
                exp.module, exp.batch(BATCH_SIZES[-1]), str(path),
                input_names=list(exp.input_names), output_names=list(exp.output_names),
                opset_version=OPSET, dynamic_shapes=shapes, dynamo=True, verbose=False,
                external_data=False,
            )  # fmt: skip
    except Exception as exc:  # torch.export's and the translator's errors: many types
        raise _failure("ONNX", exp, exc) from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(*inputs: Tensor) -> list[Tensor]:
        feed = {name: t.cpu().numpy() for name, t in zip(exp.input_names, inputs, strict=True)}
        return [torch.from_numpy(out) for out in session.run(None, feed)]

    return run


def _torchscript(exp: Exportable, path: Path) -> Callable[..., list[Tensor]]:
    try:
        with _quiet():
            traced = torch.jit.trace(exp.module, exp.batch(BATCH_SIZES[-1]), check_trace=False)
            torch.jit.save(traced, str(path))
            loaded = torch.jit.load(str(path))
    except Exception as exc:  # tracing errors come in many types
        raise _failure("TorchScript", exp, exc) from None

    def run(*inputs: Tensor) -> list[Tensor]:
        with _quiet(), torch.no_grad():
            return _outputs(loaded(*inputs))

    return run
