"""`dlexp compare`: a table of runs read from their folders, without torch.

Most tests write run folders by hand in the runner's formats (summary.json, config.yaml,
metrics.jsonl) for a small grid, so every number the table shows is known in advance; one test
compares two real tiny runs through the CLI.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import statistics
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlexp.cli.compare import main
from dlexp.errors import DlexpError
from tests.conftest import REPO, cli_env

OPTIMS = {
    "sgd": {"_target_": "torch.optim.SGD", "momentum": 0.0, "nesterov": False},
    "adam": {"_target_": "torch.optim.Adam", "betas": [0.9, 0.999], "eps": 1e-8},
}
GRID = list(itertools.product(("sgd", "adam"), (1e-3, 1e-2), (0, 1)))


def score(optim: str, lr: float, seed: int) -> float:
    """The final val/acc of a fake run: distinct for every run of the grid."""
    return {"sgd": 0.80, "adam": 0.90}[optim] + (0.04 if lr == 1e-2 else 0.0) + 0.01 * seed


def config(optim: str, lr: float, seed: int) -> dict[str, Any]:
    """The resolved config of a run; paths and trainer.device differ, but are no hyperparameters."""
    return {
        "resume": "never",
        "paths": {"output_root": f"/elsewhere/{seed}/outputs", "data_dir": "/elsewhere/data"},
        "model": {"_target_": "dlexp.models.cnn.LeNet5", "activation": "relu", "dropout": 0.0},
        "optim": {**OPTIMS[optim], "lr": lr, "weight_decay": 0.0},
        "scheduler": {"name": "none", "warmup_epochs": 0},
        "regularization": {"l1": 0.0, "l2": 0.0, "dropout": None, "batch_norm": None},
        "data": {"name": "mnist_sample", "data_dir": "/elsewhere/data", "val_fraction": 0.1},
        "trainer": {
            "epochs": 3,
            "batch_size": 64,
            "seed": seed,
            "device": f"cuda:{seed}",
            "monitor": "val/acc",
            "monitor_mode": "max",
            "progress": "none",
        },
    }


def write_run(folder: Path, optim: str, lr: float, seed: int, status: str = "done") -> float:
    """A run folder as the runner leaves it; `running` leaves out summary.json."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config(optim, lr, seed)))
    (folder / ".hydra").mkdir()  # Hydra's own config.yaml: not a run of its own
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config(optim, lr, seed)))
    acc = score(optim, lr, seed)
    epochs = {"done": 3, "running": 2, "interrupted": 1, "failed": 0}[status]
    lines = []
    for epoch in range(1, epochs + 1):
        value = acc - 0.05 * (3 - epoch)
        lines.append({"kind": "step", "step": epoch * 10, "epoch": epoch, "train/loss": 9.0})
        metrics = {"train/loss": 1.2 - value, "val/loss": 1 - value, "val/acc": value}
        lines.append({"kind": "epoch", "step": epoch * 10, "epoch": float(epoch), **metrics})
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (folder / "metrics.jsonl").write_text(text)
    choices = {"model": "lenet", "optim": optim, "trainer": "default", "scheduler": "none"}
    if status == "running":
        hydra = {"hydra": {"runtime": {"choices": {**choices, "hydra/launcher": "basic"}}}}
        (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
        return acc
    final = lines[-1] if lines else {}
    summary = {
        "status": status,
        "error": None if status == "done" else "something",
        "monitor": {"metric": "val/acc", "mode": "max"},
        "best": {"value": acc if epochs == 3 else None, "epoch": epochs},
        "final": {k: v for k, v in final.items() if "/" in k},
        "test": {"test/loss": 1.1 - acc, "test/acc": acc - 0.02} if status == "done" else {},
        "epochs_completed": epochs,
        "wall_time_s": 10.0 + seed,
        "ended_at": "2026-11-29T04:12:12+0000",
        "seed": seed,
        "choices": choices,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return acc


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """outputs/ with an 8-job sweep (optim × lr × seed) and things that are not runs."""
    sweep = tmp_path / "outputs" / "sweeps" / "grid"
    for num, (optim, lr, seed) in enumerate(GRID):
        write_run(sweep / f"{num}_optim={optim},optim.lr={lr},trainer.seed={seed}", optim, lr, seed)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / "notes").mkdir()
    (sweep / "notes" / "todo.txt").write_text("try rmsprop\n")
    (tmp_path / "outputs" / "my_configs").mkdir()  # a --config-dir: config.yaml, not a run
    (tmp_path / "outputs" / "my_configs" / "config.yaml").write_text("defaults: []\n")
    return tmp_path / "outputs"


def compare_csv(tmp_path: Path, *args: str) -> list[dict[str, str]]:
    out = tmp_path / "table.csv"
    assert main([*args, "--csv", str(out)]) == 0
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


def parse_markdown(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    split = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    assert set(lines[1]) <= set("|-:"), "the second line is the header rule"
    return [dict(zip(split[0], row, strict=True)) for row in split[2:]]


def test_only_the_hyperparameters_that_differ_are_columns(grid, tmp_path, capsys):
    rows = compare_csv(tmp_path, str(grid))
    header = list(rows[0])
    assert header[:5] == ["run", "status", "optim", "optim.lr", "trainer.seed"]
    assert header[5:] == [
        "best/val/acc",
        "val/loss",
        "val/acc",
        "test/loss",
        "test/acc",
        "epochs",
        "wall_time_s",
    ]
    # optim._target_, optim.betas, ... only change with optim=sgd|adam: no columns of their own
    assert not any(h.startswith("optim.") and h != "optim.lr" for h in header)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"}
    out = capsys.readouterr().out
    assert "8 runs, sorted by best/val/acc (descending)" in out
    assert "the other hyperparameters are the same in every run" in out
    assert "model" not in header and "trainer.epochs" not in header and "\x1b[" not in out
    assert "trainer.device" not in header and not any(h.startswith("paths") for h in header)
    # no TTY: one line per run, never wrapped, names relative to the runs' common folder
    lines = [line for line in out.splitlines() if "optim=" in line]
    assert len(lines) == 8 and all("done" in line for line in lines)


def test_columns_across_optimizers_and_tasks(tmp_path):
    """optim.lr is a setting of every run: a column even where it follows optim=sgd|adam; a
    GAN has no optim group, and shows its training losses since it has no validation split."""
    runs = tmp_path / "runs"
    write_run(runs / "a", "adam", 1e-3, 0)
    write_run(runs / "b", "sgd", 0.05, 0)
    write_run(runs / "c", "adam", 1e-3, 0)
    gan = {"_target_": "dlexp.models.gan.GAN", "task": "gan", "latent_dim": 64}
    cfg = yaml.safe_load((runs / "c" / "config.yaml").read_text()) | {"model": gan}
    (runs / "c" / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = json.loads((runs / "c" / "summary.json").read_text())
    summary |= {"monitor": {"metric": "train/g_loss", "mode": "last"}, "test": {}}
    summary |= {"best": {"value": None}, "final": {"train/d_loss": 1.1, "train/g_loss": 0.5}}
    summary["choices"]["model"] = "gan"
    (runs / "c" / "summary.json").write_text(json.dumps(summary))
    rows = compare_csv(tmp_path, str(runs))
    header = list(rows[0])
    assert header[:5] == ["run", "status", "model", "optim", "optim.lr"]
    assert header[5:9] == ["best/val/acc", "val/loss", "val/acc", "train/d_loss"]
    assert "train/loss" not in header, "the classifiers have validation metrics"
    assert [r["run"] for r in rows] == ["a", "b", "c"], "no best/val/acc: last"
    assert (rows[1]["optim.lr"], rows[2]["optim"], rows[2]["train/g_loss"]) == ("0.05", "", "0.5")


def test_default_order_is_best_first_and_sort_follows_the_metric(grid, tmp_path):
    accs = [float(r["val/acc"]) for r in compare_csv(tmp_path, str(grid))]
    assert accs == sorted((score(*job) for job in GRID), reverse=True)
    losses = [float(r["val/loss"]) for r in compare_csv(tmp_path, str(grid), "--sort", "val/loss")]
    assert losses == sorted(losses), "loss-like names ascend"
    accs = [
        float(r["val/acc"]) for r in compare_csv(tmp_path, str(grid), "--sort=val/acc", "--asc")
    ]
    assert accs == sorted(accs)
    rows = compare_csv(tmp_path, str(grid), "--sort", "optim.lr", "--desc")
    assert [float(r["optim.lr"]) for r in rows] == [0.01] * 4 + [0.001] * 4
    # a metric that is not shown still sorts, and becomes a column so the order can be seen
    rows = compare_csv(tmp_path, str(grid), "--sort", "train/loss")
    assert [float(r["train/loss"]) for r in rows] == sorted(float(r["train/loss"]) for r in rows)


def test_top_n(grid, tmp_path):
    rows = compare_csv(tmp_path, str(grid), "--top", "3")
    assert len(rows) == 3
    assert rows[0]["run"] == "7_optim=adam,optim.lr=0.01,trainer.seed=1"
    assert [float(r["val/acc"]) for r in rows] == pytest.approx([0.95, 0.94, 0.91])


def test_latest_is_the_newest_run(grid, tmp_path, capsys):
    newest = grid / "sweeps" / "grid" / "3_optim=sgd,optim.lr=0.01,trainer.seed=1"
    (grid / "latest").write_text(f"{newest}\n")
    rows = compare_csv(tmp_path, str(grid / "latest"))
    assert [r["run"] for r in rows] == [newest.name]
    assert float(rows[0]["val/acc"]) == pytest.approx(0.85)
    assert "1 run, sorted by" in capsys.readouterr().out


def test_group_by_gives_mean_and_std_over_the_other_runs(grid, tmp_path, capsys):
    md = tmp_path / "groups.md"
    rows = compare_csv(tmp_path, str(grid), "--group-by", "optim.lr", "--markdown", str(md))
    assert [float(r["optim.lr"]) for r in rows] == [0.01, 0.001], "best group first"
    for row in rows:
        lr = float(row["optim.lr"])
        accs = [score(o, lr_, s) for o, lr_, s in GRID if lr_ == lr]
        assert row["runs"] == "4" and row["status"] == "4 done"
        assert float(row["val/acc"]) == pytest.approx(statistics.fmean(accs))
        assert float(row["val/acc std"]) == pytest.approx(statistics.stdev(accs))
        walls = [10.0 + s for o, lr_, s in GRID if lr_ == lr]
        assert float(row["wall_time_s"]) == pytest.approx(statistics.fmean(walls))
    assert "8 runs in 2 groups" in capsys.readouterr().out
    shown = parse_markdown(md)
    mean, std = (
        statistics.fmean([0.84, 0.85, 0.94, 0.95]),
        statistics.stdev([0.84, 0.85, 0.94, 0.95]),
    )
    assert shown[0]["val/acc"] == f"{mean:.4g} ± {std:.4g}"
    # a group choice, and two keys at once
    rows = compare_csv(tmp_path, str(grid), "--group-by", "optim", "--sort", "optim")
    assert [r["optim"] for r in rows] == ["adam", "sgd"]
    assert float(rows[1]["val/acc"]) == pytest.approx(statistics.fmean([0.80, 0.81, 0.84, 0.85]))
    assert "mean ± std over runs with different optim.lr, trainer.seed" in capsys.readouterr().out
    rows = compare_csv(tmp_path, str(grid), "--group-by", "optim,optim.lr", "--top", "1")
    assert (rows[0]["optim"], rows[0]["optim.lr"], rows[0]["runs"]) == ("adam", "0.01", "2")


def test_csv_and_markdown_hold_the_rows_shown(grid, tmp_path):
    md = tmp_path / "table.md"
    rows = compare_csv(
        tmp_path, str(grid), "--sort", "test/acc", "--top", "5", "--markdown", str(md)
    )
    shown = parse_markdown(md)
    assert [list(r) for r in shown] == [list(r) for r in rows] and len(shown) == 5
    for full, text in zip(rows, shown, strict=True):
        assert text["run"] == full["run"] and text["optim"] == full["optim"]
        for key in ("optim.lr", "best/val/acc", "val/loss", "test/acc"):
            assert text[key] == f"{float(full[key]):.4g}"
        assert float(full["test/acc"]) == pytest.approx(float(full["val/acc"]) - 0.02)
        assert text["wall_time_s"] == f"{float(full['wall_time_s']):.1f}"


def test_unfinished_runs_are_shown_with_their_status(grid, tmp_path):
    sweep = grid / "sweeps" / "grid"
    write_run(sweep / "8_running", "sgd", 0.1, 0, status="running")
    write_run(sweep / "9_interrupted", "sgd", 0.1, 1, status="interrupted")
    write_run(sweep / "10_failed", "adam", 0.1, 0, status="failed")
    rows = {r["run"]: r for r in compare_csv(tmp_path, str(sweep))}
    assert len(rows) == 11 and list(rows)[-1] == "10_failed", "no best value: last"
    running = rows["8_running"]
    # read from metrics.jsonl and .hydra/hydra.yaml: the best of 2 epochs so far
    assert (running["status"], running["epochs"], running["optim"]) == ("running", "2", "sgd")
    assert float(running["best/val/acc"]) == pytest.approx(score("sgd", 0.1, 0) - 0.05)
    assert rows["9_interrupted"]["status"] == "interrupted" and rows["10_failed"]["val/acc"] == ""
    # resumed after its summary was written: running again (file times would not tell, as
    # `cp -r` resets them: here summary.json is older than config.yaml everywhere)
    interrupted, done = sweep / "9_interrupted", sweep / "0_optim=sgd,optim.lr=0.001,trainer.seed=0"
    for run in (interrupted, done):
        os.utime(run / "summary.json", (1, 1))
    resumes = {interrupted: "2026-11-29T05:00:00+0000", done: "2026-11-29T04:00:00+0000"}
    for run, when in resumes.items():  # only the first was resumed after its summary's end
        (run / "command.txt").write_text(f"dlexp\n# {when} resumed with:\ndlexp resume x\n")
    rows = compare_csv(tmp_path, str(interrupted), str(done))
    assert [(r["run"], r["status"]) for r in rows] == [
        ("0_optim=sgd,optim.lr=0.001,trainer.seed=0", "done"),
        ("9_interrupted", "running"),
    ]


def test_plot_writes_learning_curves(grid, tmp_path, capsys):
    png = tmp_path / "curves.png"
    assert main([str(grid), "--top", "4", "--plot", str(png)]) == 0
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert main([str(grid), "--group-by", "optim", "--plot", str(tmp_path / "g.svg")]) == 0
    assert "optim=adam optim.lr=0.01 trainer.seed=1" in (tmp_path / "g.svg").read_text()


def test_broken_runs_are_skipped_with_a_note(grid, tmp_path, capsys):
    sweep = grid / "sweeps" / "grid"
    (sweep / "0_optim=sgd,optim.lr=0.001,trainer.seed=0" / "summary.json").write_text("{oops")
    assert len(compare_csv(tmp_path, str(grid))) == 7
    out = capsys.readouterr().out
    assert "skipped " in out and "0_optim=sgd,optim.lr=0.001,trainer.seed=0: JSONDecodeError" in out
    failed = tmp_path / "failed"
    write_run(failed / "x", "sgd", 0.1, 0, status="failed")
    with pytest.raises(DlexpError, match="none of these runs has finished an epoch yet"):
        main([str(failed), "--plot", str(tmp_path / "p.png")])
    (failed / "x" / "config.yaml").write_text("- a list\n")
    with pytest.raises(DlexpError, match="no readable runs in .*failed:\n.*not a mapping"):
        main([str(failed)])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere"], "nowhere does not exist"),
        (["{grid}/my_configs"], "no dlexp runs in .*my_configs"),
        (
            ["{grid}", "--sort", "val/ac"],
            "--sort val/ac: .*Did you mean 'val/acc'.*Valid: run, status",
        ),
        (["{grid}", "--sort", "wall"], "Did you mean 'wall_time_s'"),
        (
            ["{grid}", "--group-by", "optim.lrr"],
            "Did you mean 'optim.lr'.*Valid: optim, optim.lr, ",
        ),
        (["{grid}", "--group-by", "optim.lr", "--sort", "trainer.seed"], "Valid: optim.lr, runs"),
        (["{grid}", "--top", "0"], "--top must be at least 1"),
        (["{grid}", "--asc", "--desc"], "--asc and --desc: give one of them"),
        (["{grid}", "--top", "three"], "invalid int value: 'three'"),
        (["{grid}", "--sortt", "x"], "unrecognized arguments: --sortt"),
        (["{grid}", "--csv", "{grid}/missing/t.csv"], "the folder .*missing does not exist"),
        (["{grid}", "--plot", "{grid}/curves.jpg"], "give a .png, .pdf or .svg"),
        (["{grid}", "--csv", "{grid}"], "that is a folder; give a file name"),
        (["{grid}", "--markdown", "/proc/t.md"], "cannot write /proc/t.md"),
        ([], "the following arguments are required: PATH"),
    ],
)
def test_bad_input_names_what_is_wrong(grid, args, message):
    with pytest.raises(DlexpError, match=message):
        main([a.replace("{grid}", str(grid)) for a in args])


def test_a_group_choice_and_its_name_key_are_one_column(grid, capsys):
    # data=kmnist sets data.name=kmnist: the table shows the choice once
    for i, summary_path in enumerate(sorted(grid.rglob("summary.json"))):
        folder, name = summary_path.parent, "kmnist" if i < 4 else "mnist_sample"
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        cfg["data"]["name"] = name
        (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
        summary = json.loads(summary_path.read_text())
        summary["choices"]["data"] = name
        summary_path.write_text(json.dumps(summary))
    assert main([str(grid), "--csv", str(grid / "t.csv")]) == 0
    header = (grid / "t.csv").read_text().splitlines()[0].split(",")
    assert "data" in header and "data.name" not in header


def test_a_run_named_twice_is_compared_once(grid, capsys):
    runs = sorted(p.parent for p in grid.rglob("summary.json"))
    assert main([str(runs[0]), str(runs[0]), str(grid)]) == 0
    assert f"{len(runs)} runs" in capsys.readouterr().out


def test_help_and_no_torch(grid, tmp_path, capsys):
    assert main(["--help"]) == 0 and "--group-by" in capsys.readouterr().out
    code = (
        "import sys; from dlexp.cli.compare import main;"
        f"main([{str(grid)!r}, '--group-by', 'optim', '--plot', {str(tmp_path / 'c.png')!r}]);"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "2 groups" in proc.stdout


@pytest.mark.slow
def test_two_real_runs_through_the_cli(make_cfg, tmp_path):
    from dlexp.cli.main import VERBS
    from dlexp.cli.train import train

    runs = tmp_path / "outputs" / "runs"
    for name, lr in (("slow", "0.0001"), ("fast", "0.003")):
        (runs / name).mkdir(parents=True)
        # no validation split: no end-of-run figures, the slow part of a tiny run
        quick = ("data.val_fraction=0", "trainer.monitor=train/acc", "trainer.progress=none")
        cfg = make_cfg("trainer=debug", *quick, f"optim.lr={lr}")
        train(cfg, run_dir=runs / name)
    assert "compare" in VERBS, "`dlexp compare` is a verb of the command line"
    command = [sys.executable, "-m", "dlexp", "compare"]
    proc = subprocess.run(
        [*command, str(tmp_path / "outputs"), "--csv", "t.csv"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 runs, sorted by best/train/acc (descending)" in proc.stdout
    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["run", "status", "optim.lr"]
    for row in rows:
        summary = json.loads((runs / Path(row["run"]).name / "summary.json").read_text())
        assert float(row["test/acc"]) == pytest.approx(summary["test"]["test/acc"])
        assert float(row["best/train/acc"]) == pytest.approx(summary["best"]["value"])
        assert row["status"] == "done" and row["epochs"] == "1"
    assert float(rows[0]["best/train/acc"]) >= float(rows[1]["best/train/acc"])
    proc = subprocess.run(
        [*command, "nowhere"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "nowhere does not exist" in proc.stderr


def test_long_legend_labels_give_way_to_run_names(grid, tmp_path):
    from dlexp.cli.compare import run_labels

    runs = [{"run": "a", "optim.lr": 0.1}, {"run": "b", "optim.lr": 0.2}]
    assert run_labels(runs, ["optim.lr"]) == ["optim.lr=0.1", "optim.lr=0.2"]
    assert run_labels(runs, ["optim.lr"], longest=5) == ["a", "b"]
    # the legend sits under the panels: many runs leave the panels their size, with no warning
    # from matplotlib that the axes collapsed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([str(grid), "--plot", str(tmp_path / "all.svg")]) == 0
    svg = (tmp_path / "all.svg").read_text()
    assert "optim=sgd optim.lr=0.001 trainer.seed=0" in svg
