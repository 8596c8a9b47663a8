"""Tests for dlexp.models: shapes, gradients, parameter counts, init schemes, validation."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from dlexp.models.cnn import MLP, ConvNet, LeNet5
from dlexp.models.init import ACTIVATIONS, INITS, init_weights, make_activation

MODELS = (LeNet5, ConvNet, MLP)
SHAPES = ((1, 28), (1, 32), (3, 32))  # (channels, image_size)
NUM_CLASSES = 7  # not 10, so a hard-coded class count would show up


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _option_combos(cls: type[nn.Module]) -> list[dict]:
    """Defaults, each boolean flipped, dropout on and off, every pooling/activation/init."""
    combos: list[dict] = [
        {},
        {"batch_norm": True},
        {"batch_norm": False},
        {"dropout": 0.0},
        {"dropout": 0.5, "batch_norm": True},
    ]
    if cls is not MLP:
        combos += [{"pooling": "max"}, {"pooling": "avg"}]
    combos += [{"activation": a} for a in ACTIVATIONS]
    combos += [{"init": i} for i in INITS]
    return combos


CASES = [
    pytest.param(cls, c, s, opts, id=f"{cls.__name__}-{c}x{s}-{opts}")
    for cls in MODELS
    for c, s in SHAPES
    for opts in _option_combos(cls)
]


@pytest.mark.parametrize(("cls", "channels", "size", "opts"), CASES)
def test_forward_backward(cls: type[nn.Module], channels: int, size: int, opts: dict) -> None:
    model = cls(in_channels=channels, num_classes=NUM_CLASSES, image_size=size, **opts)
    model.train()
    x = torch.randn(4, channels, size, size)
    logits = model(x)
    assert logits.shape == (4, NUM_CLASSES)
    assert torch.isfinite(logits).all()

    loss = nn.functional.cross_entropy(logits, torch.arange(4) % NUM_CLASSES)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.requires_grad
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_lenet5_classic_parameter_count() -> None:
    conv1 = 6 * 1 * 5 * 5 + 6
    conv2 = 16 * 6 * 5 * 5 + 16
    fc1 = 16 * 5 * 5 * 120 + 120
    fc2 = 120 * 84 + 84
    fc3 = 84 * 10 + 10
    expected = conv1 + conv2 + fc1 + fc2 + fc3
    assert expected == 61706
    assert sum(p.numel() for p in LeNet5().parameters()) == expected


def test_lenet5_flatten_size_follows_image_size() -> None:
    assert LeNet5(image_size=32).classifier[0].in_features == 16 * 5 * 5
    assert LeNet5(image_size=28).classifier[0].in_features == 16 * 4 * 4
    assert LeNet5(image_size=16).classifier[0].in_features == 16


def test_lenet5_dropout_and_batch_norm_layout() -> None:
    model = LeNet5(dropout=0.5, batch_norm=True)
    kinds = [type(m) for m in model.classifier]
    assert kinds == [
        nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout,
        nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout,
        nn.Linear,
    ]  # fmt: skip
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 2


def test_convnet_layout_and_list_channels() -> None:
    model = ConvNet(channels=[8, 16], convs_per_block=3, kernel_size=5, pooling="avg")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 8, 16, 16, 16]
    assert all(c.padding == (2, 2) for c in convs)
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.features) == 2
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_convnet_accepts_omegaconf_listconfig() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    channels = omegaconf.OmegaConf.create({"channels": [4, 8, 16]}).channels
    model = ConvNet(channels=channels, image_size=8)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_mlp_without_hidden_layers_is_logistic_regression() -> None:
    model = MLP(hidden_sizes=())
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1
    assert (linears[0].in_features, linears[0].out_features) == (28 * 28, 10)


# ---- init schemes ----------------------------------------------------------------------------


def test_normal_init_statistics() -> None:
    layer = nn.Linear(1000, 1000)
    init_weights(layer, "normal")
    assert layer.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert abs(layer.weight.mean().item()) < 1e-3
    assert torch.all(layer.bias == 0)


def test_xavier_init_statistics() -> None:
    layer = nn.Linear(300, 500)
    init_weights(layer, "xavier")
    bound = math.sqrt(6 / (300 + 500))
    assert layer.weight.abs().max().item() <= bound
    assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert torch.all(layer.bias == 0)


def test_kaiming_init_statistics() -> None:
    conv = nn.Conv2d(64, 128, 3)
    linear = nn.Linear(1000, 500)
    init_weights(nn.Sequential(conv, linear), "kaiming")
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.03)
    bound = math.sqrt(6 / 1000)  # gain sqrt(2) * sqrt(3 / fan_in)
    assert linear.weight.abs().max().item() <= bound
    assert linear.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert torch.all(conv.bias == 0) and torch.all(linear.bias == 0)


def test_default_init_leaves_weights_alone() -> None:
    model = LeNet5(batch_norm=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    init_weights(model, "default")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # PyTorch's own init gives non-zero biases, so the other schemes' zeroing is visible.
    assert model.classifier[-1].bias.abs().sum() > 0


@pytest.mark.parametrize("scheme", [s for s in INITS if s != "default"])
def test_schemes_reset_batch_norm_and_zero_biases(scheme: str) -> None:
    model = MLP(hidden_sizes=(32,), batch_norm=True)
    bn = model.layers[2]
    assert isinstance(bn, nn.BatchNorm1d)
    nn.init.uniform_(bn.weight, 2.0, 3.0)
    nn.init.uniform_(bn.bias, 2.0, 3.0)
    init_weights(model, scheme)
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.bias is not None:
            assert torch.all(m.bias == 0)


@pytest.mark.parametrize("scheme", INITS)
def test_models_apply_their_init(scheme: str) -> None:
    model = ConvNet(channels=(16, 32), init=scheme)
    conv = model.features[0]
    if scheme == "normal":
        assert conv.weight.std().item() == pytest.approx(0.02, rel=0.15)
    elif scheme == "kaiming":
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (16 * 9)), rel=0.15)
    elif scheme == "xavier":
        assert conv.weight.abs().max().item() <= math.sqrt(6 / (3 * 9 + 16 * 9))
    else:
        assert scheme == "default"
        # PyTorch's own init, kaiming_uniform(a=√5): weights and biases U(±1/√fan_in)
        head = model.classifier[-1]
        for weight, fan_in in ((conv.weight, 3 * 9), (head.weight, 32)):
            bound = 1 / math.sqrt(fan_in)
            assert weight.abs().max().item() <= bound
            assert weight.abs().max().item() > 0.9 * bound, "spans the whole uniform range"
        assert head.bias.abs().max().item() <= 1 / math.sqrt(32)
        assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 27), rel=0.15)
        # the other schemes zero biases; PyTorch's init does not
        assert (head.bias != 0).all()
    if scheme != "default":
        assert torch.all(model.classifier[-1].bias == 0)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_make_activation_returns_fresh_modules(name: str) -> None:
    a, b = make_activation(name), make_activation(name)
    assert isinstance(a, nn.Module) and a is not b


# ---- validation ------------------------------------------------------------------------------

ACTS = "relu, tanh, sigmoid, leaky_relu, gelu"
BAD_OPTIONS = [
    (LeNet5, {"activation": "relux"}, f"activation must be one of {ACTS}, got 'relux'"),
    (ConvNet, {"activation": "Relu"}, f"activation must be one of {ACTS}, got 'Relu'"),
    (MLP, {"activation": "swish"}, f"activation must be one of {ACTS}, got 'swish'"),
    (LeNet5, {"pooling": "mean"}, "pooling must be one of max, avg, got 'mean'"),
    (ConvNet, {"pooling": "min"}, "pooling must be one of max, avg, got 'min'"),
    (LeNet5, {"init": "he"}, "init must be one of default, xavier, kaiming, normal, got 'he'"),
    (ConvNet, {"init": "orth"}, "init must be one of default, xavier, kaiming, normal"),
    (MLP, {"init": "zeros"}, "init must be one of default, xavier, kaiming, normal"),
    (LeNet5, {"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    (ConvNet, {"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    (MLP, {"dropout": -0.1}, "dropout must be in [0, 1), got -0.1"),
    (LeNet5, {"image_size": 15}, "LeNet5 needs image_size >= 16"),
    (LeNet5, {"in_channels": 0}, "in_channels must be a positive integer, got 0"),
    (MLP, {"num_classes": -1}, "num_classes must be a positive integer, got -1"),
    (ConvNet, {"kernel_size": 4}, "kernel_size must be a positive odd integer"),
    (ConvNet, {"kernel_size": -3}, "kernel_size must be a positive odd integer"),
    (ConvNet, {"channels": []}, "channels must list at least one block width"),
    (ConvNet, {"channels": (8, 0)}, "channels must contain only positive integers, got [8, 0]"),
    (ConvNet, {"channels": "64"}, "channels must be a sequence of positive integers"),
    (ConvNet, {"convs_per_block": 0}, "convs_per_block must be >= 1, got 0"),
    (ConvNet, {"image_size": 4}, "need image_size >= 8"),
    (MLP, {"hidden_sizes": (64, -2)}, "hidden_sizes must contain only positive integers"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    BAD_OPTIONS,
    ids=[f"{c.__name__}-{next(iter(k))}={next(iter(k.values()))!r}" for c, k, _ in BAD_OPTIONS],
)
def test_invalid_options_raise(cls: type[nn.Module], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**kwargs)


def test_init_and_activation_helpers_validate_names() -> None:
    with pytest.raises(ValueError, match=re.escape("init must be one of default, xavier")):
        init_weights(nn.Linear(2, 2), "uniform")
    with pytest.raises(ValueError, match=re.escape(f"activation must be one of {ACTS}")):
        make_activation("elu")


# ---- learning ----------------------------------------------------------------------------------


def _squares(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright square top-left (class 0) vs bottom-right (class 1), in noise."""
    y = torch.arange(n) % 2
    x = 0.5 * torch.randn(n, 1, 32, 32)
    x[y == 0, :, 4:12, 4:12] += 1.0
    x[y == 1, :, 20:28, 20:28] += 1.0
    return x, y


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train()
    return accuracy


def test_lenet5_learns_a_separable_problem() -> None:
    x, y = _squares(32)
    x_held_out, y_held_out = _squares(128)
    model = LeNet5(num_classes=2)
    assert _accuracy(model, x, y) < 0.8  # starts near chance, so the check below means something

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(60):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    accuracy = _accuracy(model, x, y)
    assert accuracy >= 0.95, f"training accuracy {accuracy:.2f}, final loss {loss.item():.3f}"
    # The squares, not the noise, were learned: fresh samples are classified as well.
    assert _accuracy(model, x_held_out, y_held_out) >= 0.9
