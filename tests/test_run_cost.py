"""What a run costs beyond its epochs: no compiler or matplotlib imports of dlexp's own, cheap
figures, and an exit that skips the interpreter's teardown but loses nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from dlexp.engine.setup import setup_torch
from dlexp.tracking import figures
from dlexp.tracking.runlog import RunLogger
from tests.conftest import REPO, cli_env
from tests.tbread import scalar_and_image_tags

# Records who imports torch's compiler or matplotlib first, then runs `dlexp ARGS`; an atexit
# handler registered before dlexp's runs last, after the run has closed everything.
IMPORT_PROBE = """
import atexit, json, sys, traceback
seen = {}
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name in ("torch._dynamo", "torch._inductor", "matplotlib") and name not in seen:
            seen[name] = [f"{f.filename}:{f.name}" for f in traceback.extract_stack()]
        return None
sys.meta_path.insert(0, Probe())
atexit.register(lambda: print("PROBE=" + json.dumps(seen)))
sys.argv = ["dlexp", *sys.argv[1:]]
from dlexp.cli.main import main
main()
"""


def test_a_default_run_imports_no_compiler_and_no_matplotlib_of_its_own(tmp_path: Path):
    """torch 2.x imports its compiler when the first optimizer is made (any script pays that);
    dlexp's own set-up must not, nor draw its figures with matplotlib."""
    args = ["trainer.epochs=1", "trainer.limit_train_batches=3", "trainer.progress=none"]
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *args],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(s for s in done.stdout.splitlines() if s.startswith("PROBE="))
    seen = json.loads(line.removeprefix("PROBE="))
    assert "matplotlib" not in seen, seen["matplotlib"][-12:]
    for name in ("torch._dynamo", "torch._inductor"):
        stack = seen.get(name, [])
        assert not stack or any("torch/optim/" in frame for frame in stack), stack[-12:]
    run = Path((tmp_path / "outputs" / "latest").read_text().strip())
    for name in ("confusion_matrix", "misclassified"):
        assert (run / "figures" / f"{name}.png").stat().st_size > 1000


def test_setup_torch_sets_determinism_both_ways():
    trainer = {"device": "cpu", "threads": None, "precision": "32", "seed": 0}
    try:
        setup_torch({**trainer, "deterministic": True})
        assert torch.are_deterministic_algorithms_enabled()
        setup_torch({**trainer, "deterministic": False})  # the next job of a sweep
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_figures_are_rgb_arrays_that_reach_png_and_tensorboard(tmp_path: Path):
    classes = [f"{i} - digit" for i in range(10)]
    targets = torch.arange(200) % 10
    preds = targets.clone()
    preds[:30] = (preds[:30] + 1) % 10  # 30 mistakes, 3 per class
    images = torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8)
    figs = figures.validation_figures(preds, targets, classes, images)
    assert set(figs) == {"confusion_matrix", "misclassified"}
    for image in figs.values():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    counts = figures.confusion_matrix(preds, targets, 10)
    assert counts.trace() == 170 and counts[0, 1] == 3
    # the diagonal (17 of 20 right) is drawn darker than an off-diagonal cell with 3
    colours = figures.blues(np.array([17 / 20, 3 / 20, 0.0]))
    assert colours[0].sum() < colours[1].sum() < colours[2].sum()
    for name, image in figs.items():
        figures.save_png(image, tmp_path / "figures" / f"{name}.png")
    from PIL import Image

    with Image.open(tmp_path / "figures" / "misclassified.png") as png:
        assert png.size == (figs["misclassified"].shape[1], figs["misclassified"].shape[0])
    logger = RunLogger(tmp_path)
    for name, image in figs.items():
        logger.log_figure(f"val/{name}", image, step=1)
    logger.close()
    _, image_tags = scalar_and_image_tags(tmp_path)
    assert image_tags == {"val/confusion_matrix", "val/misclassified"}


def test_many_classes_and_no_mistakes_still_draw():
    classes = [f"class_{i}" for i in range(120)]
    targets = torch.arange(600) % 120
    matrix = figures.validation_figures(targets, targets, classes)["confusion_matrix"]
    assert matrix.shape[0] > 120 * 4
    images = torch.zeros(600, 3, 32, 32, dtype=torch.uint8)
    grid = figures.validation_figures(targets, targets, classes, images)["misclassified"]
    assert grid.shape[0] > 20  # a title and an empty row


EXIT_PROBE = """
import atexit, sys, threading, time
from pathlib import Path
import torch
from dlexp.cli.main import exit_now
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
def late():
    time.sleep(0.3)
    (out / "thread").write_text("joined")
threading.Thread(target=late).start()
sys.stdout.write("no newline at the end")
exit_now(0)
print("not reached")
"""


def test_the_fast_exit_runs_what_a_normal_exit_would(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no newline at the end"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "joined"


def test_requirements_read_from_the_headers_match_the_full_metadata():
    from importlib.metadata import distributions

    from dlexp.tracking.provenance import name_and_version, requirements

    slow = {f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata["Name"]}
    assert requirements().splitlines() == sorted(slow)
    header = "Metadata-Version: 2.1\nName: x-y\nVersion: 1.0\n\nName: not a header\n"
    assert name_and_version(header) == ("x-y", "1.0")
    assert name_and_version(None) == (None, None)
