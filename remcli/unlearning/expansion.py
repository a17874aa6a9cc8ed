"""REM step 1, for real: add new, randomly initialised units beside chosen layers of any model.

For each target module with output `y` the expansion adds `capacity x width` new units:

    hidden = act(read(source))          # new neurons (1x1 conv for NCHW maps, linear for tokens)
    y'     = y + write(mask * hidden)   # mask: per-sample 0/1 over the new units

`source` is the target's output, except for ViT MLP blocks, where it is the block's input, so
the new units are literally extra hidden neurons of the MLP (`width` = the MLP hidden size).
For CNN blocks `width` is the block's channel count.

Views:
* drop: the hooks return nothing, so the forward is bit for bit the wrapped model's;
* redirect: old units plus the masked new units.

The new units live outside the wrapped model (forward hooks + a separate ModuleDict), so
`model.state_dict()` never contains them: removing the hooks *is* step 4 (drop), and the output
checkpoint has exactly the input's tensor names and shapes.

Difference from the paper's code (rem-method.md §2.6, §8.1): the code emulates new capacity with
the untrained half of a capacity-0.5 ResNet-9 whose new channels feed the next layer through
random input weights. Here the new units are appended post hoc to any trained model and feed
back into the layer's own output through `write`, which works on any architecture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from remcli.errors import InputError
from remcli.seeding import seeded_global_rng


class DedicatedUnits(nn.Module):
    def __init__(self, in_width: int, units: int, out_width: int, spatial: bool, act: nn.Module):
        super().__init__()
        self.spatial = spatial
        if spatial:
            self.read = nn.Conv2d(in_width, units, kernel_size=1)
            self.write = nn.Conv2d(units, out_width, kernel_size=1, bias=False)
        else:
            self.read = nn.Linear(in_width, units)
            self.write = nn.Linear(units, out_width, bias=False)
        self.act = act

    def forward(self, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.read(source))
        if self.spatial:
            hidden = hidden * mask[:, :, None, None].to(hidden.dtype)
        else:
            hidden = hidden * mask.view(mask.shape[0], *([1] * (hidden.dim() - 2)), -1).to(hidden.dtype)
        return self.write(hidden)


def _is_vit_mlp(module: nn.Module) -> bool:
    from torchvision.models.vision_transformer import MLPBlock

    return isinstance(module, MLPBlock)


def default_targets(model: nn.Module, arch: str) -> list[str]:
    """resnet9: its 6 block outputs; torchvision ResNets: every residual block; ViTs: every MLP
    block; anything else: every Conv2d / Linear layer except the final classifier."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if arch == "resnet9":
        return ["conv1", "conv2", "res1", "conv3", "res2", "conv4"]
    named = list(model.named_modules())
    found = [name for name, m in named if isinstance(m, (BasicBlock, Bottleneck))]
    if found:
        return found
    found = [name for name, m in named if _is_vit_mlp(m)]
    if found:
        return found
    layers = [name for name, m in named if isinstance(m, (nn.Conv2d, nn.Linear))]
    return layers[:-1]


class Expansion:
    """Hooks dedicated units onto `model`; `redirect(mask)` switches them on for one forward."""

    def __init__(self, model: nn.Module, targets: list[str], capacity: float, probe: torch.Tensor, seed: int):
        modules = dict(model.named_modules())
        unknown = [t for t in targets if t not in modules]
        if unknown:
            raise InputError(f"--rem-targets {unknown} are not modules of this model; see `remcli inspect --blocks` for names")
        if capacity <= 0:
            raise InputError(f"--capacity {capacity} must be positive")
        self.model = model
        self.adapters = nn.ModuleDict()
        self.slices: dict[str, slice] = {}
        self._mask: torch.Tensor | None = None
        self._handles = []
        shapes = self._probe_shapes(model, [modules[t] for t in targets], probe)
        offset = 0
        with seeded_global_rng(seed, "rem/expansion-init"):
            for target, (in_shape, out_shape) in zip(targets, shapes):
                module = modules[target]
                from_input = _is_vit_mlp(module)
                spatial = len(out_shape) == 4
                out_width = out_shape[1] if spatial else out_shape[-1]
                in_width = (in_shape[1] if spatial else in_shape[-1]) if from_input else out_width
                width = module[0].out_features if from_input else out_width
                units = max(1, round(capacity * width))
                act = nn.GELU() if from_input else nn.ReLU()
                key = target.replace(".", "/")
                self.adapters[key] = DedicatedUnits(in_width, units, out_width, spatial, act)
                self.slices[key] = slice(offset, offset + units)
                offset += units
                self._handles.append(module.register_forward_hook(self._hook(key, from_input)))
        self.num_units = offset
        device = next(model.parameters()).device
        self.adapters.to(device)

    @staticmethod
    def _probe_shapes(model: nn.Module, modules: list[nn.Module], probe: torch.Tensor) -> list[tuple]:
        shapes: dict[int, tuple] = {}
        def record(i: int):
            def hook(module, args, out):
                if isinstance(out, torch.Tensor) and args and isinstance(args[0], torch.Tensor):
                    shapes[i] = (tuple(args[0].shape), tuple(out.shape))

            return hook

        handles = [m.register_forward_hook(record(i)) for i, m in enumerate(modules)]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(probe)
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        for i, m in enumerate(modules):
            if i not in shapes:
                raise InputError(f"target module {m.__class__.__name__} produced no tensor output; choose other --rem-targets")
        return [shapes[i] for i in range(len(modules))]

    def _hook(self, key: str, from_input: bool):
        def hook(module, args, output):
            if self._mask is None:
                return None  # drop view: untouched, bit for bit
            source = args[0] if from_input else output
            return output + self.adapters[key](source, self._mask[:, self.slices[key]])

        return hook

    @contextlib.contextmanager
    def redirect(self, unit_mask: torch.Tensor) -> Iterator[None]:
        self._mask = unit_mask
        try:
            yield
        finally:
            self._mask = None

    def parameters(self):
        return self.adapters.parameters()

    def remove(self) -> None:
        """Step 4: drop the new units. The wrapped model is left exactly as its own state says."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
