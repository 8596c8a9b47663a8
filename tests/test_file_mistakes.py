"""Files that are not what they should be: empty, cut off, in another encoding, or something
else under the expected name. Each is named with the place in it and what would fix it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from dlexp.errors import DlexpError
from tests.conftest import latest_run, run_cli


def text_cfg(train: Path, **extra: Any) -> dict[str, Any]:
    cfg = {
        "name": "text_files", "train": str(train), "val": None, "test": None, "format": "auto",
        "text_column": "text", "label_column": "label", "labels": None, "lowercase": True,
        "split_seed": 0, "val_fraction": 0.0, "test_fraction": 0.0,
    }  # fmt: skip
    return cfg | extra


def read(train: Path, **extra: Any) -> list[str]:
    from dlexp.engine.databuild import text_source

    corpus, _, classes = text_source(text_cfg(train, **extra)).load()
    return classes


def message(train: Path, **extra: Any) -> str:
    with pytest.raises(DlexpError) as err:
        read(train, **extra)
    return str(err.value)


def test_a_latin1_table_names_the_file_and_place_and_offers_an_encoding(tmp_path: Path) -> None:
    table = tmp_path / "reviews.csv"
    table.write_bytes("text,label\ngood,pos\ncaf\u00e9 au lait,neg\n".encode("latin-1"))
    text = message(table)
    assert f"{table} is not utf-8 text" in text and "line 3, column 4" in text
    assert "data.encoding=latin-1" in text
    assert read(table, encoding="latin-1") == ["neg", "pos"]


def test_a_latin1_text_in_a_class_folder_is_not_read_silently(tmp_path: Path) -> None:
    for label, text in (("pos", "fine"), ("neg", "d\u00e9j\u00e0 vu")):
        (tmp_path / "train" / label).mkdir(parents=True)
        (tmp_path / "train" / label / "1.txt").write_bytes(text.encode("latin-1"))
    text = message(tmp_path / "train")
    assert "neg/1.txt is not utf-8 text" in text and "data.encoding=" in text
    assert read(tmp_path / "train", encoding="latin-1") == ["neg", "pos"]


def test_a_utf8_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    table = tmp_path / "r.csv"
    table.write_bytes("\ufefftext,label\na,x\nb,y\n".encode())
    assert read(table) == ["x", "y"]


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("r.csv", b"", "is empty (no rows)"),
        ("r.csv", b"text,label\n", "is empty (no rows)"),
        ("r.jsonl", b"\n\n", "is empty (no rows)"),
        ("r.jsonl", b'{"text": "a", "label": 1}\n{"text": "b", "lab', "line 2 is not valid JSON"),
        ("r.csv", b'text,label\n"never closed,1\nb,0\nc,1\n', "a quote (\") opens a text that is never closed"),
        ("r.csv", gzip.compress(b"text,label\na,1\n"), "is not a text file"),
        ("r.jsonl", b'["a", 1]\n', "is not a JSON object"),
    ],
    ids=["empty", "header_only", "blank_jsonl", "cut_jsonl", "open_quote", "gzip_as_csv", "json_list"],
)  # fmt: skip
def test_empty_cut_or_other_files_are_named(tmp_path: Path, name, content, phrase) -> None:
    (tmp_path / name).write_bytes(content)
    assert phrase in message(tmp_path / name)


def test_an_unknown_encoding_is_a_config_problem(make_cfg, tmp_path: Path) -> None:
    from dlexp.config.resolvers import to_plain
    from dlexp.tasks.registry import validate

    (tmp_path / "r.csv").write_text("text,label\n")
    base = ("model=lstm", "data=text_files", f"data.train={tmp_path / 'r.csv'}")
    assert validate(to_plain(make_cfg(*base, "data.encoding=cp1252"))) == []
    (problem,) = validate(to_plain(make_cfg(*base, "data.encoding=utf9")))
    assert problem.startswith("data.encoding: unknown encoding 'utf9'")


def test_a_latin1_csv_fails_the_run_with_one_message(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_bytes(
        "text,label\ngood,pos\nmauvais caf\u00e9,neg\n".encode("latin-1")
    )
    done = run_cli(
        tmp_path, "model=lstm_sentiment", "data=text_files", "data.train=r.csv",
        "trainer.progress=none",
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "data.encoding=latin-1" in " ".join(done.stderr.split())
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "is not utf-8 text" in summary["error"]
    assert "is not utf-8 text" in (run / "train.log").read_text()


# --- the files dlexp left behind ------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    done = run_cli(tmp, "trainer=debug", "trainer.progress=none", "model=mlp")
    assert done.returncode == 0, done.stderr
    return latest_run(tmp)


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("config.yaml", b"", "config.yaml is empty"),
        ("config.yaml", b"model:\n  _target_: [x\n", "config.yaml is not valid YAML (line 3"),
        ("config.yaml", b"- a\n- b\n", "holds no config (a mapping of groups), but list"),
        ("config.yaml", "model: caf\u00e9\n".encode("latin-1"), "config.yaml is not text in UTF-8"),
    ],
    ids=["empty_config", "cut_config", "list_config", "latin1_config"],
)  # fmt: skip
@pytest.mark.parametrize("verb", ["resume", "rerun", "eval"])
def test_damaged_run_files_are_reported_by_every_verb(
    finished_run: Path, tmp_path: Path, capsys, name, content, phrase, verb
) -> None:
    import shutil

    from dlexp.cli.main import run_verb

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / name).write_bytes(content)
    assert run_verb(verb, [str(run), "--trust"] if verb != "eval" else [str(run)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert phrase in err and "Traceback" not in err, err


def test_a_damaged_manifest_is_reported_before_the_sweep_starts(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from dlexp.cli.preflight import checked_config

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "manifest.json").write_text('{"jobs": {"0": ')
    monkeypatch.setenv("DLEXP_OUTPUT_ROOT", str(tmp_path / "outputs"))
    with pytest.raises(SystemExit) as stop:
        checked_config(["-m", "optim.lr=0.1,0.01", f"hydra.sweep.dir={sweep}", "resume=auto"])
    assert stop.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "manifest.json is not valid JSON at line 1" in err and "resume=auto writes a new" in err


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("tiny.yaml", "_target_: dlexp.models.cnn.MLP\n# caf\u00e9\n".encode("latin-1"), "tiny.yaml is not utf-8 text"),
        ("tiny.yaml", b"hidden_sizes: [8\n", "tiny.yaml is not valid YAML at line 2"),
        ("tiny.yaml", b"- 8\n- 16\n", "tiny.yaml holds a YAML list, not a mapping"),
    ],
)  # fmt: skip
def test_a_users_config_option_that_is_not_yaml_is_named(
    tmp_path: Path, monkeypatch, capsys, name, content, phrase
) -> None:
    from dlexp.cli.preflight import checked_config

    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / name).write_bytes(content)
    monkeypatch.setenv("DLEXP_OUTPUT_ROOT", str(tmp_path / "outputs"))
    with pytest.raises(SystemExit):
        checked_config(["--config-dir", str(tmp_path / "conf"), "model=tiny"])
    err = " ".join(capsys.readouterr().err.split())
    assert phrase in err and "option tiny of model" in err


# --- downloads that fail ------------------------------------------------------------------------


def test_a_failed_download_says_so_and_leaves_no_folder(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    from dlexp.data.vision import load_image_splits

    class FashionMNIST(torchvision.datasets.FashionMNIST):  # offline: its download fails
        def __init__(self, root: str, train: bool, download: bool) -> None:
            raw = Path(root) / "FashionMNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            (raw / "train-images-idx3-ubyte.gz").write_bytes(b"half a file")
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FashionMNIST)
    data = tmp_path / "data"
    with pytest.raises(DlexpError) as err:
        load_image_splits("fashion_mnist", data, download=True)
    text = str(err.value)
    assert "Downloading fashion_mnist" in text and "failed" in text and "no network" in text
    assert "Set data.download=true" not in text and "data.download=false" in text
    assert not data.exists(), sorted(map(str, data.rglob("*")))
    (data / "FashionMNIST" / "raw").mkdir(parents=True)
    (data / "FashionMNIST" / "raw" / "mine.txt").write_text("kept")
    with pytest.raises(DlexpError):
        load_image_splits("fashion_mnist", data, download=True)
    assert sorted(p.name for p in data.rglob("*")) == ["FashionMNIST", "mine.txt", "raw"]


def test_a_failed_imdb_download_does_not_ask_to_download(tmp_path: Path, monkeypatch) -> None:
    import urllib.request

    from dlexp.data import imdb

    def offline(*args: Any, **kwargs: Any) -> None:
        raise OSError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DlexpError) as err:
        imdb.load_imdb(tmp_path / "data", download=True, lowercase=True)
    text = str(err.value)
    assert "failed" in text and "Name or service not known" in text
    assert "download=true" not in text and "data.download=false" in text
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("cache_bytes", [b"", b"PK\x03\x04 cut off", b"not a zip at all"])
def test_a_damaged_imdb_cache_is_rebuilt_and_a_foreign_review_named(
    tmp_path: Path, cache_bytes: bytes
) -> None:
    from dlexp.data import imdb
    from tests.textdata import imdb_checksum, write_aclimdb_archive

    data = tmp_path / "data"
    with imdb_checksum(write_aclimdb_archive(data / imdb.ARCHIVE, n_per_class=2)):
        corpus, _ = imdb.load_imdb(data, download=False, lowercase=True)
    cache = imdb.cache_path(data, lowercase=True)
    cache.write_bytes(cache_bytes)  # empty, cut off, or not what its name says
    again, _ = imdb.load_imdb(data, download=False, lowercase=True)
    assert again.words == corpus.words and cache.stat().st_size > len(cache_bytes)
    cache.unlink()
    review = next((data / "aclImdb" / "train" / "pos").glob("*.txt"))
    review.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(DlexpError, match=f"{review.name} is not utf-8 text: the byte e9"):
        imdb.load_imdb(data, download=False, lowercase=True)


@pytest.mark.parametrize("cache_bytes", [b"", b"PK\x03\x04 cut off", b"not a zip at all"])
def test_a_damaged_mnist_sample_cache_is_rebuilt(tmp_path: Path, cache_bytes: bytes) -> None:
    from dlexp.data.vision import load_image_splits

    first = load_image_splits("mnist_sample", tmp_path)
    cache = tmp_path / "mnist_sample" / "mnist_5k.npz"
    cache.write_bytes(cache_bytes)
    again = load_image_splits("mnist_sample", tmp_path)
    assert (again.train_x == first.train_x).all() and cache.stat().st_size > 1000
