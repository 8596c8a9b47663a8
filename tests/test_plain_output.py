"""Without a terminal (a pipe, a log, CI) the run panel and the sweep table keep every path,
command and error text on one line, whole, so it can be pasted."""

from __future__ import annotations

from pathlib import Path

from dlexp.sweeps.manifest import print_summary
from dlexp.tracking.console import Reporter

LONG = "/tmp/" + "/".join(f"a_rather_long_folder_name_{i}" for i in range(8)) + "/run"


def test_the_run_panel_keeps_a_long_path_whole(capsys) -> None:
    reporter = Reporter("plain")
    reporter.final("dlexp run", {"status": "done", "run folder": LONG})
    out = capsys.readouterr().out
    assert any(LONG in line for line in out.splitlines()), out


def test_the_sweep_table_keeps_paths_and_error_texts_whole(capsys, tmp_path: Path) -> None:
    error = (
        "Data set mnist not found (or incomplete/corrupted): expected train-images-idx3-ubyte in "
        f"{LONG}/MNIST/raw. Set data.download=true to fetch it (needs internet), copy the files "
        "there by hand, or use data=mnist_sample (5,000 real MNIST digits bundled with dlexp)."
    )
    job = {
        "num": 0, "overrides": ["data=mnist", "optim.lr=0.1"], "status": "failed",
        "objective": None, "monitor": "val/acc", "run_dir": f"{LONG}/0_data=mnist",
        "error": error, "log": f"{LONG}/0_data=mnist/train.log",
    }  # fmt: skip
    print_summary({"sweep_dir": str(tmp_path), "jobs": {"0": job}}, "max")
    lines = capsys.readouterr().out.splitlines()
    assert any(error in line for line in lines), "\n".join(lines)
    assert any(job["log"] in line for line in lines)
    assert any("data.download=true" in line for line in lines)
