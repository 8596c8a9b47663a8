"""Read run folders the way TensorBoard does: its own event reader and its HParams plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def scalar_and_image_tags(run_dir: Path) -> tuple[set[str], set[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    return set(tags["scalars"]), set(tags["images"])


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _context(logdir: Path) -> Any:
    """TensorBoard's own plugin context for `logdir`, as `tensorboard --logdir` builds it."""
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin

    mux = pem.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    return base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)


def _request_context() -> Any:
    from tensorboard import context

    return context.RequestContext()


def hparams_sessions(logdir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """TensorBoard's HParams plugin's answers for `logdir`: (experiment, session groups), the
    experiment as the dashboard asks for it (hparamsLimit: its hparams sorted, differing first)."""
    from tensorboard.plugins.hparams import hparams_plugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    apps = hparams_plugin.HParamsPlugin(_context(logdir)).get_plugin_apps()

    def post(route: str, body: dict[str, Any]) -> dict[str, Any]:
        client = Client(apps[route], Response)
        resp = client.post(route, data=json.dumps(body), content_type="application/json")
        assert resp.status_code == 200, resp.data
        return json.loads(resp.data)

    experiment = post("/experiment", {"experimentName": "", "hparamsLimit": 1000})
    statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    groups = post(
        "/session_groups",
        {
            "experimentName": "",
            "startIndex": 0,
            "sliceSize": 1000,
            "allowedStatuses": statuses,
            "colParams": [],
        },
    )
    return experiment, groups.get("sessionGroups", [])


def shown_first(experiment: dict[str, Any], n: int = 5) -> tuple[list[str], list[str]]:
    """The columns the HParams table shows before anyone clicks: its first five hyperparameters
    once those that differ are moved ahead, and its first five metrics (TensorBoard 2.21's
    tf-hparams-query-pane)."""
    infos = experiment["hparamInfos"]
    infos = [h for h in infos if h.get("differs")] + [h for h in infos if not h.get("differs")]
    metrics = [m["name"]["tag"] for m in experiment.get("metricInfos", [])]
    return [h["name"] for h in infos[:n]], metrics[:n]


def time_series_tags(logdir: Path) -> list[str]:
    """Every tag of the Time Series dashboard (scalars, histograms, images), from its plugin."""
    from tensorboard.plugins.metrics import metrics_plugin

    answer = metrics_plugin.MetricsPlugin(_context(logdir))._tags_impl(_request_context(), "")
    tags: set[str] = set()
    for kind in ("scalars", "histograms", "images"):
        run_tags = answer[kind].get("runTagInfo") or answer[kind].get("tagRunSampledInfo") or {}
        if kind == "images":
            tags |= set(answer[kind].get("tagRunSampledInfo", {}))
        else:
            tags |= {t for ts in run_tags.values() for t in ts}
    return sorted(tags)


def opened_groups(tags: list[str], n: int = 2) -> list[str]:
    """The tag groups Time Series expands when it opens: cards grouped by the part before the
    first '/', groups in the order of their sorted tags, the first two open."""
    groups = list(dict.fromkeys(t.split("/", 1)[0] for t in sorted(tags)))
    return groups[:n]


def texts(logdir: Path, run: str = ".") -> dict[str, str]:
    """The Text tab of one run: tag → the markdown rendered as TensorBoard shows it."""
    from tensorboard.plugins.text import text_plugin

    plugin = text_plugin.TextPlugin(_context(logdir))
    ctx = _request_context()
    index = plugin.index_impl(ctx, "")
    return {tag: plugin.text_impl(ctx, run, tag, "", True)[0]["text"] for tag in index.get(run, [])}


def custom_scalars_layout(logdir: Path) -> dict[str, Any]:
    """The Custom Scalars layout merged over the runs of `logdir`, from its plugin."""
    from tensorboard.plugins.custom_scalar import custom_scalars_plugin

    plugin = custom_scalars_plugin.CustomScalarsPlugin(_context(logdir))
    layout = plugin.layout_impl(_request_context(), "")
    return json.loads(layout) if isinstance(layout, str) else layout


def image_steps(run_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    return [e.step for e in acc.Images(tag)]
