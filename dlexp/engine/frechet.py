"""How good are generated images? Fréchet distance and label entropies in a dlexp classifier's eyes.

The classic FID uses an ImageNet Inception net, which dlexp cannot download and which knows
nothing about 28 px digits. Instead the feature network is a classifier that dlexp itself trained
on the same data set (e.g. a `model=lenet` run's `best.pt`): its penultimate-layer activations
are the feature space. The numbers are therefore comparable only between runs evaluated with the
same feature checkpoint and the same sample count — never with published FIDs.

- Fréchet distance: ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2(Σ_r Σ_g)^½) between Gaussians fitted to the
  features of real (validation) and generated images. 0 means identical statistics; lower is
  better.
- Confidence entropy: the mean entropy of p(y|x) per generated image. Low: the classifier sees a
  clear digit in each image; high (up to ln K): blurry or ambiguous images.
- Coverage entropy: the entropy of the mean prediction. High (up to ln K): every class is
  generated equally often; low: mode collapse onto a few classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dlexp.config.trust import check_trust
from dlexp.data.loaders import prepare_images
from dlexp.engine.builders import build_model
from dlexp.engine.checkpoint import load_checkpoint
from dlexp.errors import DlexpError

# what lets a feature checkpoint build code outside dlexp, torch and torchvision
TRUST_OPTION = "model.eval.trust_feature_checkpoint=true"
# data sets that hold the same kind of images: a classifier of one is a fair judge of the other
_SAME_IMAGES = ({"mnist", "mnist_sample"},)


@dataclass
class FeatureStats:
    """Mean and covariance (float64, CPU) of N feature vectors, plus the label entropies."""

    mean: Tensor
    cov: Tensor
    confidence_entropy: float
    coverage_entropy: float
    count: int


class FeatureNetwork:
    """A trained dlexp classifier used as a fixed feature extractor.

    Takes GAN images in [-1, 1] and converts them to what the classifier was trained on: its own
    checkpoint's normalisation (`data.mean/std`) and input size (`data.image_size`, e.g. LeNet's
    zero-padded 32 px), with the very function that prepared its training data.
    """

    def __init__(
        self, model: nn.Module, data: Mapping[str, Any], source: str, data_name: str = "?"
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.mean, self.std = list(data["mean"]), list(data["std"])
        self.image_size = int(data["image_size"])
        self.source, self.data_name = source, data_name
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise DlexpError(
                f"{source}: {type(model).__name__} has no nn.Linear layer; the Fréchet distance "
                "needs a classifier whose last layer is linear (its input is the feature space)"
            )
        self._features: Tensor | None = None
        linears[-1].register_forward_pre_hook(self._keep_input)

    def _keep_input(self, _module: nn.Module, args: tuple[Tensor, ...]) -> None:
        self._features = args[0]

    @classmethod
    def load(cls, path: Path, device: torch.device, trusted: bool = False) -> FeatureNetwork:
        """Rebuild the classifier of a dlexp checkpoint from the config stored in it; code
        outside dlexp, torch and torchvision only when `trusted` (TRUST_OPTION)."""
        payload = load_checkpoint(path, device)
        config, data = payload.get("config") or {}, payload.get("data")
        model_cfg = config.get("model") or {}
        # a classifier's checkpoint: its weights under "model", its class names, image stats
        if "model" not in payload or not payload.get("classes") or not data or "mean" not in data:
            raise DlexpError(
                f"model.eval.feature_checkpoint: {path} is not a classifier checkpoint; give the "
                "best.pt of a classification run (e.g. dlexp model=lenet) on the same data set"
            )
        check_trust(config, trusted=trusted, source=path, flag=TRUST_OPTION)
        inputs = {
            "in_channels": len(data["mean"]),
            "image_size": int(data["image_size"]),
            "num_classes": len(payload["classes"]),
        }
        model = build_model(model_cfg, config.get("regularization") or {}, inputs)
        model.load_state_dict(payload["model"])
        name = str((config.get("data") or {}).get("name", "?"))
        return cls(model.to(device), data, str(path), name)

    @property
    def channels(self) -> int:
        return len(self.mean)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Penultimate-layer features and class probabilities of GAN images in [-1, 1]."""
        # prepare_images takes 0..255 values: float ones go through the same path as uint8
        x = prepare_images(
            images.float().clamp(-1, 1).add(1).mul(127.5), self.mean, self.std, self.image_size
        )
        probs = self.model(x).float().softmax(1)
        assert self._features is not None
        return self._features.flatten(1).float(), probs

    def statistics(self, images: Tensor, batch_size: int) -> FeatureStats:
        """Feature mean/covariance and label entropies of `images`, in batches."""
        feats, probs = [], []
        for lo in range(0, len(images), batch_size):
            f, p = self(images[lo : lo + batch_size])
            feats.append(f)
            probs.append(p)
        return feature_stats(torch.cat(feats), torch.cat(probs))


def check_compatible(net: FeatureNetwork, data_name: str, channels: int) -> None:
    """A judge trained on other images gives numbers that mean nothing: refuse it."""
    name = net.data_name
    same = name == data_name or any({name, data_name} <= group for group in _SAME_IMAGES)
    if net.channels != channels or not same:
        raise DlexpError(
            f"model.eval.feature_checkpoint: {net.source} is a classifier of data={name} "
            f"({net.channels} channel(s)), but this GAN learns data={data_name} ({channels} "
            f"channel(s)); train a classifier on data={data_name} and pass its best.pt"
        )


def feature_stats(features: Tensor, probs: Tensor) -> FeatureStats:
    """Fit a Gaussian to `features` [N, D]; entropies of `probs` [N, K]. In float64."""
    f = features.double().cpu()
    if len(f) < 2:
        raise DlexpError(
            "the Fréchet distance needs at least 2 samples; raise model.eval.num_samples"
        )
    mean = f.mean(0)
    centred = f - mean
    cov = centred.T @ centred / (len(f) - 1)
    confidence, coverage = label_entropies(probs)
    return FeatureStats(mean, cov, confidence, coverage, len(f))


def label_entropies(probs: Tensor) -> tuple[float, float]:
    """(mean per-sample entropy, entropy of the mean prediction) in nats."""
    p = probs.double().cpu()

    def entropy(q: Tensor) -> Tensor:
        return -(q * q.clamp_min(1e-12).log()).sum(-1)

    return float(entropy(p).mean()), float(entropy(p.mean(0)))


def sqrt_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) between two Gaussians.

    Tr((Σ₁Σ₂)^½) = Tr((Σ₁^½ Σ₂ Σ₁^½)^½), and the inner product is symmetric PSD, so a symmetric
    eigendecomposition gives it exactly: no scipy, no complex parts from round-off.
    """
    m1, m2, c1, c2 = (t.double().cpu() for t in (mean1, mean2, cov1, cov2))
    root = sqrt_psd(c1)
    inner = root @ c2 @ root
    inner = (inner + inner.T) / 2
    trace_sqrt = torch.linalg.eigvalsh(inner).clamp_min(0).sqrt().sum()
    diff = m1 - m2
    return float(diff @ diff + c1.trace() + c2.trace() - 2 * trace_sqrt)


@dataclass
class Evaluation:
    """What generated images are judged against: the feature network, the real statistics and
    the fixed evaluation noise (the same every time, so epochs differ only by the generator)."""

    features: FeatureNetwork
    real: FeatureStats
    noise: Tensor

    def reference(self) -> dict[str, float]:
        """The real images' own scores: what the generated ones should approach."""
        return {
            "real/confidence_entropy": self.real.confidence_entropy,
            "real/coverage_entropy": self.real.coverage_entropy,
            "eval/num_samples": float(self.real.count),
        }


def build_evaluation(
    checkpoint: Path,
    data_name: str,
    real_images: Tensor,
    noise: Tensor,
    batch_size: int,
    trusted: bool = False,
) -> Evaluation:
    """Load the feature network and fit the real statistics on `real_images` ([-1, 1]).

    `noise` has one row per generated sample: as many as real images, so both Gaussians carry
    the same small-sample bias. `trusted`: the checkpoint may name code outside dlexp.
    """
    if len(real_images) < 2:
        raise DlexpError(
            f"model.eval: the validation split has {len(real_images)} image(s); the Fréchet "
            "distance needs at least 2. Raise data.val_fraction or set "
            "model.eval.feature_checkpoint=null"
        )
    features = FeatureNetwork.load(checkpoint, real_images.device, trusted)
    check_compatible(features, data_name, real_images.shape[1])
    return Evaluation(features, features.statistics(real_images, batch_size), noise)


def compare(real: FeatureStats, fake: FeatureStats) -> dict[str, float]:
    """The evaluation metrics of generated images against the real statistics."""
    return {
        "eval/frechet_distance": frechet_distance(real.mean, real.cov, fake.mean, fake.cov),
        "eval/confidence_entropy": fake.confidence_entropy,
        "eval/coverage_entropy": fake.coverage_entropy,
    }
