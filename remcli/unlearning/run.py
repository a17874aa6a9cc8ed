"""`unlearn()`: checkpoint + identified samples + method name -> a new checkpoint's tensors and metadata."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from remcli.checkpoints import Checkpoint, history_entry
from remcli.distributed import DataParallel
from remcli.engine import resolve_device, resolve_precision, synchronize
from remcli.errors import InputError
from remcli.inputs import RunInputs
from remcli.models import input_spec
from remcli.progress import NullReporter
from remcli.unlearning.base import UnlearnTask, build_config, get_method, list_methods


@dataclass
class UnlearnOutcome:
    """What `unlearn()` made: the new checkpoint's tensors and metadata (history appended), and the
    summary the CLI prints and a sweep cell records."""

    state_dict: dict[str, torch.Tensor]
    meta: dict
    summary: dict

    def checkpoint(self) -> Checkpoint:
        """The unlearned model as an in-memory checkpoint, for `evaluate` or `detect` without writing a file."""
        return Checkpoint(state_dict=self.state_dict, meta=self.meta)


def refuse_held_out(identified: torch.Tensor, checkpoint: Checkpoint) -> None:
    """Samples held out for validation were never trained on: listing one is a user error."""
    overlap = torch.isin(identified, checkpoint.validation_indices)
    if overlap.any():
        raise InputError(
            f"the index file lists {int(overlap.sum())} samples held out for validation (never trained on), e.g. "
            f"{identified[overlap][:3].tolist()}; remove them"
        )


def build_task(
    checkpoint: Checkpoint,
    inputs: RunInputs,
    identified: torch.Tensor,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    reporter: NullReporter | None = None,
    group: DataParallel | None = None,
) -> UnlearnTask:
    """The checkpoint's model on the device plus every data view a method may touch."""
    dev = resolve_device(device) if group is None else group.device(resolve_device(device))
    refuse_held_out(identified, checkpoint)
    return UnlearnTask(
        model=checkpoint.build().to(dev).to(memory_format=torch.channels_last),
        arch=checkpoint.arch or "",
        dataset=inputs.dataset,
        manifest=inputs.manifest,
        identified=identified,
        validation=checkpoint.validation_indices,
        spec=input_spec(inputs.dataset, checkpoint.arch or ""),
        device=dev,
        precision=resolve_precision(precision, dev),
        seed=seed,
        reporter=reporter or NullReporter(),
        build_untrained=checkpoint.build_untrained,
        train_params=checkpoint.train_params,
        init=checkpoint.init,
        group=group,
    )


def unlearn(
    checkpoint: Checkpoint,
    inputs: RunInputs,
    identified: torch.Tensor,
    method: str,
    overrides: dict | None = None,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    reporter: NullReporter | None = None,
    group: DataParallel | None = None,
) -> UnlearnOutcome:
    """Run METHOD on the checkpoint. `group` (under torchrun, see remcli.distributed): data-parallel
    across ranks, for methods registered with data_parallel=True; every rank returns the same result."""
    info = get_method(method)
    cfg = build_config(info, overrides or {})
    if group is not None and not info.data_parallel:
        supported = ", ".join(m.name for m in list_methods() if m.data_parallel)
        raise InputError(f"method {method} does not run data-parallel under torchrun; run it in one process, or use one of: {supported}")
    task = build_task(checkpoint, inputs, identified, seed, device, precision, reporter, group)
    dev = task.device
    start = time.perf_counter()
    result = info.fn(task, cfg)
    synchronize(dev)
    wall = time.perf_counter() - start
    state = result.model.state_dict()
    changed = any(
        not torch.equal(value.detach().cpu(), checkpoint.state_dict[key].cpu()) for key, value in state.items() if key in checkpoint.state_dict
    )
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
    entry = history_entry(
        f"unlearn --method {method}",
        params,
        seed,
        wall,
        str(dev),
        checkpoint.sha256,
        method=method,
        identified=len(identified),
        changed=changed,
        precision=task.precision,  # what ran (bf16, fp32...), never "auto"
        steps=result.steps,
        log=result.log,
        **({"data_parallel": {"world_size": group.world_size}} if group is not None else {}),
    )
    meta = {**checkpoint.meta, "history": [*checkpoint.history, entry]}
    summary = {
        "method": method,
        "identified": len(identified),
        "changed": changed,
        "steps": result.steps,
        "wall_time_s": round(wall, 3),
        "device": str(dev),
        "precision": task.precision,
        "config": params,
        "log": result.log,
    }
    return UnlearnOutcome(state, meta, summary)
