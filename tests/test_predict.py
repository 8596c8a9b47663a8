"""`dlexp predict`: new inputs prepared as in training give the classes `dlexp eval` gives them;
every way an input can be wrong is named, and the rest are still predicted."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dlexp.cli.main import run_verb
from dlexp.cli.predict import predict
from dlexp.data.vision import load_image_splits
from dlexp.engine.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from tests.conftest import run_cli
from tests.textdata import write_table
from tests.trained import compose_cfg, eval_predictions

N_IMAGES = 60
pytestmark = pytest.mark.slow  # the session's shared LeNet and text runs are trained once


@pytest.fixture(scope="module")
def lenet(shared_lenet):
    return shared_lenet


@pytest.fixture(scope="module")
def text(shared_text):
    return shared_text


@pytest.fixture(scope="module")
def val_images(lenet):
    """The run's first validation images (uint8 [N, 1, 28, 28]), as `dlexp eval` sees them."""
    data = lenet.cfg["data"]
    splits = load_image_splits(
        data["name"], data["data_dir"], val_fraction=data["val_fraction"], split_seed=0
    )
    return splits.val_x[:N_IMAGES]


@pytest.fixture(scope="module")
def pngs(val_images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pngs") / "digits"
    (folder / "more").mkdir(parents=True)
    for i, image in enumerate(val_images):
        sub = folder / "more" if i % 2 else folder  # a folder is read recursively
        Image.fromarray(image[0].numpy()).save(sub / f"{i:03d}.png")
    return folder


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def call(*argv: object) -> int:
    return run_verb("predict", [str(a) for a in argv])


def errors(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


# -- the same classes as dlexp eval ------------------------------------------------------------
def test_png_files_get_the_classes_eval_gives_them(lenet, pngs, tmp_path):
    out = predict([str(lenet.run), str(pngs), f"out={tmp_path / 'p.csv'}", "top_k=3"])
    preds, probs = eval_predictions(lenet)
    got = {Path(r["input"]).name: r for r in rows(out)}
    assert len(got) == N_IMAGES
    classes = load_checkpoint(lenet.run / "checkpoints" / "best.pt")["classes"]
    for i in range(N_IMAGES):
        row = got[f"{i:03d}.png"]
        assert row["prediction"] == classes[int(preds[i])], i
        assert float(row["probability"]) == pytest.approx(float(probs[i].max()), abs=1e-5)
        assert row["top3"] and float(row["top2_probability"]) >= float(row["top3_probability"])
    assert max(float(r["probability"]) for r in got.values()) > 0.5  # a model that learned


def test_a_npy_array_and_rgb_files_are_prepared_the_same_way(
    lenet, val_images, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "a.npy", val_images[:8, 0].numpy())  # [N, H, W] uint8
    np.save(tmp_path / "f.npy", val_images[:8].numpy().astype(np.float32) / 255)  # [N, 1, H, W]
    rgb = tmp_path / "rgb.png"
    Image.fromarray(val_images[3, 0].numpy()).convert("RGB").save(rgb)
    out = predict([str(lenet.run), *(str(tmp_path / f) for f in ("a.npy", "f.npy", "rgb.png"))])
    got = rows(out)
    assert [r["input"] for r in got[:2]] == [f"{tmp_path / 'a.npy'}[0]", f"{tmp_path / 'a.npy'}[1]"]
    assert [r["prediction"] for r in got[:8]] == [r["prediction"] for r in got[8:16]]
    assert got[16]["prediction"] == got[3]["prediction"]
    assert out == Path("predictions.csv")  # the default: in the current folder


def test_texts_get_the_classes_eval_gives_them(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    preds, probs = eval_predictions(text)
    assert text.val_texts is not None
    classes = ["neg", "pos"]
    expected = [classes[int(p)] for p in preds]
    val_csv = Path(text.cfg["data"]["val"])
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(text.val_texts) + "\n\n", encoding="utf-8")  # a blank line: left out
    jsonl = write_table(tmp_path / "t.jsonl", [{"text": t} for t in text.val_texts[:5]], "jsonl")
    for source in (val_csv, lines):
        got = rows(predict([str(text.run), str(source), f"out={tmp_path / 'p.csv'}"]))
        assert [r["input"] for r in got] == text.val_texts
        assert [r["prediction"] for r in got] == expected
        assert [float(r["probability"]) for r in got] == pytest.approx(
            probs.max(1).values.tolist(), abs=1e-5
        )
    got = rows(predict([str(text.run), f"text={text.val_texts[0]}", str(jsonl), "top_k=5"]))
    assert [r["prediction"] for r in got] == [expected[0], *expected[:5]]
    assert "top2" in got[0] and "top3" not in got[0]  # two classes: top_k stops at two


def test_one_real_command_line(lenet, pngs, tmp_path):
    proc = run_cli(
        tmp_path, "predict", str(lenet.run), str(pngs / "000.png"), str(pngs / "002.png")
    )
    assert proc.returncode == 0, proc.stderr
    assert "probability" in proc.stdout and "wrote 2 prediction(s)" in proc.stdout
    assert len(rows(tmp_path / "predictions.csv")) == 2


# -- errors --------------------------------------------------------------------------------
def test_unreadable_files_are_named_and_the_rest_predicted(lenet, pngs, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("000.png", "002.png"):
        (folder / name).write_bytes((pngs / name).read_bytes())
    (folder / "garbage.png").write_bytes(b"not a png at all")
    (folder / "cut.png").write_bytes((pngs / "000.png").read_bytes()[:60])  # header, no pixels
    (folder / "notes.md").write_text("not an image")
    np.save(folder / "bad.npy", np.zeros((2, 5, 28, 28), np.uint8))  # 5 channels
    np.save(folder / "floats.npy", np.full((1, 28, 28), 3.0, np.float32))  # outside [0, 1]
    out = tmp_path / "p.csv"
    assert call(lenet.run, folder, f"out={out}") == 0
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert f"skipped {folder / 'garbage.png'}: not an image file" in err
    assert f"{folder / 'cut.png'}: is damaged" in err
    assert f"{folder / 'bad.npy'}: has shape (2, 5, 28, 28)" in err
    assert f"{folder / 'floats.npy'}[0]: holds floats outside [0, 1]" in err
    assert "left out 1 file(s)" in err
    assert [Path(r["input"]).name for r in rows(out)] == ["000.png", "002.png"]
    assert "wrote 2 prediction(s)" in captured.out and "4 input(s) skipped" in captured.out


def test_the_skipped_count_is_reported(lenet, pngs, tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"garbage")
    assert call(lenet.run, pngs / "000.png", tmp_path / "x.png", f"out={tmp_path / 'p.csv'}") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "wrote 1 prediction(s)" in out and "1 input(s) skipped" in out


def test_when_nothing_can_be_read_nothing_is_written(lenet, tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"garbage")
    assert call(lenet.run, tmp_path / "x.png", f"out={tmp_path / 'p.csv'}") == 2
    assert "none of the 1 input(s) could be used" in errors(capsys)
    assert not (tmp_path / "p.csv").exists()


def test_an_empty_folder_is_refused(lenet, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("x")
    assert call(lenet.run, tmp_path / "empty", f"out={tmp_path / 'p.csv'}") == 2
    assert f"{tmp_path / 'empty'} holds no image files" in errors(capsys)
    assert call(lenet.run, tmp_path / "docs") == 2
    assert "holds no image files (only 1 other file(s))" in errors(capsys)
    assert not (tmp_path / "p.csv").exists()


def test_another_size_is_refused_unless_resized(lenet, val_images, tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.fromarray(val_images[0, 0].numpy()).resize((56, 40)).save(big)
    out = tmp_path / "p.csv"
    assert call(lenet.run, big, f"out={out}") == 2
    err = errors(capsys)
    assert "1 of 1 image(s) are not 28x28 px" in err and "big.png is 56x40" in err
    assert "resize=true" in err and not out.exists()
    assert call(lenet.run, big, f"out={out}", "resize=true") == 0
    assert "resized 1 image(s) to 28x28 px" in errors(capsys)
    assert len(rows(out)) == 1


@pytest.mark.parametrize(
    "inputs, message",
    [
        (["notes.txt"], "notes.txt is a text file, but this run classifies images"),
        (["text=a digit"], "text=...: this run classifies images"),
        (["missing.png"], "missing.png does not exist"),
        ([], "predict: no inputs"),
        (["x.png", "topk=3"], "unknown argument 'topk=3'. Did you mean top_k=...?"),
        (["x.png", "out=p.txt"], "out=p.txt: give a file name ending in .csv"),
        (["x.png", "top_k=0"], "top_k=0: must be from 1 to 1000"),
        (["x.png", "ckpt=epoch_3"], "ckpt=epoch_3: must be one of best, last"),
    ],
)
def test_wrong_requests_for_an_image_run(lenet, tmp_path, monkeypatch, capsys, inputs, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("a digit\n")
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    assert call(lenet.run, *inputs) == 2
    assert message in errors(capsys)
    assert not (tmp_path / "predictions.csv").exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: Image.new("L", (28, 28)).save(d / "x.png") or "x.png", "x.png is an image"),
        (lambda d: np.save(d / "x.npy", np.zeros(3)) or "x.npy", "x.npy is an image"),
        (lambda d: (d / "f").mkdir() or "f", "f is a folder"),
        (lambda d: (d / "x.bin").write_bytes(b"1") and "x.bin", "x.bin is not a text file"),
        (
            lambda d: write_table(d / "t.csv", [{"review": "great"}], "csv").name,
            "the run reads its texts from the column 'text' (data.text_column), but the header "
            "names review",
        ),
    ],
)
def test_wrong_inputs_for_a_text_run(text, tmp_path, monkeypatch, capsys, make, message):
    monkeypatch.chdir(tmp_path)
    name = make(tmp_path)
    assert call(text.run, name) == 2
    err = errors(capsys)
    assert message in err
    if "column" not in message:
        assert "this run classifies text: give .txt (one text a line)" in err
    assert not (tmp_path / "predictions.csv").exists()


def test_bad_rows_of_a_text_file_are_skipped(text, tmp_path, capsys):
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "a wonderful film"}\nnot json\n{"title": "x"}\n{"text": " "}\n')
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 awful".encode("latin-1"))
    out = tmp_path / "p.csv"
    assert call(text.run, jsonl, tmp_path / "latin1.txt", f"out={out}") == 0
    err = errors(capsys)
    assert "t.jsonl line 2: is not valid JSON" in err
    assert "t.jsonl line 3: has no 'text' field" in err
    assert "t.jsonl line 4: has an empty 'text'" in err
    assert f"{tmp_path / 'latin1.txt'}: is not UTF-8 text" in err
    assert [r["input"] for r in rows(out)] == ["a wonderful film"]


def test_a_gan_run_is_pointed_to_sample(tmp_path, capsys):
    cfg = compose_cfg(tmp_path, "model=gan")
    run = tmp_path / "outputs" / "runs" / "gan"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    assert call(run, tmp_path / "x.png") == 2
    err = errors(capsys)
    assert "is a GAN run" in err and "dlexp predict works on classification runs" in err
    assert "use dlexp sample" in err


def test_a_missing_checkpoint_names_the_ones_there(lenet, tmp_path, capsys):
    run = tmp_path / "copy"
    run.mkdir()
    (run / "config.yaml").write_text((lenet.run / "config.yaml").read_text())
    payload = torch.load(lenet.run / "checkpoints" / "best.pt", weights_only=True)
    save_checkpoint({**payload, "format": FORMAT}, run / "checkpoints" / "best.pt")
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    assert call(run, tmp_path / "x.png", "ckpt=last") == 2
    assert "last.pt does not exist. It has: ckpt=best" in errors(capsys)
