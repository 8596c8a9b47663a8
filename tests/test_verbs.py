"""eval, rerun, validate, trust and provenance: what a run folder lets anyone do later."""

from __future__ import annotations

import json

import pytest
import yaml

from dlexp.cli.evaluate import evaluate_run
from dlexp.cli.train import train
from dlexp.cli.verbs import rerun, resume
from dlexp.errors import DlexpError
from tests.conftest import call_cli, read_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture
def finished_run(make_cfg, tmp_path):
    run_dir = tmp_path / "outputs" / "runs" / "first"
    run_dir.mkdir(parents=True)
    train(
        make_cfg("trainer=debug", "trainer.progress=none", "trainer.limit_val_batches=null"),
        run_dir=run_dir,
    )
    return run_dir


def test_eval_reproduces_the_runs_own_test_metrics(finished_run):
    summary = json.loads((finished_run / "summary.json").read_text())
    assert evaluate_run([str(finished_run)]) == 0
    record = json.loads((finished_run / "eval_test_best.json").read_text())
    assert record["test/acc"] == pytest.approx(summary["test"]["test/acc"])
    assert read_jsonl(finished_run / "metrics.jsonl")[-1]["kind"] == "eval"
    assert evaluate_run([str(finished_run), "ckpt=last", "split=val"]) == 0
    val = json.loads((finished_run / "eval_val_last.json").read_text())
    # last.pt is the end of the only epoch: the validation the run itself logged then
    (epoch,) = [r for r in read_jsonl(finished_run / "metrics.jsonl") if r["kind"] == "epoch"]
    assert val["checkpoint"] == "last" and val["step"] == epoch["step"] == summary["steps"]
    assert val["val/acc"] == pytest.approx(epoch["val/acc"], abs=1e-6)
    assert val["val/loss"] == pytest.approx(epoch["val/loss"], rel=1e-5)
    assert val["val/loss"] != pytest.approx(record["test/loss"], rel=1e-5), "not the test split"
    with pytest.raises(DlexpError, match="must be one of test, val"):
        evaluate_run([str(finished_run), "split=training"])
    (finished_run / "checkpoints" / "best.pt").rename(finished_run / "best.pt.away")
    try:
        with pytest.raises(DlexpError, match="best.pt does not exist. It has: ckpt=last"):
            evaluate_run([str(finished_run)])
    finally:
        (finished_run / "best.pt.away").rename(finished_run / "checkpoints" / "best.pt")


def test_rerun_starts_a_new_folder_with_the_same_config(finished_run, tmp_path, monkeypatch):
    best = rerun([str(finished_run)])
    runs = sorted(p for p in (tmp_path / "outputs" / "runs").iterdir() if p.name != "first")
    assert len(runs) == 1 and runs[0].name.endswith("_rerun")
    first = json.loads((finished_run / "summary.json").read_text())
    again = json.loads((runs[0] / "summary.json").read_text())
    assert again["best"]["value"] == pytest.approx(best)
    assert again["best"]["value"] == pytest.approx(first["best"]["value"]), "same seed, same data"
    assert (runs[0] / "rerun_of.txt").read_text().strip() == str(finished_run)
    # a run with a name= is rerun under that name, as a new run with it would be
    rerun([str(finished_run), "name=second try", "trainer.limit_train_batches=1"])
    named = [p.name for p in (tmp_path / "outputs" / "runs").iterdir()]
    assert len([n for n in named if n.endswith("_second-try_rerun")]) == 1, named


def test_foreign_targets_need_trust(finished_run):
    config = finished_run / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["model"]["_target_"] = "somebody.elses.Module"
    config.write_text(yaml.safe_dump(cfg))
    for verb, args in ((resume, []), (rerun, []), (evaluate_run, [])):
        with pytest.raises(DlexpError, match="somebody.elses.Module.*--trust"):
            verb([str(finished_run), *args])
    with pytest.raises(DlexpError, match="cannot import 'somebody.elses.Module'"):
        rerun([str(finished_run), "--trust"])


def test_provenance_files_are_in_the_run_folder(finished_run):
    summary = json.loads((finished_run / "summary.json").read_text())
    env = summary["environment"]
    for key in ("python", "torch", "cuda", "cudnn", "device", "device_name", "hostname"):
        assert key in env
    for key in ("started_at", "ended_at", "seed", "choices"):
        assert summary[key] is not None
    freeze = (finished_run / "provenance" / "requirements.txt").read_text()
    assert "torch==" in freeze and "hydra-core==" in freeze
    assert (finished_run / "command.txt").read_text().strip()
    assert yaml.safe_load((finished_run / "config.yaml").read_text())["trainer"]["epochs"] == 1


def test_verbs_through_the_cli(finished_run, tmp_path):
    proc = call_cli(tmp_path, "eval", "nowhere")
    assert proc.returncode == 2 and "not a dlexp run folder" in proc.stderr
    before = sorted((tmp_path / "outputs" / "runs").iterdir())
    proc = call_cli(tmp_path, "validate", "model=mlp", "optim=sgd")
    assert proc.returncode == 0 and "MLP" in proc.stdout and "valid" in proc.stdout
    assert sorted((tmp_path / "outputs" / "runs").iterdir()) == before, "validate trains nothing"
    proc = call_cli(tmp_path, "validate", "optim.lr=-1")
    assert proc.returncode == 2 and "optim.lr" in proc.stderr
    proc = call_cli(tmp_path, "resume", str(finished_run), "--frobnicate")
    assert proc.returncode == 2 and "--force" in proc.stderr
