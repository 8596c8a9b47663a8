"""Shared fixtures: compose the real configs, run the real CLI, read run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dlexp.config.paths import CONFIG_DIR
from dlexp.config.resolvers import register_resolvers, to_plain

REPO = Path(__file__).resolve().parent.parent

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: each computes on one thread (and so do the commands
    # it starts), else the workers' thread pools wait on each other. Set before torch is
    # imported: nothing above imports it (the test modules, imported after this one, do).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def compose_cfg(tmp: Path | None, *overrides: str, hydra: bool = False) -> DictConfig:
    """The shipped configs composed with `overrides`; outputs and data kept under `tmp` (when
    given). `hydra`: with the `hydra` node (a sweeper's settings). The one place tests compose."""
    register_resolvers()
    base = [f"paths.output_root={tmp / 'outputs'}", f"paths.data_dir={tmp / 'data'}"] if tmp else []
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[*base, *overrides], return_hydra_config=hydra)


def compose_plain(*overrides: str, tmp: Path | None = None) -> dict[str, Any]:
    """`compose_cfg` resolved into plain data (what `train` validates and a run folder holds)."""
    return to_plain(compose_cfg(tmp, *overrides))


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the shipped configs with overrides, outputs and data kept under tmp_path."""
    return lambda *overrides: compose_cfg(tmp_path, *overrides)


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(
        DLEXP_OUTPUT_ROOT=str(tmp_path / "outputs"),
        DLEXP_DATA_DIR=str(tmp_path / "data"),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def call_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`dlexp ARGS` run in this process, in tmp_path, with the environment `run_cli` gives a
    subprocess: for commands that end before training, where starting an interpreter (and
    importing torch again) adds seconds and nothing else. An uncaught exception fails the test
    with its traceback, as it would reach a user."""
    import contextlib
    import io

    from hydra.core.global_hydra import GlobalHydra

    from dlexp.cli import main as cli
    from dlexp.config import paths

    exit_now = cli.exit_now
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    code: int = 0
    try:
        os.environ.clear()
        os.environ.update(cli_env(tmp_path, COLUMNS="400", **env))
        sys.argv = ["dlexp", *args]
        os.chdir(tmp_path)
        # the CLI ends a finished process with os._exit: here it must only return
        cli.exit_now = sys.exit  # type: ignore[assignment]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        cli.exit_now = exit_now  # type: ignore[assignment]
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        GlobalHydra.instance().clear()
        paths._remove_unused_claims()  # what the process would do at exit
        paths._claimed.clear()
    return subprocess.CompletedProcess(["dlexp", *args], code, out.getvalue(), err.getvalue())


def run_cli(
    tmp_path: Path, *args: str, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m dlexp ARGS` in tmp_path, as a user would run it (no TTY)."""
    return subprocess.run(
        [sys.executable, "-m", "dlexp", *args],
        cwd=tmp_path,
        env=cli_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def stop_then_resume(
    cfg: dict[str, Any], run_dir: Path, monkeypatch: pytest.MonkeyPatch, at_step: int,
    choices: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train `cfg` in `run_dir`, stopped after step `at_step` as Ctrl-C would (its message says
    how to resume), then resume it to the end. Returns the stopped run's summary."""
    # torch: imported by the tests that train, never by this module's import (see above)
    from dlexp.engine.interrupt import Interrupted
    from dlexp.engine.runner import Runner
    from dlexp.tasks.registry import train

    run_dir.mkdir(exist_ok=True)
    monkeypatch.setattr(Runner, "should_stop", lambda self: self.state.step >= at_step)
    with pytest.raises(Interrupted, match="dlexp resume"):
        train(cfg, run_dir, choices or {})
    stopped = json.loads((run_dir / "summary.json").read_text())
    monkeypatch.undo()
    train(cfg, run_dir, choices or {}, resume=run_dir / "checkpoints" / "last.pt")
    return stopped


def latest_run(tmp_path: Path) -> Path:
    return Path((tmp_path / "outputs" / "latest").read_text().strip())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- trained runs shared by the whole session (read-only: copy one before changing it) ---------
@pytest.fixture(scope="session")
def shared_lenet(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.trained import lenet_run  # trained.py uses this module: imported here

    return lenet_run(tmp_path_factory.mktemp("shared-lenet"))


@pytest.fixture(scope="session")
def shared_text(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.trained import text_run  # trained.py uses this module: imported here

    return text_run(tmp_path_factory.mktemp("shared-text"))
