"""How much of the class does the code keep? A linear probe on the latent means.

A multinomial logistic regression is fitted on the codes of the training split (standardised
with the training statistics) and scored on another split. It is convex, starts from zero
weights and runs full-batch L-BFGS in float64 on the CPU: the same codes give the same accuracy
on any device, and it draws nothing from any random generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

STEPS = 200  # L-BFGS iterations: a few thousand codes of tens of dimensions converge well before
L2 = 1e-4  # a little weight decay: separable codes would otherwise send the weights to infinity


def fit_probe(codes: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """(weights [D+1, K], feature mean, feature std) of a logistic regression on `codes`."""
    x = codes.detach().double().cpu()
    y = labels.detach().long().cpu()
    mean = x.mean(0)
    std = x.std(0).clamp_min(1e-8) if len(x) > 1 else torch.ones_like(mean)
    features = _with_bias((x - mean) / std)
    weights = torch.zeros(features.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weights], lr=1.0, max_iter=STEPS, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weights, y) + L2 * weights[:-1].square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach(), mean, std


def probe_accuracy(
    train_codes: Tensor,
    train_labels: Tensor,
    codes: Tensor,
    labels: Tensor,
    num_classes: int,
) -> float:
    """Accuracy on (`codes`, `labels`) of the probe fitted on the training codes."""
    weights, mean, std = fit_probe(train_codes, train_labels, num_classes)
    x = _with_bias((codes.detach().double().cpu() - mean) / std)
    predicted = (x @ weights).argmax(1)
    return float((predicted == labels.long().cpu()).double().mean())


def _with_bias(x: Tensor) -> Tensor:
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
