"""The Fréchet distance and label entropies against closed forms, and the feature network's
view of GAN images (normalisation, padding, penultimate layer)."""

from __future__ import annotations

import math

import pytest
import torch

from dlexp.data.loaders import prepare_images
from dlexp.engine.checkpoint import FORMAT, save_checkpoint
from dlexp.engine.frechet import (
    FeatureNetwork,
    check_compatible,
    feature_stats,
    frechet_distance,
    label_entropies,
    sqrt_psd,
)
from dlexp.errors import DlexpError
from dlexp.models.cnn import LeNet5

MNIST_DATA = {"mean": [0.1307], "std": [0.3081], "image_size": 32}


def _random_psd(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_identical_gaussians_are_at_distance_zero() -> None:
    cov = _random_psd(16, 0)
    mean = torch.randn(16, dtype=torch.float64)
    assert frechet_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-8)


def test_one_dimensional_closed_form() -> None:
    # for 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2
    d = frechet_distance(
        torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[9.0]])
    )
    assert d == pytest.approx((1 - 3) ** 2 + (2 - 3) ** 2)


def test_diagonal_covariances_add_up_per_dimension() -> None:
    v1, v2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    m1, m2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    expected = ((m1 - m2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum()
    assert frechet_distance(m1, torch.diag(v1), m2, torch.diag(v2)) == pytest.approx(
        float(expected)
    )


def test_matches_scipy_sqrtm_on_random_covariances() -> None:
    linalg = pytest.importorskip("scipy.linalg")
    c1, c2 = _random_psd(20, 1), _random_psd(20, 2)
    m1, m2 = torch.zeros(20, dtype=torch.float64), torch.full((20,), 0.5, dtype=torch.float64)
    covmean = linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    expected = float(((m1 - m2) ** 2).sum() + torch.trace(c1 + c2) - 2 * covmean.trace())
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(m2, c2, m1, c1) == pytest.approx(expected, rel=1e-8), "symmetric"


def test_square_root_of_a_singular_covariance_is_finite() -> None:
    x = torch.randn(5, 12, dtype=torch.float64)  # 5 samples in 12-D: rank-deficient
    cov = x.T.cov()
    root = sqrt_psd(cov)
    assert torch.allclose(root @ root, cov, atol=1e-10)
    assert math.isfinite(frechet_distance(x.mean(0), cov, torch.zeros(12), torch.eye(12)))


def test_feature_stats_are_the_sample_mean_and_covariance() -> None:
    feats = torch.randn(50, 6)
    stats = feature_stats(feats, torch.full((50, 3), 1 / 3))
    assert torch.allclose(stats.mean, feats.double().mean(0))
    assert torch.allclose(stats.cov, feats.double().T.cov())
    assert stats.count == 50


@pytest.mark.parametrize(
    ("probs", "confidence", "coverage"),
    [
        (torch.eye(10)[torch.zeros(40, dtype=torch.long)], 0.0, 0.0),  # one class, sure: collapse
        (torch.eye(10)[torch.arange(40) % 10], 0.0, math.log(10)),  # every class, sure: ideal
        (torch.full((40, 10), 0.1), math.log(10), math.log(10)),  # no idea at all: blur
    ],
    ids=["mode-collapse", "ideal", "unrecognisable"],
)
def test_label_entropies(probs: torch.Tensor, confidence: float, coverage: float) -> None:
    got = label_entropies(probs)
    assert got == pytest.approx((confidence, coverage), abs=1e-6)


def _feature_net(seed: int = 0) -> tuple[FeatureNetwork, LeNet5]:
    torch.manual_seed(seed)
    lenet = LeNet5(in_channels=1, num_classes=10, image_size=32)
    return FeatureNetwork(lenet, MNIST_DATA, "test", "mnist_sample"), lenet


def test_gan_images_reach_the_classifier_as_its_training_data_did() -> None:
    """[-1, 1] at 28 px → the classifier's own normalisation and 32 px zero padding."""
    net, lenet = _feature_net()
    uint8 = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    gan_images = uint8.float() / 127.5 - 1  # what the GAN loop trains on
    as_trained = prepare_images(uint8, MNIST_DATA["mean"], MNIST_DATA["std"], 32)
    feats, probs = net(gan_images)
    with torch.no_grad():
        logits = lenet(as_trained)
        penultimate = lenet.classifier[:-1](torch.flatten(lenet.features(as_trained), 1))
    assert torch.allclose(probs, logits.softmax(1), atol=1e-5)
    assert torch.allclose(feats, penultimate, atol=1e-5)
    assert feats.shape == (6, 84), "LeNet's penultimate layer has 84 units"
    assert torch.allclose(probs.sum(1), torch.ones(6))


def test_feature_network_loads_a_classifier_checkpoint(tmp_path) -> None:
    net, lenet = _feature_net(1)
    path = tmp_path / "best.pt"
    config = {
        "model": {"_target_": "dlexp.models.cnn.LeNet5", "image_size": 32},
        "regularization": {},
        "data": {"name": "mnist_sample"},
    }
    payload = {"format": FORMAT, "model": lenet.state_dict(), "config": config}
    save_checkpoint({**payload, "classes": list("0123456789"), "data": MNIST_DATA}, path)
    loaded = FeatureNetwork.load(path, torch.device("cpu"))
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert torch.allclose(loaded(x)[0], net(x)[0])
    check_compatible(loaded, "mnist", 1)  # the same digits: a fair judge
    with pytest.raises(DlexpError, match="data=cifar10"):
        check_compatible(loaded, "cifar10", 3)
    with pytest.raises(DlexpError, match="data=fashion_mnist"):
        check_compatible(loaded, "fashion_mnist", 1)

    gan = tmp_path / "gan.pt"
    save_checkpoint({"format": FORMAT, "generator": {}, "config": {"model": {"task": "gan"}}}, gan)
    with pytest.raises(DlexpError, match="not a classifier checkpoint"):
        FeatureNetwork.load(gan, torch.device("cpu"))
