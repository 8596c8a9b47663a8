"""Run and job folder names: a sweep's jobs by what they vary, a run by the name it is given.
(The whole chain, a real sweep read back through TensorBoard: test_tensorboard_view.py.)"""

from __future__ import annotations

import json

from dlexp.config.naming import SHARED_ENV, job_name, run_name
from dlexp.sweeps.naming import shared_overrides


def test_a_job_is_named_by_the_overrides_it_does_not_share(monkeypatch):
    argv = ["trainer.epochs=3", "optim=sgd,adam", "optim.lr=0.1,0.01", "paths.output_root=x"]
    shared = shared_overrides(argv)
    assert shared == ["trainer.epochs", "paths.output_root"]
    monkeypatch.setenv(SHARED_ENV, json.dumps(shared))
    job = ["trainer.epochs=3", "optim=sgd", "optim.lr=0.01", "paths.output_root=x"]
    assert job_name(4, job, ["paths.output_root"]) == "4_optim.lr=0.01,optim=sgd"
    assert job_name(0, ["trainer.epochs=3"]) == "0", "nothing varies: the number alone"


def test_without_word_from_the_sweep_every_override_names_the_job(monkeypatch):
    monkeypatch.delenv(SHARED_ENV, raising=False)
    assert job_name(1, ["trainer.epochs=3", "optim=sgd"]) == "1_optim=sgd,trainer.epochs=3"


def test_a_run_is_named_by_its_name_or_its_model():
    assert run_name(None, "lenet") == "lenet"
    assert run_name("my baseline/v2", "lenet") == "my-baseline-v2"
