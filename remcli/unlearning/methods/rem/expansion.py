"""REM step 1, for real: add new, randomly initialised units beside chosen layers of any model.

Two kinds of new units for feature maps (`REMConfig.units`; `rem` and `rem-full` use `bottleneck`,
`rem-redirect` uses `conv`; `Expansion` itself defaults to `conv`):

* `conv`: each target gets `capacity x C` new channels computed by a
  k x k convolution with its own BatchNorm and ReLU, reading the target's output and, when
  `chain` is on, the previous target's new channels (resized to this target's grid). They feed
  back into the target's output through a 1x1 write:

      h_i = mask_i * relu(bn(conv_kxk([y_i, resize(h_{i-1})])))
      y_i' = y_i + write_i(h_i)

  So the new channels form a second, chained path through the network, as the research code's
  untrained channel halves do (it trains a capacity-0.5 network and uses the untrained half as
  REM's new capacity): large enough to hold the corruption, not a side branch.
* `bottleneck`: an independent 1x1 read -> ReLU -> 1x1 write per target, without normalisation
  or chaining (about 16 % of a width-0.25 ResNet-9 at capacity 1).

Token tensors (ViT MLP blocks) always get `linear` units: new hidden neurons of the MLP, reading
the block's input and writing into its output (`width` = the MLP hidden size).

Writes of `conv` and `linear` units start at zero, so the redirect view equals the input model
until the repair teaches the new units something (the reads and the new BatchNorm start at
PyTorch's defaults, seeded); `bottleneck` keeps its random write, as before.

Views:
* drop: the hooks return nothing, so the forward is bit for bit the wrapped model's;
* redirect: old units plus the masked new units.

The new units live outside the wrapped model (forward hooks + a separate ModuleDict), so
`model.state_dict()` never contains them: removing the hooks *is* step 4 (drop), and the output
checkpoint has exactly the input's tensor names and shapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from remcli.errors import InputError
from remcli.models.blocks import mlp_hidden_width
from remcli.seeding import seeded_global_rng

UNIT_KINDS = ("conv", "bottleneck")


def _masked(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Multiply per-sample unit masks (B, U) into (B, U, H, W) maps or (B, ..., U) tokens."""
    if hidden.dim() == 4:
        return hidden * mask[:, :, None, None].to(hidden.dtype)
    return hidden * mask.view(mask.shape[0], *([1] * (hidden.dim() - 2)), -1).to(hidden.dtype)


class ConvUnits(nn.Module):
    """k x k conv + BatchNorm + ReLU new channels, optionally reading the previous target's."""

    def __init__(self, width: int, units: int, chained_in: int, kernel_size: int, silent_write: bool = True):
        super().__init__()
        self.read = nn.Conv2d(width + chained_in, units, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(units)
        self.write = nn.Conv2d(units, width, kernel_size=1, bias=False)
        if silent_write:
            nn.init.zeros_(self.write.weight)
        self.chained_in = chained_in

    def forward(self, source: torch.Tensor, mask: torch.Tensor, previous: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.chained_in:
            if previous is None:
                previous = source.new_zeros(source.shape[0], self.chained_in, *source.shape[2:])
            elif previous.shape[2:] != source.shape[2:]:
                previous = F.adaptive_avg_pool2d(previous, source.shape[2:])
            source = torch.cat([source, previous.to(source.dtype)], dim=1)
        hidden = _masked(F.relu(self.norm(self.read(source))), mask)
        return self.write(hidden), hidden


class LinearUnits(nn.Module):
    """1x1 read -> activation -> 1x1 write (`bottleneck`), or new MLP hidden neurons (`linear`)."""

    def __init__(self, in_width: int, units: int, out_width: int, spatial: bool, act: nn.Module, silent_write: bool):
        super().__init__()
        if spatial:
            self.read = nn.Conv2d(in_width, units, kernel_size=1)
            self.write = nn.Conv2d(units, out_width, kernel_size=1, bias=False)
        else:
            self.read = nn.Linear(in_width, units)
            self.write = nn.Linear(units, out_width, bias=False)
        if silent_write:
            nn.init.zeros_(self.write.weight)
        self.act = act
        self.chained_in = 0

    def forward(self, source: torch.Tensor, mask: torch.Tensor, previous: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = _masked(self.act(self.read(source)), mask)
        return self.write(hidden), hidden


class Expansion:
    """Hooks new units onto `model`; `redirect(mask)` switches them on for the forwards inside it."""

    def __init__(
        self,
        model: nn.Module,
        targets: list[str],
        capacity: float,
        probe: torch.Tensor,
        seed: int,
        units: str = "conv",
        kernel_size: int = 3,
        chain: bool = True,
        silent_write: bool = True,
    ):
        modules = dict(model.named_modules())
        unknown = [t for t in targets if t not in modules]
        if unknown:
            raise InputError(f"--rem-targets {unknown} are not modules of this model; see `remcli inspect --blocks` for names")
        if not capacity > 0:
            raise InputError(f"--capacity {capacity} must be positive")
        if units not in UNIT_KINDS:
            raise InputError(f"REM units {units!r} are not valid; use {' or '.join(UNIT_KINDS)}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise InputError(f"REM kernel_size {kernel_size} must be a positive odd number")
        self.model = model
        self.adapters = nn.ModuleDict()
        self.slices: dict[str, slice] = {}
        self.kinds: dict[str, str] = {}
        self._mask: torch.Tensor | None = None
        self._previous: torch.Tensor | None = None  # the last conv target's new channels, this forward
        self._handles = []
        ordered = self._probe_shapes(model, [(t, modules[t]) for t in targets], probe)  # forward order
        offset, previous_units = 0, 0
        with seeded_global_rng(seed, "rem/expansion-init"):
            for target, (in_shape, out_shape) in ordered:
                module = modules[target]
                hidden = mlp_hidden_width(module)
                from_input = hidden is not None
                spatial = len(out_shape) == 4
                out_width = out_shape[1] if spatial else out_shape[-1]
                width = hidden if from_input else out_width
                count = max(1, round(capacity * width))
                key = target.replace(".", "/")
                if spatial and units == "conv":
                    adapter: nn.Module = ConvUnits(out_width, count, previous_units if chain else 0, kernel_size, silent_write)
                    kind, previous_units = "conv", count
                else:
                    in_width = (in_shape[1] if spatial else in_shape[-1]) if from_input else out_width
                    kind, previous_units = ("bottleneck" if units == "bottleneck" else "linear"), 0
                    adapter = LinearUnits(
                        in_width, count, out_width, spatial, nn.GELU() if from_input else nn.ReLU(), silent_write=kind == "linear" and silent_write
                    )
                self.adapters[key] = adapter
                self.kinds[key] = kind
                self.slices[key] = slice(offset, offset + count)
                offset += count
                self._handles.append(module.register_forward_hook(self._hook(key, from_input)))
        self.targets = [t for t, _ in ordered]
        self.num_units = offset
        self.adapters.to(next(model.parameters()).device)

    @staticmethod
    def _probe_shapes(model: nn.Module, named: list[tuple[str, nn.Module]], probe: torch.Tensor) -> list[tuple[str, tuple]]:
        """(target, (input shape, output shape)) in the order the forward visits the targets."""
        seen: list[tuple[str, tuple]] = []

        def record(name: str):
            def hook(module, args, out):
                if isinstance(out, torch.Tensor) and args and isinstance(args[0], torch.Tensor) and name not in dict(seen):
                    seen.append((name, (tuple(args[0].shape), tuple(out.shape))))

            return hook

        handles = [m.register_forward_hook(record(name)) for name, m in named]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(probe)
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        missing = [name for name, _ in named if name not in dict(seen)]
        if missing:
            raise InputError(f"target modules {missing} produced no tensor output; choose other --rem-targets")
        return seen

    def _hook(self, key: str, from_input: bool):
        def hook(module, args, output):
            if self._mask is None:
                return None  # drop view: untouched, bit for bit
            adapter = self.adapters[key]
            source = args[0] if from_input else output
            delta, hidden = adapter(source, self._mask[:, self.slices[key]], self._previous if adapter.chained_in else None)
            if self.kinds[key] == "conv":
                self._previous = hidden
            return output + delta.to(output.dtype)

        return hook

    @contextlib.contextmanager
    def redirect(self, unit_mask: torch.Tensor) -> Iterator[None]:
        """Forwards inside run the redirect view with `unit_mask` (B, num_units) for the batch."""
        self._mask, self._previous = unit_mask, None
        try:
            yield
        finally:
            self._mask, self._previous = None, None

    def parameters(self):
        return self.adapters.parameters()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.adapters.parameters())

    def train(self, mode: bool = True) -> None:
        self.adapters.train(mode)

    def remove(self) -> None:
        """Step 4: drop the new units. The wrapped model is left exactly as its own state says."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
