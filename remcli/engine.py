"""The one training-loop engine shared by `train` and every gradient-based unlearning method.

An `Engine` owns the optimiser, the learning-rate schedule and mixed precision; callers give it
batches and a loss function `loss_fn(batch) -> scalar`. REM's repair step (three forward passes)
and plain cross-entropy training go through the same `run_epoch`, so AMP, step counting and
timing behave identically everywhere.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from remcli.data.pipeline import Batch
from remcli.distributed import DataParallel, shared_batch
from remcli.errors import InputError
from remcli.progress import NullReporter


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA, then MPS, then CPU; `cuda:N` picks one GPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, sep, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (sep and (kind != "cuda" or not index.isdigit())):
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name} was asked for but no CUDA GPU is visible; use --device auto or cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise InputError(
            f"--device {name}: only {torch.cuda.device_count()} CUDA GPU(s) are visible (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps was asked for but MPS is not available; use --device auto or cpu")
    return torch.device(name)


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX-BF16 flags).

    Elsewhere bf16 on the CPU is emulated and slower than fp32, so `auto` stays fp32 there.
    `cpuinfo` is the text of /proc/cpuinfo (read when not given; absent off Linux).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return False
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.partition(":")[2].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


PRECISIONS = ("fp32", "bf16", "fp16")  # and "auto"


def resolve_precision(name: str, device: torch.device, cpu_bf16: bool | None = None) -> str:
    """`auto` = bf16 autocast on CUDA, and on CPUs with native bf16 (AVX512-BF16/AMX); fp32 elsewhere.
    `fp32` always forces fp32. `cpu_bf16` overrides the CPU check (tests)."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16"
        if device.type == "cpu":
            return "bf16" if (cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16) else "fp32"
        return "fp32"
    if name not in PRECISIONS:
        raise InputError(f"unknown precision {name!r}; use auto, fp32, bf16 or fp16")
    if name == "fp16" and device.type != "cuda":
        raise InputError("fp16 autocast needs CUDA; use bf16 or fp32 on this device")
    return name


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_batch_size(device: torch.device) -> int:
    """Rows per forward-only pass at the training precision (REM's reference and diagnostics, the
    accuracy checks of unlearning, training's validation). On CPUs 256 ran about a quarter more
    images/s than 1024 (the activations stay in cache) with bit-identical outputs; GPUs keep 1024."""
    return 256 if device.type == "cpu" else 1024


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The one mixed-precision context: nothing for fp32, else autocast to bf16 / fp16."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"  # sgd (CNNs, paper) or adam (ViTs, paper)
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 5e-4  # L2 in the loss, as in the paper (Adam, not AdamW)


OPTIMIZERS = ("sgd", "adam")


def make_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise InputError(f"unknown optimizer {cfg.name!r}; use sgd or adam")


def warmup_linear_decay(total_steps: int) -> Callable[[int], float]:
    """The benches' LR factor: warm-up over 1% of steps, then linear decay with horizon 1.25x,
    so the last step runs at about 0.2x the peak (the schedule of the REM paper's ResNet-9 training)."""
    warmup = max(total_steps // 100, 0)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, 1.0 - (step - warmup) / (1.25 * total_steps))

    return factor


@dataclass
class EpochStats:
    steps: int = 0
    samples: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.steps, 1)


class Engine:
    """Optimiser + schedule + autocast + step accounting for one model's training."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        precision: str = "fp32",
        schedule: Callable[[int], float] | None = None,
        reporter: NullReporter | None = None,
        group: DataParallel | None = None,
        synced_modules: Iterable[nn.Module] = (),
    ):
        """`group` (under torchrun): each step runs on this rank's share of the batch and sums the
        gradients across ranks; `synced_modules` get rank 0's buffers after every step."""
        self.optimizer = optimizer
        self.group = group
        self.synced_modules = tuple(synced_modules)
        self.device = device
        self.precision = precision
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule) if schedule else None
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.reporter = reporter or NullReporter()
        self.steps = 0  # optimiser steps taken, over the engine's life
        self.samples = 0

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def reset_optimizer_state(self) -> None:
        """Forget momentum / Adam moments, so one phase's updates do not leak into the next."""
        self.optimizer.state.clear()

    def step(self, loss: torch.Tensor | None, advance_schedule: bool = True, weight: float = 1.0) -> None:
        """Backward and one optimiser step. Under data parallel `loss` is the mean over this rank's
        share, `weight` the share's fraction of the global batch (None: an empty share)."""
        self.optimizer.zero_grad(set_to_none=True)
        if loss is not None:
            scaled = loss * weight if self.group is not None else loss
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        if self.group is not None:
            self.group.all_reduce_gradients(p for group in self.optimizer.param_groups for p in group["params"])
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.group is not None:
            self.group.broadcast_buffers(self.synced_modules)
        if self.scheduler is not None and advance_schedule:
            self.scheduler.step()
        self.steps += 1

    def run_epoch(
        self,
        batches: Iterable[Batch],
        loss_fn: Callable[[Batch], torch.Tensor],
        max_steps: int | None = None,
        advance_schedule: bool = True,
        stop: Callable[[], bool] | None = None,
    ) -> EpochStats:
        """One pass: loss_fn under autocast, backward, step. Stops early after `max_steps`, or
        as soon as `stop()` (asked after every step) returns True."""
        stats = EpochStats()
        start = time.perf_counter()
        losses = []
        for batch in batches:
            if max_steps is not None and stats.steps >= max_steps:
                break
            share, weight = shared_batch(self.group, batch)
            loss = None
            if share.labels.shape[0]:
                with self.autocast():
                    loss = loss_fn(share)
            self.step(loss, advance_schedule, weight)
            if self.group is None:
                losses.append(loss.detach())
            else:  # the global batch's mean loss, the same on every rank
                losses.append(self.group.sum(loss.detach() * weight if loss is not None else torch.zeros((), device=self.device)))
            stats.steps += 1
            stats.samples += int(batch.labels.shape[0])
            self.reporter.advance(1)
            if stop is not None and stop():
                break
        synchronize(self.device)
        stats.seconds = time.perf_counter() - start
        stats.loss_sum = float(torch.stack(losses).float().sum()) if losses else 0.0
        self.samples += stats.samples
        return stats

    def fit(
        self,
        model: nn.Module,
        epoch_batches: Callable[[], Iterable[Batch]],
        loss_fn: Callable[[Batch], torch.Tensor],
        epochs: int,
        name: str,
        steps_per_epoch: int | None = None,
        evaluate: Callable[[], dict] | None = None,
        set_mode: Callable[[nn.Module], None] | None = None,
    ) -> tuple[list[dict], float]:
        """The one fitting loop (training, retraining, fine-tuning baselines): `epochs` passes of
        `epoch_batches()` minimising `loss_fn`, each logged as {epoch, loss, **evaluate()} (evaluate
        runs in eval mode). `set_mode` (default `model.train()`) lets a method keep frozen parts
        in eval mode. Returns the per-epoch log and the seconds spent stepping; leaves the
        model in eval mode."""
        log, seconds = [], 0.0
        for epoch in range(1, epochs + 1):
            self.reporter.phase(f"{name} epoch {epoch}/{epochs}", steps_per_epoch)
            (set_mode or nn.Module.train)(model)
            stats = self.run_epoch(epoch_batches(), loss_fn)
            seconds += stats.seconds
            entry = {"epoch": epoch, "loss": round(stats.mean_loss, 5)}
            if evaluate is not None:
                model.eval()
                entry.update(evaluate())
            self.reporter.advance(0, **entry)
            log.append(entry)
        model.eval()
        return log, seconds


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable[Batch], precision: str = "fp32") -> torch.Tensor:
    """Predicted classes for every batch, in order (eval mode is the caller's choice)."""
    device = next(model.parameters()).device
    preds = []
    for batch in batches:
        with autocast(device, precision):
            logits = model(batch.inputs)
        preds.append(logits.argmax(dim=1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)
