"""The run folder's one owner: every file name in it, every write to it, and its lock.

A run folder holds:

    config.yaml       the resolved config (with `dlexp_schema`, the config schema version)
    command.txt       the command that started the run, and each resume
    summary.json      what the run was and how it ended
    metrics.jsonl     one record per log interval, epoch, test and eval
    metrics.csv, run.csv    logger=csv: the records as a table; the run as one row
    loggers.json      the MLflow / W&B run this run logs to (a resume continues it)
    train.log         the log (errors included)
    events.out.tfevents.*   TensorBoard
    checkpoints/      last.pt, best.pt, epoch_NNNN.pt
    figures/          PNGs
    provenance/       requirements.txt (pip freeze), git.patch
    vocab.json        text runs: the vocabulary
    exports/          `dlexp export`: best.onnx, best.torchscript.pt, each with its .json
    .lock             while a process trains or evaluates here: who (the lock is on the folder)

Every write is atomic (tracking/writes.py), so a reader never sees half a file and a killed
process leaves the previous version. Torch-free.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from dlexp.errors import DlexpError
from dlexp.tracking.lock import LOCK, hold
from dlexp.tracking.writes import now_iso, write_json, write_text

CONFIG = "config.yaml"
COMMAND = "command.txt"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
RUN_CSV = "run.csv"
LOGGERS = "loggers.json"
LOG = "train.log"
CHECKPOINTS = "checkpoints"
FIGURES = "figures"
PROVENANCE = "provenance"
VOCAB = "vocab.json"
EXPORTS = "exports"
EXPORT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
LATEST = "latest"  # in the output root: the newest run's path, one line
SCHEMA_KEY = "dlexp_schema"  # config.yaml's schema version
SCHEMA_VERSION = 1


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_run(arg: str) -> Path:
    """A run folder from a path, or `latest` (the newest run under the output root)."""
    path = Path(arg)
    if arg == "latest" or (path.name == "latest" and path.is_file()):
        pointer = (
            path
            if path.is_file()
            else Path(os.environ.get("DLEXP_OUTPUT_ROOT", "outputs")) / LATEST
        )
        if not pointer.is_file():
            raise DlexpError(f"no latest run: {pointer} does not exist. Give a run folder instead.")
        path = Path(pointer.read_text(encoding="utf-8").strip())
    if not (path / CONFIG).is_file():
        raise DlexpError(
            f"{path} is not a dlexp run folder (it has no config.yaml). "
            "Give a folder under outputs/runs/ or outputs/sweeps/<sweep>/, or `latest`."
        )
    return path.resolve()


class RunFolder:
    """One run's folder. Names its files; reads and writes them; holds its lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    # -- names -------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def log_path(self) -> Path:
        return self.path / LOG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def figures(self) -> Path:
        return self.path / FIGURES

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / f"{name}.pt"

    def figure(self, filename: str) -> Path:
        return self.figures / filename

    def checkpoint_names(self) -> list[str]:
        """The run's checkpoints by name: last, best, then epoch_NNNN newest first."""
        names = [p.stem for p in self.checkpoints.glob("*.pt")] if self.checkpoints.is_dir() else []
        order = {"last": 0, "best": 1}
        return sorted(names, key=lambda n: (order.get(n, 2), [-ord(c) for c in n]))

    def damaged(self, name: str) -> str | None:
        """Why checkpoint `name` cannot be read back (truncated, corrupt), or None. Reads the
        whole file and checks every member's CRC; torch-free."""
        import zipfile

        path = self.checkpoint(name)
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except zipfile.BadZipFile as exc:
            return f"{exc}; a write was cut short, or the file was changed since"
        except OSError as exc:
            return exc.strerror or str(exc)
        return f"{bad} fails its checksum" if bad else None

    def export(self, ckpt: str, fmt: str) -> Path:
        """Where `dlexp export` writes a checkpoint's model in format `fmt` by default."""
        return self.path / EXPORTS / f"{ckpt}{EXPORT_SUFFIXES[fmt]}"

    def holds_run(self) -> bool:
        """Whether a run has started here (a summary or a checkpoint exists)."""
        return self.summary_path.is_file() or self.checkpoint("last").is_file()

    # -- reading -----------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """config.yaml, resolved, as plain data; a file that is not YAML is named with its line."""
        from omegaconf import OmegaConf  # the config layer's YAML reader; torch-free
        from yaml import YAMLError

        path = self.config_path
        try:
            cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        except UnicodeDecodeError as exc:
            raise DlexpError(
                f"{path} is not text in UTF-8 (byte {exc.start}): not a config dlexp wrote"
            ) from None
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise DlexpError(f"{path} is not valid YAML{where}: {problem}") from None
        except Exception as exc:  # noqa: BLE001 - OmegaConf's interpolation errors and friends
            raise DlexpError(f"{path} cannot be read: {exc}") from None
        if not isinstance(cfg, dict):
            raise DlexpError(
                f"{path} holds no config (a mapping of groups), but {type(cfg).__name__}"
            )
        if not cfg:  # not an older config to fill with today's defaults: nothing is left
            raise DlexpError(f"{path} is empty: the run's config is lost; start a new run")
        return cfg

    def read_summary(self) -> dict[str, Any]:
        """summary.json, or {} when there is none (or it cannot be read)."""
        return read_json(self.summary_path)

    # -- writing -----------------------------------------------------------------------------
    def write_config(self, cfg: Mapping[str, Any]) -> None:
        from omegaconf import OmegaConf  # the config layer's YAML writer; torch-free

        plain = {SCHEMA_KEY: SCHEMA_VERSION, **{k: v for k, v in cfg.items() if k != SCHEMA_KEY}}
        write_text(self.config_path, OmegaConf.to_yaml(OmegaConf.create(plain)))

    def write_command(self, resumed: bool) -> None:
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        path = self.path / COMMAND
        if resumed and path.is_file():
            earlier = path.read_text(encoding="utf-8")
            write_text(path, f"{earlier}# {now_iso()} resumed with:\n{command}\n")
        else:
            write_text(path, f"{command}\n")

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        write_json(self.summary_path, summary)

    def write_refusal(self, error: str) -> None:
        """A run refused before it started (a sweep job) still says why, in the summary's
        shape, unless a summary is there already."""
        if self.summary_path.is_file():
            return
        summary = {"status": "failed", "error": error, "run_dir": str(self.path)}
        summary.update(best={"value": None, "epoch": 0}, final={}, test={}, ended_at=now_iso())
        summary.update(epochs_completed=0, steps=0)
        self.write_summary(summary)

    def set_aside(self) -> Path | None:
        """A failed run is started again: its files move to failed_attempts/<time>/, never
        deleted (Hydra's .hydra/ stays); returns where they went."""
        keep = {".hydra", "failed_attempts", LOCK}
        items = [p for p in self.path.iterdir() if p.name not in keep]
        if not items:
            return None
        target = self.path / "failed_attempts" / time.strftime("%Y-%m-%d_%H-%M-%S")
        target.mkdir(parents=True, exist_ok=True)
        for item in items:
            os.replace(item, target / item.name)
        return target

    def write_file(self, name: str, text: str) -> None:
        """A text file of the task's (e.g. vocab.json) at the top of the folder."""
        write_text(self.path / name, text)

    def record_eval(self, name: str, step: int, ckpt: str, result: Mapping[str, float]) -> Path:
        """`dlexp eval`'s result: a record in metrics.jsonl and `<name>.json`; its path."""
        record = {"kind": "eval", "step": step, "checkpoint": ckpt, **result}
        record["time"] = round(time.time(), 3)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        path = self.path / f"{name}.json"
        write_text(path, json.dumps(record, indent=2) + "\n")
        return path

    def write_provenance(self, requirements: str, patch: bytes | None) -> None:
        folder = self.path / PROVENANCE
        write_text(folder / "requirements.txt", requirements)
        if patch:
            (folder / "git.patch").write_bytes(patch)

    def set_latest(self, output_root: Path) -> None:
        """Record this run in `<output_root>/latest`, a one-line text file.

        A text file rather than a symlink: TensorBoard follows links, so a `latest` link would
        show the newest run twice in `tensorboard --logdir outputs`.
        """
        output_root.mkdir(parents=True, exist_ok=True)
        link = output_root / LATEST
        if link.is_symlink() or link.is_dir():
            return  # never replace something the user made
        write_text(link, f"{self.path}\n")

    # -- the lock (tracking/lock.py) --------------------------------------------------------
    def lock(self, purpose: str = "trains") -> AbstractContextManager[None]:
        """Hold the folder's lock: one process writes here at a time. FolderOccupied names the
        holder when another process has it; `purpose` says what this one does here."""
        return hold(self.path, purpose)
