"""Where a model's blocks and its classifier are, for any model remcli builds: the one place that
looks inside a model's structure.

* `list_blocks`: generic blocks, found by walking the module tree in definition order and
  expanding plain containers: exact `nn.Sequential` / `nn.ModuleList`, and modules whose
  parameters live mostly in one such container (e.g. a ViT `Encoder` and its `layers`). Anything
  else with parameters is a block. For torchvision's resnet18 that gives conv1, bn1, layer1.0, ...,
  layer4.1, fc; for a ViT, conv_proj, encoder.layers.encoder_layer_0, ..., encoder.ln, heads.head.
  cf-k / eu-k use the last k blocks; `remcli inspect --blocks` lists them.
* `classifier_keys`: the last block's state-dict keys; `classifier_layer`: the last nn.Linear,
  whose inputs are the penultimate features.
* `block_outputs`: the stages a model's computation passes through (residual blocks, transformer
  MLP blocks), where REM adds its new units by default; `mlp_hidden_width` for the MLP blocks.

Types of torchvision and timm are looked up only if their module is loaded (`_imported_classes`):
a model can only hold instances of loaded classes, and importing torchvision's models costs about a
second.
"""

from __future__ import annotations

import sys

from torch import nn

from remcli.errors import InputError


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


def classifier_keys(model: nn.Module) -> list[str]:
    """The state-dict keys of the model's last block, its classifier (resnet9's fc, a torchvision ViT's heads.head)."""
    last = list_blocks(model)[-1]
    return [key for key in model.state_dict() if key.startswith(last + ".")]


def classifier_layer(model: nn.Module, step: str) -> nn.Linear:
    """The last nn.Linear in module order: the classifier of every supported family. `step` names
    what needs it in the error for a model without one."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(f"{step} needs a model whose last layer is a linear classifier; this one has no nn.Linear")
    return linears[-1]


def _imported_classes(module: str, *names: str) -> tuple[type, ...]:
    """The named classes of `module` if it is imported, else none."""
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, name) for name in names) if loaded is not None else ()


def _residual_block_types() -> tuple[type, ...]:
    """torchvision's and timm's ResNet blocks."""
    return _imported_classes("torchvision.models.resnet", "BasicBlock", "Bottleneck") + _imported_classes(
        "timm.models.resnet", "BasicBlock", "Bottleneck"
    )


def mlp_hidden_width(module: nn.Module) -> int | None:
    """The hidden size of a transformer MLP block (torchvision's MLPBlock, timm's Mlp), else None."""
    if isinstance(module, _imported_classes("torchvision.models.vision_transformer", "MLPBlock")):
        return module[0].out_features
    if isinstance(module, _imported_classes("timm.layers.mlp", "Mlp")) and isinstance(module.fc1, nn.Linear):
        return module.fc1.out_features
    return None


def block_outputs(model: nn.Module) -> list[str]:
    """A remcli net's declared `BLOCK_OUTPUTS` (resnet9's six); torchvision and timm ResNets: every
    residual block; ViTs (torchvision or timm): every MLP block; anything else: every Conv2d /
    Linear layer except the final classifier."""
    declared = getattr(type(model), "BLOCK_OUTPUTS", None)
    if declared is not None:
        return list(declared)
    named = list(model.named_modules())
    found = [name for name, m in named if isinstance(m, _residual_block_types())]
    if found:
        return found
    found = [name for name, m in named if mlp_hidden_width(m) is not None]
    if found:
        return found
    layers = [name for name, m in named if isinstance(m, (nn.Conv2d, nn.Linear))]
    return layers[:-1]
