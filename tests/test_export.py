"""`dlexp export`: ONNX and TorchScript files that compute what the PyTorch model computes, on
real inputs prepared from the JSON beside them alone; and a clear refusal that writes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dlexp.cli.export import export_run
from dlexp.cli.main import run_verb
from dlexp.data.vision import load_image_splits
from dlexp.engine.builders import build_model
from dlexp.engine.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from dlexp.engine.inference import load_classifier
from tests.trained import compose_cfg

ort = pytest.importorskip("onnxruntime")
# the tests load TorchScript files themselves, which PyTorch has deprecated
pytestmark = [
    pytest.mark.slow,  # a LeNet and a text run are trained, ONNX export takes seconds
    pytest.mark.filterwarnings("ignore:.*torch.jit.load.*:FutureWarning"),
]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def lenet(shared_lenet):
    return shared_lenet


@pytest.fixture(scope="module")
def text(shared_text):
    return shared_text


def classifier(run: Path):
    ckpt = run / "checkpoints" / "best.pt"
    return load_classifier(load_checkpoint(ckpt), ckpt, CPU)


def call(*argv: object) -> int:
    return run_verb("export", [str(a) for a in argv])


def errors(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


def images_from_json(meta: dict, pixels: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W] → the model's input, following the JSON's recipe and nothing else."""
    pre = meta["preprocess"]
    mean = np.array(pre["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.array(pre["std"], np.float32).reshape(1, -1, 1, 1)
    x = (pixels.astype(np.float32) / 255 - mean) / std
    pad = pre["image_size"] - pre["input_size"]
    if pad:
        black = np.broadcast_to(
            (0 - mean) / std, (*x.shape[:2], pre["image_size"], pre["image_size"])
        )
        out = black.copy()
        lo = pad // 2
        out[..., lo : lo + x.shape[-2], lo : lo + x.shape[-1]] = x
        x = out
    return x.astype(np.float32)


def texts_from_json(meta: dict, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    pre = meta["preprocess"]
    index = {t: i for i, t in enumerate(pre["vocab"])}
    docs = []
    for text in texts:
        text = re.sub(r"<br\s*/?>", " ", text, flags=re.IGNORECASE)
        text = text.lower() if pre["tokenizer"]["lowercase"] else text
        tokens = re.findall(pre["tokenizer"]["pattern"], text)[: pre["max_len"]]
        docs.append([index.get(t, pre["unk_index"]) for t in tokens] or [pre["unk_index"]])
    width = max(len(d) for d in docs)
    ids = np.full((len(docs), width), pre["pad_index"], np.int64)
    for i, d in enumerate(docs):
        ids[i, : len(d)] = d
    return ids, np.array([len(d) for d in docs], np.int64)


# -- ONNX and TorchScript match PyTorch ---------------------------------------------------------
def test_lenet_to_onnx_matches_pytorch_for_batches_of_1_and_7(lenet, capsys):
    done = export_run([str(lenet.run)])
    assert done.path == lenet.run / "exports" / "best.onnx"
    out = " ".join(capsys.readouterr().out.split())
    assert "as ONNX opset 18 with a dynamic batch axis" in out and "under 0.0001" in out
    assert "checked with ONNX Runtime on 7 validation images: largest difference" in out
    meta = json.loads((lenet.run / "exports" / "best.json").read_text())
    assert meta["opset"] == 18 and meta["format"] == "onnx" and meta["epoch"] == 1
    assert meta["inputs"] == [{"name": "images", "shape": ["batch", 1, 32, 32], "dtype": "float32"}]
    assert meta["outputs"] == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}]
    assert len(meta["classes"]) == 10 and meta["preprocess"]["input_size"] == 28
    assert all(d < 1e-4 for d in meta["check"]["max_difference"].values())

    data = lenet.cfg["data"]
    val = load_image_splits(data["name"], data["data_dir"], val_fraction=0.1).val_x[:7]
    x = images_from_json(meta, val.numpy())
    net = classifier(lenet.run)
    assert np.abs(x - net.prepare_images(list(val.numpy())).numpy()).max() < 1e-5
    session = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        (got,) = session.run(None, {"images": x[:n]})
        expected = net.model(torch.from_numpy(x[:n])).detach().numpy()
        assert got.shape == (n, 10) and np.abs(got - expected).max() < 1e-4


def test_lenet_to_torchscript_matches_the_eager_model(lenet, tmp_path):
    done = export_run([str(lenet.run), "format=torchscript", f"out={tmp_path / 'lenet.pt'}"])
    meta = json.loads((tmp_path / "lenet.json").read_text())
    assert meta["format"] == "torchscript" and "opset" not in meta
    loaded = torch.jit.load(str(done.path))
    net = classifier(lenet.run)
    x = torch.randn(7, 1, 32, 32)
    for n in (1, 7):
        assert (loaded(x[:n]) - net.model(x[:n])).abs().max() < 1e-4


def test_a_text_model_exports_with_its_vocabulary(text, tmp_path):
    onnx_file = export_run([str(text.run), f"out={tmp_path / 'text.onnx'}"]).path
    ts_file = export_run([str(text.run), "format=torchscript", f"out={tmp_path / 'text.pt'}"]).path
    meta = json.loads((tmp_path / "text.json").read_text())
    assert [i["shape"] for i in meta["inputs"]] == [["batch", "tokens"], ["batch"]]
    assert [i["dtype"] for i in meta["inputs"]] == ["int64", "int64"]
    assert meta["classes"] == ["neg", "pos"] and meta["preprocess"]["max_len"] == 256
    assert meta["preprocess"]["vocab"][:2] == ["<pad>", "<unk>"]
    assert meta["check"]["inputs"] == "7 validation texts"

    texts = text.val_texts[:7]
    ids, lengths = texts_from_json(meta, texts)
    net = classifier(text.run)
    own_ids, own_lengths = net.encode(texts)
    assert np.array_equal(ids, own_ids.numpy()) and np.array_equal(lengths, own_lengths.numpy())
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(ts_file))
    for n in (1, 7):
        width = int(lengths[:n].max())
        feed = {"tokens": ids[:n, :width], "lengths": lengths[:n]}
        expected = net.model(*(torch.from_numpy(v) for v in feed.values())).detach()
        (got,) = session.run(None, feed)
        assert np.abs(got - expected.numpy()).max() < 1e-4
        assert (
            scripted(*(torch.from_numpy(v) for v in feed.values())) - expected
        ).abs().max() < 1e-4


def gan_run(tmp_path: Path) -> Path:
    """A GAN run folder with an untrained generator: the checkpoint is all export reads."""
    cfg = compose_cfg(tmp_path, "model=gan", "model.latent_dim=16")
    run = tmp_path / "outputs" / "runs" / "gan"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    shape = {"latent_dim": 16, "channels": 1, "image_size": 28}
    generator = build_model(cfg["model"]["generator"], {}, shape)
    payload = {"format": FORMAT, "config": cfg, "generator": generator.state_dict()}
    payload.update(data={"channels": 1, "image_size": 28}, train_state={"epoch": 3})
    payload["fixed_noise"] = torch.randn(64, 16)
    save_checkpoint(payload, run / "checkpoints" / "best.pt")
    return run


def test_a_gan_exports_its_generator(tmp_path):
    done = export_run([str(gan_run(tmp_path))])
    meta = json.loads(done.sidecar.read_text())
    assert meta["task"] == "gan" and meta["epoch"] == 3
    assert meta["inputs"] == [{"name": "noise", "shape": ["batch", 16], "dtype": "float32"}]
    assert meta["outputs"][0]["shape"] == ["batch", 1, 28, 28]
    session = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    (images,) = session.run(
        None, {"noise": np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)}
    )
    assert images.shape == (3, 1, 28, 28) and np.abs(images).max() <= 1


# -- refusals -----------------------------------------------------------------------------------
def test_an_export_that_differs_fails_with_the_figure_and_writes_nothing(
    lenet, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("dlexp.engine.export.TOLERANCE", -1.0)  # nothing passes
    before = sorted(p.name for p in lenet.run.rglob("*"))
    out = tmp_path / "new" / "lenet.pt"
    assert call(lenet.run, "format=torchscript", "ckpt=last", f"out={out}") == 2
    err = errors(capsys)
    assert "the torchscript file's outputs differ from PyTorch's by up to 0 on 7 validation" in err
    assert "(the limit is -1); nothing was written" in err
    assert not (tmp_path / "new").exists()  # not even the folder
    assert call(lenet.run, "format=torchscript") == 2  # into the run folder: nothing there
    assert sorted(p.name for p in lenet.run.rglob("*")) == before


def test_onnx_without_the_extra_names_it(lenet, monkeypatch, capsys):
    real = __import__("importlib").util.find_spec
    monkeypatch.setattr(
        "dlexp.cli.export.importlib.util.find_spec",
        lambda name: None if name == "onnxruntime" else real(name),
    )
    assert call(lenet.run, "out=x.onnx") == 2
    err = errors(capsys)
    assert "format=onnx needs onnx, onnxscript, onnxruntime (missing: onnxruntime)" in err
    assert "pip install 'dlexp[export]'" in err and not Path("x.onnx").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["format=tflite"], "format=tflite: must be one of onnx, torchscript"),
        (["out=model.json"], "out=model.json: give a file name ending in .onnx for format=onnx"),
        (
            ["format=torchscript", "out=m.onnx"],
            "ending in .pt or .pth or .ts for format=torchscript",
        ),
        (["ckpt=epoch_2"], "ckpt=epoch_2: must be one of best, last"),
        (["out=notes.txt/m.onnx"], "cannot write notes.txt/m.onnx: notes.txt is not a folder"),
        (["opset=17"], "export: unknown argument 'opset=17'"),
    ],
)
def test_wrong_requests(lenet, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    assert call(lenet.run, *args) == 2
    assert message in errors(capsys)


def test_a_bidirectional_rnn_goes_to_torchscript_not_onnx(text, tmp_path, capsys):
    """It packs padded batches, which ONNX cannot express; the trace keeps the packing."""
    payload = load_checkpoint(text.run / "checkpoints" / "best.pt")
    cfg = payload["config"]
    cfg["model"]["bidirectional"] = True
    vocab = payload["data"]["vocab"]
    model = build_model(
        cfg["model"], {}, {"vocab_size": len(vocab), "num_classes": 2, "pad_index": 0}
    )
    payload["model"] = model.state_dict()
    run = tmp_path / "bidirectional"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    save_checkpoint(payload, run / "checkpoints" / "best.pt")
    assert call(run, f"out={tmp_path / 'b.onnx'}") == 2
    err = errors(capsys)
    assert "SentimentLSTM packs padded batches (bidirectional), which ONNX cannot express" in err
    assert "export it with format=torchscript" in err
    assert not list(tmp_path.glob("b.*"))
    done = export_run([str(run), "format=torchscript", f"out={tmp_path / 'b.pt'}"])
    assert max(done.differences.values()) < 1e-4


def test_a_vae_exports_its_decoder(tmp_path):
    """Codes in, images in [0, 1] out: the same pixels `dlexp sample` decodes."""
    from dlexp.models.vae import decode_images
    from dlexp.tasks.vae.network import build_network

    cfg = compose_cfg(tmp_path, "model=vae", "model.latent_dim=8")
    run = tmp_path / "outputs" / "runs" / "vae"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    net = build_network(cfg["model"], 1, 28)
    payload = {"format": FORMAT, "config": cfg, "model": net.state_dict()}
    payload.update(data={"channels": 1, "image_size": 28}, train_state={"epoch": 2})
    payload["fixed_noise"] = torch.randn(16, 8)
    save_checkpoint(payload, run / "checkpoints" / "best.pt")
    done = export_run([str(run)])
    meta = json.loads(done.sidecar.read_text())
    assert meta["task"] == "vae" and meta["inputs"][0]["shape"] == ["batch", 8]
    session = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    codes = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    (images,) = session.run(None, {"codes": codes})
    expected = decode_images(net, torch.from_numpy(codes)).numpy()
    assert images.shape == (5, 1, 28, 28) and np.abs(images - expected).max() < 1e-4
