"""GAN models, losses, single steps and schemas: fast checks, no data set, no training run.

GAN config options are discovered from the model group (`task: gan`), so a new one is covered
without touching this module.
"""

from __future__ import annotations

import copy
import functools
import math
import subprocess
import sys
from typing import Any

import pytest
import torch
from torch import nn

from dlexp.config.paths import CONFIG_DIR
from dlexp.engine.builders import build_model, build_optimizer
from dlexp.models.gan import DCDiscriminator, DCGenerator, MLPDiscriminator, MLPGenerator
from dlexp.tasks.gan.loop import (
    LOSSES,
    GanOptions,
    GanState,
    d_loss_fn,
    d_step,
    g_loss_fn,
    g_step,
    train_one_epoch,
)
from dlexp.tasks.registry import validate
from tests import conftest

SHAPES = ((1, 28), (1, 32), (3, 32))  # (channels, image size) of every image data set
LATENT = 16


@functools.cache
def _composed(overrides: tuple[str, ...]) -> dict[str, Any]:
    return conftest.compose_plain(*overrides)


def compose_plain(*overrides: str) -> dict[str, Any]:
    """The shipped configs composed with `overrides`, as plain data (a fresh copy each time)."""
    return copy.deepcopy(_composed(overrides))


def gan_options() -> list[str]:
    found = []
    for path in sorted((CONFIG_DIR / "model").glob("*.yaml")):
        if compose_plain(f"model={path.stem}")["model"].get("task") == "gan":
            found.append(path.stem)
    return found


GAN_OPTIONS = gan_options()


def build_pair(option: str, channels: int, size: int, *extra: str) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator of a shipped config, built as the runner builds them."""
    model = compose_plain(f"model={option}", *extra)["model"]
    shape = {"channels": channels, "image_size": size}
    example = torch.zeros(2, channels, size, size)
    gen = build_model(model["generator"], {}, {"latent_dim": model["latent_dim"], **shape})
    disc = build_model(model["discriminator"], {}, shape, example)
    return gen, disc


def test_both_gan_families_are_shipped() -> None:
    assert {"gan", "dcgan"} <= set(GAN_OPTIONS)


@pytest.mark.parametrize("option", GAN_OPTIONS)
@pytest.mark.parametrize(("channels", "size"), SHAPES, ids=["1x28", "1x32", "3x32"])
def test_every_gan_config_makes_images_of_the_data_shape(option: str, channels: int, size: int):
    torch.manual_seed(0)
    gen, disc = build_pair(option, channels, size)
    latent = compose_plain(f"model={option}")["model"]["latent_dim"]
    gen.train()
    images = gen(torch.randn(5, latent) * 3)  # large noise: Tanh must still bound the output
    assert images.shape == (5, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    scores = disc(images)
    assert scores.shape == (5,) and torch.isfinite(scores).all()
    (scores.mean() + images.mean()).backward()
    for name, p in [*gen.named_parameters(), *disc.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_mlp_gan_has_the_specified_widths() -> None:
    gen = MLPGenerator(latent_dim=100, channels=1, image_size=28)
    linears = [m for m in gen.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (100, 128),
        (128, 256),
        (256, 512),
        (512, 1024),
        (1024, 784),
    ]
    assert any(isinstance(m, nn.BatchNorm1d) for m in gen.modules())
    assert all(m.negative_slope == 0.2 for m in gen.modules() if isinstance(m, nn.LeakyReLU))
    assert isinstance(gen.net[-1], nn.Tanh)
    disc = MLPDiscriminator(channels=1, image_size=28)
    linears = [m for m in disc.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 512), (512, 256), (256, 1)]


@pytest.mark.parametrize("size", [7, 8, 30])
def test_dcgan_explains_image_sizes_it_cannot_make(size: int) -> None:
    with pytest.raises(ValueError, match="image_size"):
        DCGenerator(channels=1, image_size=size)
    with pytest.raises(ValueError, match="image_size"):
        DCDiscriminator(channels=1, image_size=size)


# -- losses ------------------------------------------------------------------------------------


def test_losses_at_an_undecided_discriminator() -> None:
    zero = torch.zeros(8)
    assert d_loss_fn("bce", zero, zero).item() == pytest.approx(2 * math.log(2))
    assert g_loss_fn("bce", zero).item() == pytest.approx(math.log(2))
    assert d_loss_fn("lsgan", zero, zero).item() == pytest.approx(0.5)
    assert g_loss_fn("lsgan", zero).item() == pytest.approx(0.5)
    assert d_loss_fn("hinge", zero, zero).item() == pytest.approx(2.0)
    assert g_loss_fn("hinge", zero).item() == pytest.approx(0.0)


@pytest.mark.parametrize("loss", ["bce", "lsgan"])
def test_one_sided_label_smoothing_moves_only_the_real_target(loss: str) -> None:
    """With smoothing s the real loss is smallest where D(x) = 1 - s; fakes keep target 0."""
    grid = torch.linspace(-6, 6, 2401)  # raw D outputs; BCE applies the sigmoid itself
    prob = torch.sigmoid if loss == "bce" else (lambda t: t)
    fixed = torch.zeros(1)
    real = torch.stack([d_loss_fn(loss, o.view(1), fixed, smoothing=0.2) for o in grid])
    fake = torch.stack([d_loss_fn(loss, fixed, o.view(1), smoothing=0.2) for o in grid])
    assert prob(grid[real.argmin()]).item() == pytest.approx(0.8, abs=0.01)
    assert prob(grid[fake.argmin()]).item() == pytest.approx(0.0, abs=0.01)


# -- one step each: only the network that should learn does ------------------------------------


def _small_pair(option: str) -> tuple[nn.Module, nn.Module]:
    if option == "gan":
        return build_pair(
            option, 1, 28, "model.generator.hidden_sizes=[32,64]",
            "model.discriminator.hidden_sizes=[32]",
        )  # fmt: skip
    return build_pair(option, 1, 28, "model.generator.features=8", "model.discriminator.features=8")


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(module: nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    return [n for n, p in module.named_parameters() if not torch.equal(p, before[n])]


@pytest.mark.parametrize("option", ["gan", "dcgan"])
@pytest.mark.parametrize("loss", LOSSES)
def test_d_step_changes_only_the_discriminator(option: str, loss: str) -> None:
    torch.manual_seed(0)
    gen, disc = _small_pair(option)
    opt_d = build_optimizer(compose_plain(f"model={option}")["model"]["optim_d"], disc)
    opts = GanOptions(epochs=1, latent_dim=100, loss=loss)
    g0, d0 = _snapshot(gen), _snapshot(disc)
    loss_value, d_real, d_fake = d_step(
        gen, disc, opt_d, torch.rand(8, 1, 28, 28) * 2 - 1, torch.randn(8, 100), opts
    )
    assert _changed(gen, g0) == []
    assert _changed(disc, d0), "the discriminator learns"
    assert all(torch.isfinite(t) for t in (loss_value, d_real, d_fake))
    assert not loss_value.requires_grad
    if loss == "bce":
        assert 0 < d_real.item() < 1 and 0 < d_fake.item() < 1, "D(x) is a probability"


@pytest.mark.parametrize("option", ["gan", "dcgan"])
@pytest.mark.parametrize("loss", LOSSES)
def test_g_step_changes_only_the_generator(option: str, loss: str) -> None:
    torch.manual_seed(0)
    gen, disc = _small_pair(option)
    opt_g = build_optimizer(compose_plain(f"model={option}")["model"]["optim_g"], gen)
    opts = GanOptions(epochs=1, latent_dim=100, loss=loss)
    g0, d0 = _snapshot(gen), _snapshot(disc)
    loss_value = g_step(gen, disc, opt_g, torch.randn(8, 100), opts)
    assert _changed(disc, d0) == []
    assert all(p.grad is None for p in disc.parameters()), "D's weights get no gradients"
    assert all(p.requires_grad for p in disc.parameters()), "and are trainable again after"
    assert _changed(gen, g0), "the generator learns"
    assert torch.isfinite(loss_value)


class _Batches:
    """A loader of random 'real' images with the TensorLoader interface the loop uses."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def batches(self, epoch: int, start: int = 0):
        g = torch.Generator().manual_seed(epoch)
        for i in range(self.n):
            x = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1
            if i >= start:
                yield x, torch.zeros(4, dtype=torch.long)


@pytest.mark.parametrize("n_critic", [1, 3])
def test_n_critic_discriminator_steps_per_generator_step(n_critic: int) -> None:
    torch.manual_seed(0)
    gen, disc = _small_pair("gan")
    opt_g = torch.optim.Adam(gen.parameters(), 1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), 1e-3)
    opts = GanOptions(epochs=1, latent_dim=100, n_critic=n_critic, log_every=2)
    state, logged = GanState(), []
    train_one_epoch(
        gen, disc, opt_g, opt_d, _Batches(9), state, opts, lambda m, b: logged.append(m)
    )
    assert (state.step, state.batch, state.samples) == (9, 9, 36)
    assert state.g_steps == 9 // n_critic
    assert state.epoch_sums[4:] == [9, 9 // n_critic]
    assert len(logged) == 5  # every 2 steps, and at the end of the epoch
    assert {"train/d_loss", "train/d_real", "train/d_fake"} <= logged[-1].keys()


# -- schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", GAN_OPTIONS)
def test_gan_configs_validate_with_any_top_level_optim(option: str) -> None:
    """The `optim` group is not used by GANs: whatever it holds is not their problem."""
    assert validate(compose_plain(f"model={option}")) == []
    assert validate(compose_plain(f"model={option}", "optim=sgd", "optim.lr=-1")) == []
    assert validate(compose_plain(f"model={option}", "data=cifar10")) == []


BAD: dict[str, tuple[list[str], list[str]]] = {
    "loss": (["model.loss=wgan"], ["model.loss", "wgan", "bce", "lsgan", "hinge"]),
    "n_critic": (["model.n_critic=0"], ["model.n_critic", ">= 1", "0"]),
    "smoothing": (["model.label_smoothing=0.5"], ["model.label_smoothing", "< 0.5"]),
    "hinge_smoothing": (
        ["model.loss=hinge", "model.label_smoothing=0.1"],
        ["model.label_smoothing", "hinge", "0.1"],
    ),
    "latent": (["model.latent_dim=0"], ["model.latent_dim", ">= 1"]),
    "optim_g_lr": (["model.optim_g.lr=-1"], ["model.optim_g.lr", "> 0", "-1"]),
    "optim_d_betas": (["model.optim_d.betas=[0.5]"], ["model.optim_d.betas", "2 values"]),
    "widths": (["model.generator.hidden_sizes=[128,0]"], ["model.generator.hidden_sizes", ">= 1"]),
    "gen_typo": (["+model.generator.hiden_sizes=[8]"], ["Did you mean", "hidden_sizes"]),
    "eval_every": (["model.eval.every_n_epochs=0"], ["model.eval.every_n_epochs", ">= 1"]),
    "feature_ckpt": (
        ["model.eval.feature_checkpoint=/no/such/best.pt"],
        ["model.eval.feature_checkpoint", "/no/such/best.pt", "model=lenet"],
    ),
    "scheduler": (["scheduler=cosine"], ["scheduler.name", "cosine", "scheduler=none"]),
    "regularization": (["regularization=[l2]"], ["regularization.l2", "regularization=[none]"]),
    "precision": (["trainer.precision=16-mixed"], ["trainer.precision", "bf16"]),
    "nonfinite": (["trainer.nonfinite=skip"], ["trainer.nonfinite", "stop"]),
    "loader": (["data.loader=dataloader"], ["data.loader", "tensor"]),
}


@pytest.mark.parametrize(("overrides", "phrases"), BAD.values(), ids=BAD.keys())
def test_schema_names_the_key_the_value_and_what_is_valid(overrides, phrases) -> None:
    problems = validate(compose_plain("model=gan", *overrides))
    assert len(problems) == 1, problems
    for phrase in phrases:
        assert phrase in problems[0], f"{phrase!r} missing from {problems[0]!r}"


def test_schema_reports_every_problem_at_once_and_missing_keys() -> None:
    cfg = compose_plain("model=dcgan", "model.loss=x", "model.n_critic=-1", "~model.eval")
    keys = sorted(p.split(":", 1)[0] for p in validate(cfg))
    assert keys == ["model.eval", "model.loss", "model.n_critic"]


WEIRD = [None, -1, 0, 0.5, 1e9, float("nan"), True, "x", [], [0], {"a": 1}]


def test_validate_never_raises_on_odd_values_in_gan_keys() -> None:
    base = compose_plain("model=gan")

    def keys(node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict):
            return [k for key, v in node.items() for k in keys(v, f"{prefix}{key}.")]
        return [prefix.rstrip(".")]

    for key in keys(base["model"], "model."):
        for value in WEIRD:
            cfg = copy.deepcopy(base)
            *parents, leaf = key.split(".")
            node = cfg
            for part in parents:
                node = node[part]
            node[leaf] = value
            problems = validate(cfg)
            assert all(isinstance(p, str) and p for p in problems), (key, value)


def test_config_side_modules_do_not_import_torch(tmp_path) -> None:
    code = (
        "import sys, dlexp.tasks.gan.schema, dlexp.cli.sample\n"
        "from dlexp.cli.sample import main\n"
        "code = main(['/no/such/run', 'n=4'])\n"
        "print(code, 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["2", "False"], out.stderr
    assert "not a dlexp run folder" in out.stderr
