"""Where metrics go: `metrics.jsonl`, TensorBoard events (scalars, images, HParams), train.log.

The loop calls `log_metrics` with plain floats it has already read back from the device; nothing
here forces a host sync.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlexp.tracking.runfolder import METRICS, finite_or_str, write_text

log = logging.getLogger("dlexp")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 0.1}} → {'optim.lr': 0.1}; lists become strings (HParams needs scalars)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = str(list(value))
        elif value is None:
            flat[name] = "null"
        else:
            flat[name] = value
    return flat


# Settings that change how a run is reported or where it reads from, not what it learns.
NOT_HPARAMS = (
    "data.data_dir",
    "data.download",
    "data.loader",
    "data.memory_budget_mb",
    "data.num_workers",
    "trainer.device",
    "trainer.eval_batch_size",
    "trainer.figures_every_n_epochs",
    "trainer.keep_last",
    "trainer.log_every_n_steps",
    "trainer.progress",
    "trainer.test_after_fit",
    "trainer.threads",
    "trainer.compile",
    "model.mkldnn",
    "model.pack",
)


def hparams_of(
    cfg: Mapping[str, Any],
    choices: Mapping[str, str] | None = None,
    ignored: Sequence[str] = (),
    effective: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The hyperparameters shown in TensorBoard's HParams dashboard and `dlexp compare`;
    `ignored`: the groups the run's family does not use (a GAN's optimizers live in its model
    config, so optim, scheduler and regularization do not apply to it). `effective` (the
    summary's) replaces what the config left to dlexp (null, auto) with the value that ran."""
    groups = ("model", "optim", "scheduler", "regularization", "trainer", "data")
    groups = tuple(g for g in groups if g not in ignored)
    keep = {g: cfg[g] for g in groups if g in cfg}
    flat = flatten(keep)
    ran = flatten(dict(effective or {}))
    flat.update({k: v for k, v in ran.items() if k in flat or k.split(".")[0] in groups})
    for noisy in NOT_HPARAMS:
        flat.pop(noisy, None)
    for group, choice in (choices or {}).items():
        if group in groups or group not in ("optim", "scheduler", "regularization"):
            flat[group] = choice
    return flat


class RunLogger:
    """Appends metric records to `metrics.jsonl` and mirrors them to TensorBoard.

    Events go straight into the run folder, so `tensorboard --logdir outputs` lists each run
    under its own name, and the HParams session is written into that same event folder (not a
    timestamped sub-run, the `SummaryWriter.add_hparams` pitfall).
    """

    def __init__(self, run_dir: Path, *, tensorboard: bool = True, resume_step: int | None = None):
        """`resume_step`: continuing from a checkpoint taken at that step. Records written after
        it (by a run that died before its next checkpoint) are dropped, so no step appears twice.
        """
        self.run_dir = run_dir
        self.resumed = resume_step is not None
        self.metrics_path = run_dir / METRICS
        if resume_step is not None:
            truncate_after(self.metrics_path, resume_step)
        self._file = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._tb = SummaryWriter(log_dir=str(run_dir), purge_step=purge)

    def log_metrics(self, metrics: Mapping[str, float], *, step: int, kind: str, **extra: Any):
        record = {"kind": kind, "step": step, **extra, "time": round(time.time(), 3)}
        record.update({k: finite_or_str(v) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for tag, value in metrics.items():
                if kind == "epoch" and tag.startswith("train/"):
                    # the epoch mean, at the same step as the last interval's train/loss: its
                    # own tag, or TensorBoard would show two values at one step
                    tag = f"{tag}_epoch"
                self._tb.add_scalar(tag, value, step)

    def log_figure(self, tag: str, figure: Any, step: int) -> None:
        """`figure`: an RGB array (H, W, 3, uint8), or a matplotlib Figure."""
        if self._tb is None:
            return
        if getattr(figure, "ndim", None) == 3:
            self._tb.add_image(tag, figure, step, dataformats="HWC")
        else:
            self._tb.add_figure(tag, figure, step, close=False)

    def log_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Open an HParams session for this run; metrics are this run's own scalar tags.

        TensorBoard keeps the first start and end record of a run only, so a resumed run writes
        no second start, and an interrupted one no end: the end comes when it is finished."""
        if self._tb is None or self.resumed:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        _, session_start, _ = hparams_summary(dict(hparams), {})
        self._tb.file_writer.add_summary(session_start)

    def end_hparams(self, status: str) -> None:
        """Close the HParams session: 'done' → success, anything else → failure/aborted."""
        if self._tb is None or status == "interrupted":  # to be resumed: see log_hparams
            return
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
        from torch.utils.tensorboard.summary import Summary, SummaryMetadata

        codes = {"done": api_pb2.STATUS_SUCCESS}
        end = plugin_data_pb2.SessionEndInfo(
            status=codes.get(status, api_pb2.STATUS_FAILURE), end_time_secs=time.time()
        )
        content = plugin_data_pb2.HParamsPluginData(session_end_info=end, version=0)
        meta = SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(
                plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
            )
        )
        self._tb.file_writer.add_summary(
            Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=meta)])
        )

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
        if not self._file.closed:
            self._file.close()


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
