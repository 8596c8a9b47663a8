"""An MLflow tracking server that does not answer: one message within seconds, exit 2, no run
folder, never minutes of the client's retries ending in urllib3's text."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from dlexp.errors import DlexpError
from dlexp.tracking.loggers import RunStart
from dlexp.tracking.loggers.reach import unreachable
from dlexp.tracking.loggers.to_mlflow import MlflowLogger
from tests.conftest import call_cli

pytest.importorskip("mlflow")  # logger=mlflow is refused without it, before any server is asked

ARGS = ("trainer.epochs=1", "trainer.limit_train_batches=2", "trainer.progress=none")


def closed_port() -> int:
    """A loopback port that nothing listens on (taken from the OS, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refused(tmp_path: Path, *args: str, **env: str) -> tuple[str, float]:
    started = time.monotonic()
    result = call_cli(tmp_path, "logger=[tensorboard,mlflow]", *ARGS, *args, **env)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "no MLflow tracking server answers there" in result.stderr
    runs = tmp_path / "outputs" / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "no run folder for a refused run"
    return result.stderr, elapsed


def test_a_closed_port_fails_at_once_with_what_to_do(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    err, elapsed = refused(tmp_path, f"logger.mlflow.tracking_uri={uri}")
    assert elapsed < 10
    assert f"logger.mlflow.tracking_uri={uri}" in err
    assert "connection refused" in err
    assert "mlflow server --host 127.0.0.1" in err
    assert "leave it unset" in err and "mlflow.db" in err


def test_an_unknown_host_fails_at_once(tmp_path: Path) -> None:
    err, elapsed = refused(tmp_path, "logger.mlflow.tracking_uri=http://no-such-host.invalid:5000")
    assert elapsed < 10
    assert "http://no-such-host.invalid:5000" in err
    # without a DNS server that answers, the lookup is given up after a few seconds
    assert "not found" in err or "took longer" in err


def test_the_environment_variable_is_checked_the_same_way(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    err, elapsed = refused(tmp_path, MLFLOW_TRACKING_URI=uri)
    assert elapsed < 10
    assert f"MLFLOW_TRACKING_URI={uri}" in err
    assert "unset MLFLOW_TRACKING_URI" in err


def test_the_logger_itself_asks_before_mlflow_retries(tmp_path: Path) -> None:
    """A run that reaches the logger without the command line's check (dlexp resume, a
    config from --config-dir) fails the same way, in seconds."""
    uri = f"http://127.0.0.1:{closed_port()}"
    logger = MlflowLogger({"tracking_uri": uri}, tmp_path, None)
    run = RunStart(tmp_path, "run", "classify", {}, [], [], {}, "", "", {}, time.time())
    started = time.monotonic()
    with pytest.raises(DlexpError, match="connection refused"):
        logger.start(run, {})
    assert time.monotonic() - started < 10


def test_a_listening_server_passes_and_local_stores_are_not_asked() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert unreachable(f"http://127.0.0.1:{server.getsockname()[1]}") is None
    assert unreachable("sqlite:////tmp/mlflow.db") is None
    assert unreachable("file:///tmp/mlruns") is None
    assert unreachable("http://127.0.0.1:99999") == "its port is not a number from 0 to 65535"


def test_a_proxy_is_what_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    for name in ("HTTP_PROXY", "http_proxy"):  # the lower-case one wins where both are set
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "")
    why = unreachable("http://tracking.example:5000")
    assert why == f"connection refused at 127.0.0.1:{port} (through the proxy 127.0.0.1:{port})"
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "tracking.example")
    assert "through the proxy" not in (unreachable("http://tracking.example:5000") or "")


def test_a_uri_that_cannot_be_read_and_a_password_in_one(tmp_path: Path) -> None:
    result = call_cli(tmp_path, "logger=[mlflow]", *ARGS, MLFLOW_TRACKING_URI="http://[::1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "MLFLOW_TRACKING_URI=http://[::1: not a URI that can be read" in result.stderr
    uri = f"https://me:secret@localhost:{closed_port()}/mlflow"
    err, _ = refused(tmp_path, f"logger.mlflow.tracking_uri={uri}")
    assert "secret" not in err and "https://me:***@localhost" in err
    assert f"--port {uri.rsplit(':', 1)[1].split('/')[0]}" in err


def test_https_without_a_port_is_asked_at_443(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlexp.tracking.loggers import reach

    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    asked: list[int] = []
    monkeypatch.setattr(reach, "_lookup", lambda host, port, timeout: asked.append(port) or "x")
    assert reach.unreachable("https://localhost/mlflow") == "x"
    assert asked == [443]
    monkeypatch.setattr(reach, "unreachable", lambda uri: "connection refused at localhost:443")
    with pytest.raises(DlexpError, match="mlflow server --host localhost --port 443"):
        reach.check_mlflow("https://localhost/mlflow", "logger.mlflow.tracking_uri", "outputs")


def test_all_proxy_is_a_proxy_too(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("all_proxy", f"http://127.0.0.1:{port}")
    assert "through the proxy 127.0.0.1" in (unreachable("http://tracking.example:5000") or "")


def test_a_sweep_sent_to_other_machines_is_not_asked_from_here(tmp_path: Path) -> None:
    from dlexp.cli import preflight

    uri = f"logger.mlflow.tracking_uri=http://127.0.0.1:{closed_port()}"
    args = ["-m", "logger=[mlflow]", uri, "trainer.epochs=1"]
    with pytest.raises(SystemExit):  # a local sweep is asked here
        preflight.preflight([*args, "hydra/launcher=submitit_local"])
    preflight.preflight([*args, "hydra/launcher=submitit_slurm"])  # each job asks where it runs
