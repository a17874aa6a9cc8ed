"""Data-parallel training and unlearning under `torchrun` (torch.distributed: NCCL on GPUs, gloo on CPUs).

    torchrun --nproc-per-node 2 -m remcli train ...     # or: unlearn, with a method that supports it

Every rank holds the whole model and the whole (in-memory) dataset and draws the same batch order,
augmentation and masks from the same seeded generators, so every rank builds the same global batch.
Each then computes the loss on its own contiguous share of the rows, and the gradients are summed
across ranks with each share weighted by its size, so one step equals one single-process step on
the global batch (exactly, up to floating-point order, when no layer mixes rows: BatchNorm in
train mode sees only its rank's rows unless `--sync-bn`, on CUDA). REM's new units are ordinary
parameters of the optimiser and are summed with the rest; its masks are functions of each
sample's position, so a row gets the same mask on whichever rank it lands. Evaluation (validation
accuracy, REM's proxy and flush checks) runs whole on every rank, so every rank takes the same
decisions. Rank 0 alone writes outputs and prints.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from remcli.data.pipeline import Batch
from remcli.errors import InputError

TORCHRUN_COMMANDS = ("train", "unlearn")


def launched_by_torchrun(environ: dict | None = None) -> bool:
    """True when torchrun (or any launcher setting WORLD_SIZE > 1) started this process."""
    env = os.environ if environ is None else environ
    return int(env.get("WORLD_SIZE", "1")) > 1


def is_main_process(environ: dict | None = None) -> bool:
    """Rank 0, or a plain single process: the one that prints and writes."""
    env = os.environ if environ is None else environ
    return int(env.get("RANK", "0")) == 0


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel group: `rank` of `world_size`."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share_bounds(self, rows: int) -> tuple[int, int]:
        """[start, stop) of this rank's contiguous share of a global batch of `rows` rows.

        Shares differ by at most one row; with fewer rows than ranks some shares are empty.
        """
        base, extra = divmod(rows, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def share(self, batch: Batch) -> Batch:
        start, stop = self.share_bounds(int(batch.labels.shape[0]))
        return Batch(batch.inputs[start:stop], batch.labels[start:stop], batch.indices[start:stop])

    def all_reduce_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Sum every gradient across ranks, in one collective per dtype (gradients flattened into one
        buffer); a rank without a gradient (an empty share) contributes zeros."""
        by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
        for param in params:
            if param.requires_grad:
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
                by_dtype.setdefault(param.grad.dtype, []).append(param)
        for group in by_dtype.values():
            flat = torch.cat([p.grad.reshape(-1) for p in group])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            for param, summed in zip(group, flat.split([p.grad.numel() for p in group])):
                param.grad.copy_(summed.view_as(param.grad))

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of a scalar over all ranks (the same result on every rank)."""
        value = value.detach().clone().float()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def broadcast_model(self, model: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (they are built identically; this makes sure)."""
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def broadcast_buffers(self, modules: Iterable[nn.Module]) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank, as DistributedDataParallel
        does: each rank's statistics saw only its share, and every rank must evaluate alike."""
        for module in modules:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def device(self, requested: torch.device) -> torch.device:
        """On CUDA each rank takes the GPU of its local rank; CPU ranks share the CPU."""
        if requested.type == "cuda":
            return torch.device("cuda", self.local_rank)
        if requested.type != "cpu":
            raise InputError(f"torchrun data parallel runs on cuda or cpu, not {requested.type}; pass --device cuda or --device cpu")
        return requested


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers that compute batch statistics over the global batch (CUDA only in PyTorch).

    The state dict keeps the same names and shapes, so checkpoints are unchanged.
    """
    if device.type != "cuda":
        raise InputError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm does not run on the CPU); drop --sync-bn on CPU ranks")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


@contextlib.contextmanager
def data_parallel_from_environment(device_name: str) -> Iterator[DataParallel | None]:
    """The process group torchrun asked for (None in a plain single process), torn down on exit.

    gloo for CPU ranks, NCCL for CUDA ranks.
    """
    if not launched_by_torchrun():
        yield None
        return
    group = DataParallel(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if wants_cuda:
        torch.cuda.set_device(group.local_rank)
    dist.init_process_group("nccl" if wants_cuda else "gloo")
    try:
        yield group
    finally:
        dist.destroy_process_group()


def shared_batch(group: DataParallel | None, batch: Batch) -> tuple[Batch, float]:
    """This rank's share of `batch` and its weight (share rows / global rows) in the global mean."""
    if group is None:
        return batch, 1.0
    rows = int(batch.labels.shape[0])
    share = group.share(batch)
    return share, (int(share.labels.shape[0]) / rows) if rows else 0.0
