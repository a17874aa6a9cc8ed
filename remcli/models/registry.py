"""Architectures by name: remcli's own CIFAR nets, anything torchvision can build, and timm.

`build_model(arch, num_classes, ...)` is the one way a model is made. Each name belongs to one
source (`arch_source`), which builds, lists and feeds its models: names registered here win;
`timm:NAME` builds `timm.create_model(NAME, num_classes=K, in_chans=C)` (the optional
`remcli[timm]` extra); every other name falls through to
`torchvision.models.get_model(name, num_classes=K)`, so any classifier in
`torchvision.models.list_models()` works and its state dict loads into the plain torchvision
constructor. The resolved constructor arguments are returned so that checkpoints can record them
and rebuild the exact module later.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable

from torch import nn

from remcli.data.datasets import Dataset
from remcli.data.pipeline import InputSpec
from remcli.errors import InputError
from remcli.models.resnet9 import ResNet9
from remcli.registry import Registry

Builder = Callable[..., nn.Module]
ARCHS = Registry[Builder]("architecture")


def register_arch(name: str, family: str | None = None):
    """Decorator registering a builder `(num_classes, in_channels, image_size, **options)` as NAME;
    `family` ('cnn' or 'transformer') picks its recipes (None: from the name, as for torchvision's)."""
    return ARCHS.register(name, family=family)


@register_arch("resnet9")
def _resnet9(num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> nn.Module:
    return ResNet9(num_classes=num_classes, in_channels=in_channels, width=width)


@register_arch("vit_cifar", family="transformer")
def _vit_cifar(num_classes: int, in_channels: int, image_size: int, width: float = 1.0, patch_size: int = 8, depth: int = 4) -> nn.Module:
    """torchvision's VisionTransformer sized like the REM paper's SVHN ViT: patch 8, dim 512,
    depth 4, 8 heads, MLP 1536. `width` scales dim and MLP. Loads into
    `torchvision.models.VisionTransformer(image_size, patch_size, depth, heads, dim, mlp_dim, num_classes=K)`."""
    if in_channels != 3:
        raise InputError("vit_cifar expects RGB input")
    dim = max(8, round(512 * width / 8) * 8)  # 8 heads always divide it
    import torchvision.models

    return torchvision.models.VisionTransformer(
        image_size=image_size,
        patch_size=patch_size,
        num_layers=depth,
        num_heads=8,
        hidden_dim=dim,
        mlp_dim=3 * dim,
        num_classes=num_classes,
    )


TIMM_PREFIX = "timm:"
TIMM_EXTRA = "pip install 'remcli[timm]'"
_TRANSFORMER_PREFIXES = ("vit_", "swin_", "maxvit_")  # torchvision's transformer classifiers


def _timm():
    try:
        import timm
    except ImportError:
        raise InputError(f"--arch timm:NAME needs timm, which is not installed; install the extra: {TIMM_EXTRA}") from None
    return timm


def timm_name(arch: str) -> str | None:
    """'resnet18' for 'timm:resnet18'; None for other archs."""
    return arch[len(TIMM_PREFIX) :] if arch.startswith(TIMM_PREFIX) else None


def timm_pretrained_config(arch: str) -> dict:
    """timm's pretrained config for `timm:NAME`: input_size (C,H,W), mean, std, fixed_input_size."""
    name = timm_name(arch)
    timm = _timm()
    if not name or not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:5] if name else []
        hint = f" (close: {', '.join(close)})" if close else "; `python -c 'import timm; print(timm.list_models())'` lists them"
        raise InputError(f"unknown timm model {name!r}{hint}")
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return {}
    return {"input_size": list(cfg.input_size), "mean": list(cfg.mean), "std": list(cfg.std), "fixed_input_size": bool(cfg.fixed_input_size)}


def torchvision_archs() -> list[str]:
    import torchvision.models  # imported when needed: it costs about a second at every CLI start

    return sorted(torchvision.models.list_models(module=torchvision.models))


class ArchSource(ABC):
    """Where architectures come from: which names a source holds, and how it lists, feeds and builds
    their models. `arch_source` gives each name one source, so every choice between remcli's nets,
    timm and torchvision is that one lookup."""

    @abstractmethod
    def holds(self, arch: str) -> bool: ...

    def names(self) -> list[str]:
        """What `remcli archs` lists."""
        return []

    def channels(self, data_channels: int) -> int:
        """The input channels its models take."""
        return data_channels

    def family(self, arch: str) -> str:
        """'transformer' or 'cnn': picks the recipes."""
        return "transformer" if arch.startswith(_TRANSFORMER_PREFIXES) else "cnn"

    @abstractmethod
    def resolve_kwargs(self, arch: str, image_size: int, kwargs: dict) -> dict:
        """The constructor arguments to record: the user's (`kwargs`, a copy) plus what the input size requires."""

    @abstractmethod
    def build(self, arch: str, num_classes: int, in_channels: int, image_size: int, kwargs: dict) -> nn.Module: ...


class RemcliSource(ArchSource):
    """The nets registered here (`ARCHS`), which validate their options against their builders."""

    def holds(self, arch: str) -> bool:
        return arch in ARCHS

    def names(self) -> list[str]:
        return list(ARCHS.names())

    def family(self, arch: str) -> str:
        return ARCHS.meta(arch).get("family") or super().family(arch)

    def resolve_kwargs(self, arch: str, image_size: int, kwargs: dict) -> dict:
        options = inspect.signature(ARCHS.get(arch)).parameters
        allowed = set(options) - {"num_classes", "in_channels", "image_size"}
        unknown = set(kwargs) - allowed
        if unknown:
            raise InputError(f"arch {arch} does not take {sorted(unknown)}; valid options: {sorted(allowed) or 'none'}")
        for name, value in kwargs.items():
            expected = type(options[name].default)
            if expected in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise InputError(f"arch {arch} option {name}={value!r} must be a positive number")
        return kwargs

    def build(self, arch: str, num_classes: int, in_channels: int, image_size: int, kwargs: dict) -> nn.Module:
        kwargs.pop("image_size", None)  # remcli's nets take the size from `image_size` below
        kwargs = self.resolve_kwargs(arch, image_size, kwargs)
        return ARCHS.get(arch)(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs)


class TimmSource(ArchSource):
    """`timm:NAME` (the optional extra); too many to list."""

    def holds(self, arch: str) -> bool:
        return timm_name(arch) is not None

    def family(self, arch: str) -> str:
        return "transformer" if timm_pretrained_config(arch).get("fixed_input_size") else "cnn"

    def resolve_kwargs(self, arch: str, image_size: int, kwargs: dict) -> dict:
        pretrained = timm_pretrained_config(arch)
        if pretrained.get("fixed_input_size") and "img_size" not in kwargs and pretrained["input_size"][-1] != image_size:
            kwargs["img_size"] = image_size  # position embeddings are sized for one input size
        return kwargs  # timm's constructors validate their own keyword arguments

    def build(self, arch: str, num_classes: int, in_channels: int, image_size: int, kwargs: dict) -> nn.Module:
        kwargs = self.resolve_kwargs(arch, image_size, kwargs)
        try:
            return _timm().create_model(timm_name(arch), pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)
        except (TypeError, ValueError, AssertionError, RuntimeError) as err:
            raise InputError(f"cannot build timm model {timm_name(arch)} with {kwargs}: {err}") from None


class TorchvisionSource(ArchSource):
    """Every other name: a torchvision classifier, which expects RGB; an unknown name fails here."""

    def holds(self, arch: str) -> bool:
        return True

    def names(self) -> list[str]:
        return torchvision_archs()

    def channels(self, data_channels: int) -> int:
        return 3

    def resolve_kwargs(self, arch: str, image_size: int, kwargs: dict) -> dict:
        if arch not in torchvision_archs():
            raise InputError(
                f"unknown arch {arch!r}; use one of {', '.join(ARCHS.names())}, a torchvision classifier such as resnet18, mobilenet_v3_small, "
                "vit_b_16 (`remcli archs` lists all), or timm:NAME"
            )
        if arch.startswith("vit_") and "image_size" not in kwargs:
            kwargs["image_size"] = image_size  # ViTs need the input size; 32 is divisible by their patches
        return kwargs  # torchvision builders take **kwargs; the constructor validates them

    def build(self, arch: str, num_classes: int, in_channels: int, image_size: int, kwargs: dict) -> nn.Module:
        kwargs = self.resolve_kwargs(arch, image_size, kwargs)
        import torchvision.models

        try:
            return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
        except (TypeError, ValueError) as err:
            raise InputError(f"cannot build torchvision model {arch} with {kwargs}: {err}") from None


SOURCES = (RemcliSource(), TimmSource(), TorchvisionSource())  # asked in order: the first that holds a name owns it


def arch_source(arch: str) -> ArchSource:
    """The one source of `arch`: remcli's registry, then timm:NAME, then torchvision."""
    return next(source for source in SOURCES if source.holds(arch))


def arch_family(arch: str) -> str:
    """'transformer' (ViTs, Swin, timm models with a fixed input size) or 'cnn': picks recipes."""
    return arch_source(arch).family(arch)


def list_archs() -> list[str]:
    return [name for source in SOURCES for name in source.names()]


def model_channels(arch: str, data_channels: int) -> int:
    """remcli's nets and timm models take the data's channels; torchvision classifiers expect RGB."""
    return arch_source(arch).channels(data_channels)


def input_spec(dataset: Dataset, arch: str) -> InputSpec:
    """How `dataset`'s uint8 images become inputs of an `arch` model: its normalisation (the
    dataset's statistics, or those a checkpoint recorded on it) and the model's channel count."""
    return InputSpec(mean=dataset.mean, std=dataset.std, model_channels=model_channels(arch, dataset.input_shape[0]))


def resolve_arch_kwargs(arch: str, image_size: int, user_kwargs: dict | None = None) -> dict:
    """The constructor arguments to record: user ones plus what the input size requires."""
    return arch_source(arch).resolve_kwargs(arch, image_size, dict(user_kwargs or {}))


def build_model(arch: str, num_classes: int, in_channels: int = 3, input_size: int | None = None, **kwargs) -> nn.Module:
    """Build an untrained model. Weight init draws from the global RNG: wrap in `seeded_global_rng`.

    `input_size` is the data's side length. Recorded constructor arguments may carry it too (a
    torchvision ViT's `image_size`), so it is a separate name and the two never collide.
    """
    if num_classes < 1:
        raise InputError(f"a classifier needs at least one output class, not {num_classes}; give the number of classes its weights were trained on")
    size = input_size if input_size is not None else int(kwargs.get("image_size", 32))
    return arch_source(arch).build(arch, num_classes, in_channels, size, kwargs)
