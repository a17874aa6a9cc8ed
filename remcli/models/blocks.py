"""A generic notion of "block" for any torchvision-style model.

Blocks are found by walking the module tree in definition order and expanding plain
containers: exact `nn.Sequential` / `nn.ModuleList`, and modules whose parameters live mostly in
one such container (e.g. a ViT `Encoder` and its `layers`). Anything else with parameters is a
block. For torchvision's resnet18 that gives conv1, bn1, layer1.0, ..., layer4.1, fc; for a ViT,
conv_proj, encoder.layers.encoder_layer_0, ..., encoder.ln, heads.head. cf-k / eu-k use the last
k blocks; `remcli inspect --blocks` lists them.
"""

from __future__ import annotations

from torch import nn


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _is_container(module: nn.Module) -> bool:
    return type(module) in (nn.Sequential, nn.ModuleList)


def _should_expand(module: nn.Module) -> bool:
    if _is_container(module):
        return True
    total = _param_count(module)
    return any(_is_container(child) and len(child) > 1 and _param_count(child) * 2 > total for child in module.children())


def list_blocks(model: nn.Module) -> list[str]:
    blocks: list[str] = []

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if _param_count(child) == 0:
                continue
            if _should_expand(child):
                walk(child, full + ".")
            else:
                blocks.append(full)

    walk(model, "")
    return blocks
