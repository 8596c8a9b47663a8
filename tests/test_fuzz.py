"""Property tests: whatever a user types, they get a message, never a traceback."""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlexp.cli.preflight import checked_config
from dlexp.tasks.registry import validate
from tests.test_configs import compose_plain

DEFAULT = compose_plain()


def _keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [k for key, v in node.items() for k in _keys(v, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


KEYS = _keys(DEFAULT)


@pytest.fixture(autouse=True, scope="module")
def _elsewhere(tmp_path_factory):
    """Random paths.output_root values create folders: keep them out of the repository."""
    import os

    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("fuzz"))
    yield
    os.chdir(here)


GROUPS = ["model", "optim", "scheduler", "data", "trainer", "regularization"]

values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(alphabet="abcdefghijklmnop_-./0123456789", max_size=12),
    st.lists(st.integers(-5, 300), max_size=4),
)


def typo(key: str, data: st.DataObject) -> str:
    i = data.draw(st.integers(0, max(0, len(key) - 1)))
    return key[:i] + data.draw(st.sampled_from("xzq_")) + key[i + 1 :]


def as_override(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value) if value != "" else "''"


@st.composite
def overrides(draw: st.DrawFn) -> list[str]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["key", "typo", "group"]))
        data = st.data()
        if kind == "group":
            name = draw(st.text(alphabet="abcdelmnopst_", min_size=1, max_size=8))
            out.append(f"{draw(st.sampled_from(GROUPS))}={name}")
            continue
        key = draw(st.sampled_from(KEYS))
        if kind == "typo":
            key = typo(key, draw(data))
        out.append(f"{key}={as_override(draw(values))}")
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides())
def test_any_command_line_gives_a_config_or_one_clear_message(args: list[str]) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            checked_config(args, always=True)
        except SystemExit as exit:
            assert exit.code == 2, args
            text = err.getvalue()
            assert "error:" in text and "Traceback" not in text, (args, text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEYS), values)
def test_validate_never_raises_on_any_value(key: str, value: Any) -> None:
    import copy

    cfg = copy.deepcopy(DEFAULT)
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    problems = validate(cfg)
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)


@pytest.mark.parametrize("args", [["model=nan"], ["optim=1.5"], ["data=true"]])
def test_a_number_as_a_group_option_gets_a_message(args: list[str]) -> None:
    """Found by the fuzz test above: Hydra raises a bare ValueError for these."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit:
        checked_config(args, always=True)
    assert exit.value.code == 2
    assert "option of a config group is a name" in err.getvalue()
