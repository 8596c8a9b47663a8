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


def hparams_sessions(logdir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """TensorBoard's HParams plugin's answers for `logdir`: (experiment, session groups)."""
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    mux = pem.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    ctx = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)
    apps = hparams_plugin.HParamsPlugin(ctx).get_plugin_apps()

    def post(route: str, body: dict[str, Any]) -> dict[str, Any]:
        client = Client(apps[route], Response)
        resp = client.post(route, data=json.dumps(body), content_type="application/json")
        assert resp.status_code == 200, resp.data
        return json.loads(resp.data)

    experiment = post("/experiment", {"experimentName": ""})
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
