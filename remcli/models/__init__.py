"""Models: the architecture registry (remcli nets + torchvision fallthrough)."""

from remcli.models.registry import build_model, list_archs, model_channels, register_arch, resolve_arch_kwargs

__all__ = ["build_model", "list_archs", "model_channels", "register_arch", "resolve_arch_kwargs"]
