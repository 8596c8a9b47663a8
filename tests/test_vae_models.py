"""Autoencoders and VAEs without a training run: shapes, losses, options, the probe, schemas.

Each option is checked for doing what it says: denoising changes the network's input (not its
target), `beta` scales the KL term of the objective, the likelihood changes the loss.
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
import torch.nn.functional as F
from omegaconf import OmegaConf

from dlexp.config.resolvers import to_plain
from dlexp.models.vae import (
    MLPVAE,
    ConvAutoencoder,
    ConvVAE,
    MLPAutoencoder,
    conv_sides,
    reparameterize,
)
from dlexp.tasks.registry import validate
from dlexp.tasks.vae.loop import (
    VaeOptions,
    corrupt,
    evaluate,
    kl_divergence,
    kl_weight,
    reconstruction_nll,
    train_step,
)
from dlexp.tasks.vae.probe import probe_accuracy
from tests import conftest
from tests.conftest import call_cli

SHAPES = ((1, 28), (3, 32))  # (channels, image size) of the image data sets
NETS = (ConvAutoencoder, ConvVAE, MLPAutoencoder, MLPVAE)
TINY = {"latent_dim": 3, "widths": (4, 8)}


@functools.cache
def _composed(overrides: tuple[str, ...]) -> dict[str, Any]:
    return conftest.compose_plain(*overrides)


def compose_plain(*overrides: str) -> dict[str, Any]:
    return copy.deepcopy(_composed(overrides))


# -- the networks -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("channels", "size"), SHAPES)
def test_every_network_encodes_decodes_and_learns(cls, channels: int, size: int) -> None:
    torch.manual_seed(0)
    net = cls(channels=channels, image_size=size, **TINY)
    x = torch.rand(4, channels, size, size)
    logits, mean, logvar = net(x)
    assert logits.shape == x.shape and mean.shape == (4, 3)
    assert (logvar is not None) == cls.variational
    if logvar is not None:
        assert logvar.shape == (4, 3)
    loss = reconstruction_nll(logits, x, "bernoulli").mean()
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.decode(torch.zeros(2, 3)).shape == (2, channels, size, size)


def test_a_vae_samples_its_code_in_training_and_decodes_the_mean_in_eval() -> None:
    torch.manual_seed(0)
    net = ConvVAE(**TINY)
    x = torch.rand(3, 1, 28, 28)
    net.eval()
    mean, _ = net.encode(x)
    assert torch.equal(net(x)[0], net.decode(mean)), "eval: the mean, no noise"
    net.train()
    assert not torch.equal(net(x)[0], net(x)[0]), "training: z = mean + σ·ε, new ε each call"
    ae = ConvAutoencoder(**TINY).train()
    assert torch.equal(ae(x)[0], ae(x)[0]), "an autoencoder's code is deterministic"


def test_reparameterisation_is_mean_plus_sigma_times_noise() -> None:
    mean, logvar, eps = torch.tensor([1.0, -2.0]), torch.tensor([0.0, math.log(4.0)]), torch.ones(2)
    assert torch.allclose(reparameterize(mean, logvar, eps), torch.tensor([2.0, 0.0]))


def test_conv_stages_follow_the_image_size_and_refuse_too_many() -> None:
    assert conv_sides(28, 2) == [28, 14, 7] and conv_sides(32, 3) == [32, 16, 8, 4]
    net = ConvAutoencoder(latent_dim=2, widths=(4, 4, 4))  # 28 → 14 → 7 → 3 and back to 28
    assert net.decode(torch.zeros(1, 2)).shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="at most 4 widths"):
        ConvAutoencoder(image_size=28, widths=(4,) * 5)


# -- the terms of the loss ---------------------------------------------------------------------
def test_the_likelihood_choice_changes_the_loss() -> None:
    torch.manual_seed(0)
    logits, x = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    bernoulli = reconstruction_nll(logits, x, "bernoulli")
    expected = F.binary_cross_entropy(logits.sigmoid(), x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(bernoulli, expected, atol=1e-4)
    std = 0.1
    gaussian = reconstruction_nll(logits, x, "gaussian", std)
    squared = (x - logits.sigmoid()).square().sum((1, 2, 3))
    constant = 16 * (math.log(std) + 0.5 * math.log(2 * math.pi))
    assert torch.allclose(gaussian, squared / (2 * std**2) + constant)
    assert not torch.allclose(gaussian, bernoulli)
    wider = reconstruction_nll(logits, x, "gaussian", 1.0)
    assert torch.allclose(wider, squared / 2 + 16 * 0.5 * math.log(2 * math.pi))


def test_kl_is_zero_at_the_prior_and_matches_the_closed_form() -> None:
    assert kl_divergence(torch.zeros(3, 5), torch.zeros(3, 5)).abs().max() == 0
    mean, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    # ½(μ² + σ² − 1 − log σ²) per dimension: ½·1 + ½(2 − 1 − log 2)
    assert kl_divergence(mean, logvar).item() == pytest.approx(0.5 + 0.5 * (1 - math.log(2)))


def _step(beta: float, **options: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One train_step at learning rate 0 from the same weights and RNG; its sums and inputs."""
    torch.manual_seed(0)
    net = ConvVAE(**TINY)
    seen: list[torch.Tensor] = []
    net.encoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    opts = VaeOptions(variational=True, beta=beta, **options)
    torch.manual_seed(2)
    sums = train_step(net, optimizer, None, x, kl_weight(1, opts), opts)
    return sums, [x, *seen]


def test_beta_scales_the_kl_term_of_the_objective() -> None:
    (base, _), (heavy, _), (none, _) = _step(1.0), _step(4.0), _step(0.0)
    objective, recon, kl = base
    assert kl > 0 and torch.allclose(objective, recon + kl)
    assert torch.allclose(heavy[1:], base[1:]), "the same reconstruction and KL..."
    assert torch.allclose(heavy[0], recon + 4 * kl), "...weighted by beta in the objective"
    assert torch.allclose(none[0], recon)


def test_kl_warmup_ramps_the_weight_to_beta() -> None:
    opts = VaeOptions(variational=True, beta=2.0, kl_warmup_steps=4)
    assert [kl_weight(s, opts) for s in (1, 2, 4, 9)] == [0.5, 1.0, 2.0, 2.0]
    assert kl_weight(1, VaeOptions(variational=True, beta=2.0)) == 2.0


@pytest.mark.parametrize("kind", ["gaussian", "mask"])
def test_denoising_corrupts_the_input_and_keeps_the_clean_target(kind: str) -> None:
    (sums, (x, seen)), (clean_sums, (_, clean_seen)) = (
        _step(1.0, denoise=kind, denoise_level=0.5),
        _step(1.0),
    )
    assert torch.equal(clean_seen, x), "without denoising the network sees x"
    assert not torch.equal(seen, x), "with it, a corrupted x"
    if kind == "mask":
        zeroed = (seen == 0) & (x != 0)
        assert 0.4 < zeroed.float().mean() < 0.6 and torch.equal(seen[~zeroed], x[~zeroed])
    else:
        assert seen.min() >= 0 and seen.max() <= 1
        assert 0.2 < (seen - x).abs().mean() < 0.5
    assert not torch.allclose(sums, clean_sums)


def test_corruption_with_a_generator_repeats_and_none_is_the_identity() -> None:
    x = torch.rand(4, 1, 8, 8)
    a, b = (corrupt(x, "mask", 0.3, torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert corrupt(x, "none", 0.3) is x


def test_validation_is_repeatable_and_leaves_the_training_rng_alone() -> None:
    torch.manual_seed(0)
    net = ConvVAE(**TINY)
    x = torch.rand(10, 1, 28, 28)
    opts = VaeOptions(variational=True)
    torch.manual_seed(123)
    first = evaluate(net, x, opts, seed=7, batch_size=4)
    after = torch.rand(1)
    torch.manual_seed(123)
    assert evaluate(net, x, opts, seed=7, batch_size=4) == first
    assert torch.equal(torch.rand(1), after), "validation drew from the global RNG"
    assert first["neg_elbo"] == pytest.approx(first["recon"] + first["kl"])
    assert evaluate(ConvAutoencoder(**TINY), x, VaeOptions(variational=False), 7, 4).keys() == {
        "recon"
    }


# -- the linear probe --------------------------------------------------------------------------
def test_the_probe_separates_separable_codes_and_is_at_chance_on_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 3
    centres = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    codes = centres[labels] + torch.randn(300, 2, generator=gen)
    assert probe_accuracy(codes[:200], labels[:200], codes[200:], labels[200:], 3) >= 0.95
    noise = torch.randn(300, 4, generator=gen)
    chance = probe_accuracy(noise[:200], labels[:200], noise[200:], labels[200:], 3)
    assert chance < 0.55
    again = probe_accuracy(noise[:200], labels[:200], noise[200:], labels[200:], 3)
    assert again == chance, "deterministic"


# -- configs and bad combinations ----------------------------------------------------------------
@pytest.mark.parametrize("option", ["vae", "autoencoder"])
def test_shipped_models_validate_and_their_mlp_variants_too(option: str) -> None:
    assert validate(compose_plain(f"model={option}")) == []
    mlp = "MLPVAE" if option == "vae" else "MLPAutoencoder"
    assert (
        validate(compose_plain(f"model={option}", f"model._target_=dlexp.models.vae.{mlp}")) == []
    )
    assert validate(compose_plain("experiment=vae_mnist")) == []


BAD = {
    "text data": (["model=vae", "data=imdb"], "data=imdb is text"),
    "beta on an autoencoder": (
        ["model=autoencoder", "+model.beta=4"],
        "model.beta: an autoencoder",
    ),
    "ELBO of an autoencoder": (
        ["model=autoencoder", "model.monitor=val/neg_elbo"],
        "an autoencoder has no ELBO",
    ),
    "Fréchet of an autoencoder": (
        ["model=autoencoder", "+model.eval.feature_checkpoint=best.pt"],
        "no prior to sample from",
    ),
    "Fréchet monitor without a judge": (
        ["model=vae", "model.monitor=eval/frechet_distance"],
        "needs model.eval.feature_checkpoint",
    ),
    "no validation split": (["model=vae", "data.val_fraction=0"], "data.val_fraction"),
    "trainer.monitor": (["model=vae", "trainer.monitor=train/acc"], "model.monitor"),
    "regularization": (["model=vae", "regularization=[l2]"], "regularization.l2"),
    "fp16": (["model=vae", "trainer.precision=16-mixed"], "use 32 or bf16"),
    "denoise level 0": (["model=autoencoder", "model.denoise.kind=mask"], "level 0"),
    "mask everything": (
        ["model=autoencoder", "model.denoise.kind=mask", "model.denoise.level=1"],
        "below 1",
    ),
    "likelihood": (["model=vae", "model.likelihood=poisson"], "bernoulli, gaussian"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_combinations_get_one_message(name: str) -> None:
    overrides, phrase = BAD[name]
    problems = validate(compose_plain(*overrides))
    assert len(problems) == 1 and phrase in problems[0], problems


def test_schedulers_and_optimizers_apply_to_the_family() -> None:
    for group in ("scheduler=cosine", "scheduler=onecycle", "optim=adamw", "optim=momentum"):
        assert validate(compose_plain("model=vae", group)) == [], group


WEIRD = [None, -1, 0, 0.5, 1e9, float("nan"), True, "x", [], [0], {"a": 1}]


def test_validate_never_raises_on_odd_values_in_the_model_keys() -> None:
    for option in ("vae", "autoencoder"):
        base = compose_plain(f"model={option}")
        leaves = [(k,) for k in base["model"] if not isinstance(base["model"][k], dict)]
        leaves += [(k, sub) for k, v in base["model"].items() if isinstance(v, dict) for sub in v]
        for path in [*leaves, ("eval",), ("denoise",)]:
            for value in WEIRD:
                cfg = copy.deepcopy(base)
                node = cfg["model"]
                for part in path[:-1]:
                    node = node[part]
                node[path[-1]] = value
                assert all(isinstance(p, str) and p for p in validate(cfg)), (path, value)


def test_the_search_config_composes_validates_and_minimises_the_bound() -> None:
    cfg = conftest.compose_cfg(None, "hparams_search=vae_optuna", hydra=True)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert sweeper["direction"] == "minimize" and sweeper["study_name"] == "vae_optuna"
    job = to_plain(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    assert validate(job) == [] and job["model"]["task"] == "vae"


def test_the_cli_refuses_text_data_with_one_message(tmp_path) -> None:
    proc = call_cli(tmp_path, "model=vae", "data=imdb")
    assert proc.returncode == 2, proc.stderr
    assert "data=imdb is text" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs" / "runs").exists() or not any(
        (tmp_path / "outputs" / "runs").iterdir()
    )


def test_the_schema_module_does_not_import_torch(tmp_path) -> None:
    code = "import sys, dlexp.tasks.vae.schema\nprint('torch' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["False"], out.stderr
