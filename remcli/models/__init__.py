"""Models: the architecture registry (remcli nets, timm:NAME, torchvision fallthrough) and the
recipe defaults of each model family."""

from remcli.models.registry import (
    arch_family,
    build_model,
    input_spec,
    list_archs,
    model_channels,
    register_arch,
    resolve_arch_kwargs,
    timm_name,
)

__all__ = ["arch_family", "build_model", "input_spec", "list_archs", "model_channels", "register_arch", "resolve_arch_kwargs", "timm_name"]
