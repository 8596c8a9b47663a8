"""TensorBoard, arranged the way people read it.

Event files go straight into the run folder, so `tensorboard --logdir outputs` lists each run
under its own name, with its HParams session in that same folder (not a timestamped sub-run).

- Time Series groups charts by the first part of a tag, sorts the groups by name and opens the
  first two. Metrics that belong together go under one group named after what they measure
  (`loss/train/loss` beside `loss/val/loss`, `accuracy/...`; a GAN's `loss/` and `output/`:
  D(x) with D(G(z))); learning rates under `schedule/`; end results (best value, test split,
  best.pt's pictures) under `summary/`; the `epoch` counter is left out. So the dashboard
  opens on accuracy and loss (a GAN: its Fréchet distance and losses, or losses and outputs).
- Custom Scalars: one chart per group, its metrics on one chart (train beside val).
- HParams: an experiment summary with the metrics that matter, best first, and the hyperparameters
  this run varies marked, so that the table opens on them.
- Text: the composed config, the command and the git commit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlexp.config.names import CHARTS, METRICS
from dlexp.tracking.loggers import Record, RunStart

SUMMARY = ("best/", "test/")  # end results: one value each, at the last step
SUCCESS, FAILURE = 1, 2  # tensorboard.plugins.hparams.api_pb2.Status
DROPPED = ("epoch",)  # a rising line that says nothing the x axis does not


def group_of(charts: Mapping[str, Sequence[str]]) -> dict[str, str]:
    return {metric: group for group, metrics in charts.items() for metric in metrics}


def tb_tag(name: str, groups: Mapping[str, str]) -> str | None:
    """The TensorBoard tag of a metric or picture; None: not shown."""
    if name in DROPPED:
        return None
    base = name.removesuffix("_epoch")
    if base in groups:
        return f"{groups[base]}/{name}"
    if name.startswith(SUMMARY):
        return f"summary/{name}"
    return name


def series(name: str) -> list[str]:
    """A metric's names in the records: a training metric also has its epoch mean."""
    return [name, f"{name}_epoch"] if name.startswith("train/") else [name]


def metric_tag(name: str, groups: Mapping[str, str]) -> str | None:
    """The tag whose last value HParams shows for a metric: a training metric's epoch mean."""
    return tb_tag(series(name)[-1], groups)


class TensorBoardLogger:
    batched = False
    note = ""

    def __init__(self, settings: Mapping[str, Any], run_dir: Path, resume: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # heavy: only when chosen

        purge = resume + 1 if resume is not None else None  # steps after the checkpoint go
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge)
        self.groups: dict[str, str] = {}

    def start(self, run: RunStart, saved: Mapping[str, Any]) -> dict[str, Any]:
        self.groups = group_of(run.charts)
        if run.resumed_at is not None:
            # TensorBoard keeps the first session start of a run: a resume writes no second
            self.writer.add_text("run/command", _code(run.command, "sh"), run.resumed_at)
            return {}
        self._experiment(run)
        self._session_start(run)
        self._layout(run)
        self.writer.add_text("run/config", _code(run.config_text, "yaml"), 0)
        self.writer.add_text("run/command", _code(run.command, "sh"), 0)
        self.writer.add_text("run/git", _git_text(run.git), 0)
        return {}

    # -- HParams -----------------------------------------------------------------------------
    def _experiment(self, run: RunStart) -> None:
        from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

        infos = []
        for name, value in run.hparams.items():
            info = api_pb2.HParamInfo(name=name, differs=name in run.headline)
            if isinstance(value, bool):  # before int: True is an int in Python
                info.type = api_pb2.DATA_TYPE_BOOL
                info.domain_discrete.extend([False, True])
            elif isinstance(value, (int, float)):
                info.type = api_pb2.DATA_TYPE_FLOAT64
            else:  # no domain: the filter then lets every value of other runs through
                info.type = api_pb2.DATA_TYPE_STRING
            infos.append(info)
        # TensorBoard takes one run's experiment for the whole folder: the other families'
        # metrics come after this run's, so that a folder that mixes them leaves none out
        named = [(m, self.groups) for m in run.metrics]
        for family, names in METRICS.items():
            if family != run.family:
                named += [(m, group_of(CHARTS[family])) for m in names]
        metrics, seen = [], set()
        for name, groups in named:
            tag = metric_tag(name, groups)
            if tag is not None and tag not in seen:
                seen.add(tag)
                label = name.replace("/", " ", 1) if name.startswith("best/") else name
                metrics.append(
                    api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), display_name=label)
                )
        experiment = api_pb2.Experiment(
            hparam_infos=infos, metric_infos=metrics, time_created_secs=run.started
        )
        data = plugin_data_pb2.HParamsPluginData(experiment=experiment)
        self._hparams("_hparams_/experiment", data)

    def _session_start(self, run: RunStart) -> None:
        from tensorboard.plugins.hparams import plugin_data_pb2

        start = plugin_data_pb2.SessionStartInfo(start_time_secs=run.started)
        for name, value in run.hparams.items():
            if isinstance(value, bool):
                start.hparams[name].bool_value = value
            elif isinstance(value, (int, float)):
                start.hparams[name].number_value = value
            else:
                start.hparams[name].string_value = str(value)
        data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
        self._hparams("_hparams_/session_start_info", data)

    def _hparams(self, tag: str, data: Any) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import metadata

        meta = metadata.create_summary_metadata(data)
        self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, metadata=meta)]))

    def _layout(self, run: RunStart) -> None:
        charts = {}
        for group, names in run.charts.items():
            tags = [tb_tag(s, self.groups) for name in names for s in series(name)]
            pattern = "^(" + "|".join(re.escape(t) for t in tags if t) + ")$"
            charts[f"{group}: {', '.join(names)}"] = ["Multiline", [pattern]]
        if charts:
            self.writer.add_custom_scalars({run.family: charts})

    # -- records -----------------------------------------------------------------------------
    def log_metrics(self, records: Sequence[Record]) -> None:
        for record in records:
            for name, value in record.metrics.items():
                tag = tb_tag(name, self.groups)
                if tag is not None:
                    self.writer.add_scalar(tag, value, record.step)

    def log_image(self, tag: str, image: Any, step: int) -> None:
        shown = tb_tag(tag, self.groups)
        if shown is not None:
            self.writer.add_image(shown, image, step, dataformats="HWC")

    def log_histograms(self, networks: Mapping[str, Any], step: int) -> None:
        """Each parameter beside its gradient: `weights/<net>/<name>` and `.../<name>.grad`."""
        for net, module in networks.items():
            for name, param in module.named_parameters():
                self.writer.add_histogram(f"weights/{net}/{name}", param.detach(), step)
                if param.grad is not None:
                    self.writer.add_histogram(f"weights/{net}/{name}.grad", param.grad, step)

    def log_graph(self, module: Any, example: Any) -> None:
        """Traced once, in eval mode, on a forked RNG: the run trains exactly as without it."""
        import warnings

        import torch

        training = module.training
        module.eval()
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation
                self.writer.add_graph(module, example)
        finally:
            module.train(training)

    def finish(self, status: str, summary: Mapping[str, Any]) -> None:
        """Close the HParams session: done → success, anything else → failure. An interrupted
        run writes no end: it resumes, and TensorBoard keeps the first end record only."""
        from tensorboard.plugins.hparams import plugin_data_pb2

        if status == "interrupted":
            return
        code = SUCCESS if status == "done" else FAILURE
        end = plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=time.time())
        data = plugin_data_pb2.HParamsPluginData(session_end_info=end)
        self._hparams("_hparams_/session_end_info", data)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def _code(text: str, language: str) -> str:
    """Markdown for TensorBoard's Text tab: a fenced block keeps indentation."""
    return f"```{language}\n{text.rstrip()}\n```"


def _git_text(git: Mapping[str, Any]) -> str:
    if not git.get("commit"):
        return "not started from a git checkout"
    dirty = " with uncommitted changes (provenance/git.patch)" if git.get("dirty") else ""
    return f"commit `{git['commit']}`{dirty}"
