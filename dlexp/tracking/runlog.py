"""Where metrics go: `metrics.jsonl` always, and each chosen logger (TensorBoard by default; CSV,
MLflow, W&B: `logger=[...]`, see tracking/loggers/).

The loop calls `log_metrics` with plain floats it has already read back from the device; nothing
here forces a host sync. Loggers that send records elsewhere (MLflow, W&B) get them in batches
at the end of each epoch (or every half minute): a run killed between two checkpoints then
leaves few records there that its resumed run logs again, and those few are skipped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dlexp.config.naming import sweep_dir, varied_keys
from dlexp.errors import DlexpError
from dlexp.tracking.figures import as_rgb
from dlexp.tracking.hparams import headline, hparams_of, without_targets
from dlexp.tracking.loggers import Record, RunStart, open_logger
from dlexp.tracking.provenance import git_info
from dlexp.tracking.runfolder import COMMAND, LOGGERS, METRICS, RunFolder, read_json
from dlexp.tracking.writes import finite_or_str, write_text

__all__ = ["RunLogger", "hparams_of", "truncate_after"]  # hparams_of: for engine/report.py

log = logging.getLogger("dlexp")
FLUSH_SECONDS = 30.0


class RunLogger:
    """Appends metric records to `metrics.jsonl` and hands them to the chosen loggers.

    `loggers`: the config's `logger` node, {name: settings}; None: TensorBoard alone (or
    nothing, with tensorboard=False). `trainer`: the trainer group (log_graph, log_histograms).
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool = True,
        resume_step: int | None = None,
        loggers: Mapping[str, Any] | None = None,
        trainer: Mapping[str, Any] | None = None,
        output_root: Path | None = None,
        say: Callable[[str], None] | None = None,
    ):
        """`resume_step`: continuing from a checkpoint taken at that step. Records written after
        it (by a run that died before its next checkpoint) are dropped, so no step appears twice.
        """
        self.run_dir = run_dir
        self.resume_step = resume_step
        self.resumed = resume_step is not None
        self.metrics_path = run_dir / METRICS
        self.output_root = output_root or run_dir.parent
        self.say = say or log.info
        trainer = trainer or {}
        self.histograms_every = int(trainer.get("log_histograms") or 0)
        self.graph = bool(trainer.get("log_graph"))
        if resume_step is not None:
            truncate_after(self.metrics_path, resume_step)
        self._file = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115
        chosen = (
            dict(loggers) if loggers is not None else {"tensorboard": {}} if tensorboard else {}
        )
        self.loggers = {
            name: open_logger(name, settings or {}, run_dir, resume_step)
            for name, settings in chosen.items()
        }
        self._tb = self.loggers.get("tensorboard")
        self._state: dict[str, Any] = read_json(run_dir / LOGGERS) if self.resumed else {}
        self._pending: list[tuple[str, Any]] = []  # for batched loggers, in order
        self._flushed = time.monotonic()

    @property
    def _batched(self) -> dict[str, Any]:
        return {n: lg for n, lg in self.loggers.items() if lg.batched}

    # -- the start ---------------------------------------------------------------------------
    def log_hparams(
        self,
        hparams: Mapping[str, Any],
        *,
        metrics: Sequence[str] = (),
        charts: Mapping[str, Sequence[str]] | None = None,
        family: str = "",
        started: float | None = None,
    ) -> None:
        """Open each logger's run (a resumed run reopens the same one): the hyperparameters,
        the metrics the run is judged by (best first), the charts that draw several together."""
        shown = without_targets(hparams)
        folder = RunFolder(self.run_dir)
        sweep = sweep_dir()
        run = RunStart(
            run_dir=self.run_dir,
            name=self.run_dir.name,
            family=family,
            hparams=shown,
            headline=headline(shown, varied_keys()),
            metrics=list(metrics),
            charts={k: list(v) for k, v in (charts or {}).items()},
            config_text=_read_text(folder.config_path),
            command=_read_text(self.run_dir / COMMAND),
            git=git_info(Path.cwd()),
            started=started or time.time(),
            resumed_at=self.resume_step,
            sweep=sweep if sweep is not None and self.run_dir.parent == sweep else None,
            output_root=self.output_root,
        )
        for name, logger in list(self.loggers.items()):
            try:
                saved = logger.start(run, self._state.get(name) or {})
            except Exception as exc:  # a server that does not answer, a bad URI...
                del self.loggers[name]  # nothing to finish or close
                if isinstance(exc, DlexpError):
                    raise
                raise DlexpError(f"logger={name} could not start: {exc}") from None
            if saved:
                self._state[name] = {**(self._state.get(name) or {}), **saved}
            if logger.note:
                self.say(logger.note)
        self._tb = self.loggers.get("tensorboard")
        self._save_state()

    def log_graph(self, make: Callable[[], tuple[Any, Any]]) -> None:
        """TensorBoard's graph of the model, traced once (trainer.log_graph); `make()` gives
        the module and an example input."""
        if self._tb is None or not self.graph or self.resumed:
            return
        try:
            self._tb.log_graph(*make())
        except Exception as exc:  # tracing fails for some models (packed sequences...)
            self.say(f"note: no model graph in TensorBoard: {type(exc).__name__}: {exc}")

    # -- during the run ----------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], *, step: int, kind: str, **extra: Any):
        now = time.time()
        record = {"kind": kind, "step": step, **extra, "time": round(now, 3)}
        record.update({k: finite_or_str(v) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        # an epoch's training means sit at the step of its last interval: a name of their own,
        # or a chart would show two values at one step
        named = {
            (f"{k}_epoch" if kind == "epoch" and k.startswith("train/") else k): float(v)
            for k, v in metrics.items()
        }
        rec = Record(named, step, kind, now, extra.get("epoch"))
        for logger in self.loggers.values():
            if not logger.batched:
                logger.log_metrics([rec])
        if self._batched:
            self._pending.append(("metrics", rec))
            if kind != "step" or time.monotonic() - self._flushed > FLUSH_SECONDS:
                self.flush()

    def log_figure(self, tag: str, figure: Any, step: int) -> None:
        """`figure`: an RGB array (H, W, 3, uint8), or a matplotlib Figure."""
        if not self.loggers:
            return
        image = as_rgb(figure)
        for logger in self.loggers.values():
            if not logger.batched:
                logger.log_image(tag, image, step)
        if self._batched:
            self._pending.append(("image", (tag, image, step)))

    def log_histograms(self, networks: Mapping[str, Any], *, step: int, epoch: int) -> None:
        """Weights and gradients every trainer.log_histograms epochs (TensorBoard)."""
        every = self.histograms_every
        if self._tb is not None and every and epoch % every == 0:
            self._tb.log_histograms(networks, step)

    def flush(self) -> None:
        """Send what the batched loggers have not got yet; remember the last step sent."""
        pending, self._pending = self._pending, []
        self._flushed = time.monotonic()
        for name, logger in list(self._batched.items()):
            floor = int((self._state.get(name) or {}).get("step", -1)) if self.resumed else -1
            try:
                last = _send(logger, pending, floor)
            except Exception as exc:  # the run goes on: metrics.jsonl has every record
                self.say(f"warning: logger={name} stopped logging: {type(exc).__name__}: {exc}")
                del self.loggers[name]
                continue
            if last is not None:
                self._state.setdefault(name, {})["step"] = max(last, floor)
        if pending:
            self._save_state()

    # -- the end -----------------------------------------------------------------------------
    def end_hparams(self, status: str) -> None:
        """The run ended ('done', 'failed', 'interrupted', 'pruned'): each logger gets the
        status and summary.json (written just before)."""
        self.flush()
        summary = RunFolder(self.run_dir).read_summary()
        for name, logger in list(self.loggers.items()):
            try:
                logger.finish(status, summary)
            except Exception as exc:
                self.say(f"warning: logger={name} could not record the end: {exc}")

    def close(self) -> None:
        if self._pending:
            self.flush()
        for logger in self.loggers.values():
            logger.close()
        self.loggers, self._tb = {}, None
        if not self._file.closed:
            self._file.close()

    def _save_state(self) -> None:
        if self._state:
            write_text(self.run_dir / LOGGERS, json.dumps(self._state, indent=2) + "\n")


def _send(logger: Any, pending: Sequence[tuple[str, Any]], floor: int) -> int | None:
    """Hand `pending` to a batched logger in order, skipping steps up to `floor` (sent by an
    earlier session of this run); returns the last step sent."""
    last, records = None, []
    for what, item in pending:
        step = item.step if what == "metrics" else item[2]
        if step <= floor:
            continue
        last = step if last is None else max(last, step)
        if what == "metrics":
            records.append(item)
            continue
        if records:
            logger.log_metrics(records)
            records = []
        logger.log_image(*item)
    if records:
        logger.log_metrics(records)
    return last


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def truncate_after(path: Path, step: int) -> None:
    """Keep the records up to `step`; end-of-run records (test, best) are written again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a crash
        if record.get("step", 0) <= step and record.get("kind") not in ("test", "best"):
            kept.append(line)
    write_text(path, "".join(f"{line}\n" for line in kept))
