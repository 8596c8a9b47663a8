"""Any torchvision or timm classifier by name: `model=torchvision model.arch=resnet18`.

The two builders take what dlexp's own models take (num_classes, in_channels, image_size,
dropout) and fit the library's network to the data (`dlexp.models.adapt`): a head for the data
set's classes, a first convolution for its channels, optionally a small-image stem.
Pretrained weights download to the library's usual cache (torch.hub's for torchvision, Hugging
Face's for timm). Without a network the builder says so within seconds instead of retrying.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models

from dlexp.errors import DlexpError
from dlexp.models.adapt import (
    adapt_input_conv,
    check_forward,
    drop_aux_heads,
    replace_head,
    small_input_stem,
)

PROBE_TIMEOUT_S = 5.0  # is the download server there at all?
READ_TIMEOUT_S = 30.0  # a download that stalls this long fails instead of hanging


def torchvision_classifier(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int | None = None,
    weights: str | None = None,
    small_input: bool = False,
    dropout: float | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """torchvision's classifier `arch` (resnet18, convnext_tiny, vit_b_16, ...).

    `weights`: null (random), DEFAULT, or a name of the architecture's weights enum
    (IMAGENET1K_V1, ...). `kwargs` go to torchvision's builder as they are.
    """
    builder = models.get_model_builder(_torchvision_name(arch))
    options = dict(kwargs or {})
    if dropout is not None:
        options["dropout"] = dropout
    optional = {"image_size": image_size} if image_size else {}  # ViTs need theirs
    enum = _torchvision_weights(arch, weights) if weights else None
    if enum is None:
        model = _call_taking(builder, arch, {**options, "num_classes": num_classes}, optional)
    else:
        what, remedy = f"{arch}'s {weights} weights", _torch_hub_remedy(enum.url, "weights=null")
        if not _torch_hub_cached(enum.url):
            check_reachable(enum.url, what, remedy)
        with download_errors(enum.url, what, remedy):
            model = _call_taking(builder, arch, {**options, "weights": enum}, optional)
        categories = len(enum.meta["categories"])
        if categories != num_classes:
            replace_head(model, num_classes, categories)
    return _fit(model, arch, in_channels, image_size, num_classes, enum is not None, small_input)


def timm_classifier(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int | None = None,
    pretrained: bool = False,
    small_input: bool = False,
    dropout: float | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """timm's model `arch` (resnet18, convnext_atto, vit_tiny_patch16_224, ...), built by
    `timm.create_model`, which fits the head and the input channels itself."""
    timm = import_timm()
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"timm has no model '{arch}'.{hint} timm.list_models('*resnet*') lists them by pattern"
        )
    options = {**(kwargs or {}), "num_classes": num_classes, "in_chans": in_channels}
    if dropout is not None:
        options["drop_rate"] = dropout
    optional = {"img_size": image_size} if image_size else {}  # ViTs resize their positions
    if not pretrained:
        model = _call_taking(timm.create_model, arch, {"model_name": arch, **options}, optional)
    else:
        options.update(_timm_weights_source(timm, arch))
        with download_errors(_timm_hub_url(), f"{arch}'s pretrained weights", _hf_remedy(arch)):
            model = _call_taking(
                timm.create_model,
                arch,
                {"model_name": arch, "pretrained": True, **options},
                optional,
            )
    return _fit(model, arch, in_channels, image_size, num_classes, pretrained, small_input)


def import_timm() -> Any:
    try:
        import timm  # optional: `pip install 'dlexp[timm]'`, imported only for model=timm
    except ImportError:
        raise DlexpError(
            "model=timm needs the timm package: pip install 'dlexp[timm]' (or pip install timm)"
        ) from None
    return timm


def _fit(
    model: nn.Module,
    arch: str,
    in_channels: int,
    image_size: int | None,
    num_classes: int,
    pretrained: bool,
    small_input: bool,
) -> nn.Module:
    """What both libraries' networks need after building: dlexp's data, dlexp's loop."""
    if small_input:
        small_input_stem(model, arch)
    # a new small-input stem is random even in a pretrained network
    adapt_input_conv(model, in_channels, pretrained and not small_input)
    drop_aux_heads(model)
    if image_size:
        check_forward(model, arch, in_channels, image_size, num_classes)
    return model


# -- names ------------------------------------------------------------------------------------


def _torchvision_name(arch: str) -> str:
    classifiers = models.list_models(module=models)
    if arch in classifiers:
        return arch
    if arch in models.list_models():
        raise ValueError(
            f"torchvision's {arch} is not an image classifier (a detection, segmentation or "
            "video model); dlexp trains classifiers such as resnet18 or convnext_tiny"
        )
    close = difflib.get_close_matches(arch, classifiers, n=3, cutoff=0.6)
    hint = f"Did you mean {', '.join(close)}?" if close else f"Valid: {', '.join(classifiers)}"
    raise ValueError(f"torchvision has no classifier '{arch}'. {hint}")


def _torchvision_weights(arch: str, weights: str) -> Any:
    """'DEFAULT', 'IMAGENET1K_V1' or 'ResNet18_Weights.IMAGENET1K_V1' → the weights enum."""
    enum = models.get_model_weights(arch)
    name = weights.rsplit(".", 1)[-1]
    if name not in enum.__members__:
        raise ValueError(
            f"torchvision's {arch} has no weights '{weights}'. Valid: "
            f"{', '.join(enum.__members__)} (or null for random weights)"
        )
    return enum[name]


def _call_taking(
    build: Callable[..., Any], arch: str, kwargs: dict[str, Any], optional: dict[str, Any]
) -> Any:
    """`build(**kwargs, **optional)`, leaving out the optional keys the network does not take.

    A library's builder passes **kwargs on to the network's class, so only the class says
    which it takes: its TypeError names the first it does not, before any layer is built."""
    optional = dict(optional)
    while True:
        try:
            return build(**kwargs, **optional)
        except TypeError as exc:
            found = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
            if found and found[1] in optional:
                optional.pop(found[1])
                continue
            if found:
                raise ValueError(f"{arch} takes no argument '{found[1]}'") from None
            raise ValueError(f"{arch}: {exc}") from None


# -- downloads --------------------------------------------------------------------------------


def check_reachable(url: str, what: str, remedy: str) -> None:
    """Fail within seconds when `url`'s server cannot be reached (no network, no DNS)."""
    try:
        request = urllib.request.Request(url, method="HEAD")
        urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # the server answered: the download itself reports what is wrong
    except (OSError, ValueError) as exc:
        raise DlexpError(_no_download(what, url, remedy, exc)) from None


@contextlib.contextmanager
def download_errors(url: str, what: str, remedy: str) -> Iterator[None]:
    """A stalled download times out, and a failed one is reported as such, not as a traceback."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(READ_TIMEOUT_S)  # torch.hub's urlopen sets none of its own
    try:
        yield
    except OSError as exc:  # URLError, timeouts, huggingface_hub's LocalEntryNotFoundError
        raise DlexpError(_no_download(what, url, remedy, exc)) from None
    finally:
        socket.setdefaulttimeout(previous)


def _no_download(what: str, url: str, remedy: str, exc: BaseException) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"cannot download {what} from {url} ({type(exc).__name__}: {reason}). {remedy}"


def _torch_hub_cached(url: str) -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def _torch_hub_remedy(url: str, off: str) -> str:
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"Without internet here: download it elsewhere and copy {Path(url).name} into {cache} "
        f"(torch.hub's cache), or train from scratch with model.{off}"
    )


def _hf_remedy(arch: str) -> str:
    return (
        f"Without internet here: copy the Hugging Face cache ({_hf_cache()}) from a machine "
        f"that has loaded {arch} with pretrained=True, or train from scratch with "
        "model.pretrained=false"
    )


def _timm_hub_url() -> str:
    from huggingface_hub import constants  # comes with timm, the optional extra

    return str(constants.ENDPOINT)


def _hf_cache() -> Path:
    from huggingface_hub import constants  # comes with timm, the optional extra

    return Path(constants.HF_HUB_CACHE)


def _timm_weights_source(timm: Any, arch: str) -> dict[str, Any]:
    """Weights already in the Hugging Face cache load from there (no network at all);
    otherwise the hub must answer within seconds."""
    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ValueError(
            f"timm has no pretrained weights for {arch}; timm.list_models(pretrained=True) "
            "lists the models that have"
        )
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache  # comes with timm

        repo = cfg.hf_hub_id.split("@")[0]
        for name in [cfg.hf_hub_filename] if cfg.hf_hub_filename else _HF_WEIGHT_FILES:
            path = try_to_load_from_cache(repo, name)
            if isinstance(path, str):
                return {"pretrained_cfg_overlay": {"file": path}}
        check_reachable(_timm_hub_url(), f"{arch}'s pretrained weights", _hf_remedy(arch))
    elif cfg.url and not _torch_hub_cached(cfg.url):
        remedy = _torch_hub_remedy(cfg.url, "pretrained=false")
        check_reachable(cfg.url, f"{arch}'s pretrained weights", remedy)
    return {}


_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
