"""`remcli train`: train a classifier on a (possibly corrupted) dataset, from scratch or from an init.

Defaults follow the REM paper's CIFAR-10 recipe: SGD momentum 0.9, weight decay
5e-4, batch 512, lr 0.025 with 1% warm-up then linear decay (Adam 1e-4, constant, for ViTs);
random crop + flip. A validation split is held out and recorded; nothing looks at the test set.

`init` fine-tunes instead: training starts from another checkpoint's weights (the way practitioners
start from a pretrained backbone). Its path and sha256 are recorded in the history, so `unlearn
--method retrain` can restart from the same init and refuse one that changed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from remcli.checkpoints import check_init_arch, history_entry, load_checkpoint, load_init_weights, read_metadata
from remcli.config import Settings
from remcli.data.datasets import Dataset
from remcli.data.manifest import Manifest
from remcli.data.pipeline import training_batch_bounds
from remcli.data.views import clean_view, training_view, validation_split
from remcli.distributed import DataParallel, sync_batchnorm
from remcli.engine import (
    OPTIMIZERS,
    PRECISIONS,
    Engine,
    OptimConfig,
    inference_batch_size,
    make_optimizer,
    predict,
    resolve_device,
    resolve_precision,
    synchronize,
    warmup_linear_decay,
)
from remcli.errors import InputError
from remcli.models import build_model, input_spec, model_channels, resolve_arch_kwargs
from remcli.models.recipes import default_optimizer, train_lr
from remcli.progress import NullReporter
from remcli.seeding import generator, seeded_global_rng


@dataclass
class TrainConfig(Settings):
    """The training recipe (`remcli train`'s options); defaults are the paper's, per model family."""

    CHOICES = {"optimizer": OPTIMIZERS, "precision": ("auto", *PRECISIONS)}

    arch: str = "resnet9"
    arch_kwargs: dict = field(default_factory=dict)
    epochs: int = 40  # the paper's 4000 steps at batch 512 on CIFAR-10 are ~41 epochs
    batch_size: int = 512
    lr: float | None = None  # None: 0.025 (SGD) or 1e-4 (Adam, ViTs)
    optimizer: str | None = None  # None: sgd for CNNs, adam for ViTs
    weight_decay: float = 5e-4
    val_fraction: float = 0.05
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    init: str | None = None  # a checkpoint of the same arch to fine-tune from; None: a fresh initialisation

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init is not None:
            check_init_arch(self.init, read_metadata(self.init).get("arch"), self.arch)  # header only: the weights load in train_model()

    def optim(self) -> OptimConfig:
        name = self.optimizer or default_optimizer(self.arch)
        return OptimConfig(name=name, lr=self.lr if self.lr is not None else train_lr(name), weight_decay=self.weight_decay)


@dataclass
class TrainResult:
    """What `train_model()` made: the model, the metadata to save it with, and its summary."""

    model: nn.Module
    meta: dict  # checkpoint metadata (history included)
    summary: dict  # what the CLI prints / --json emits


def model_metadata(
    arch: str, arch_kwargs: dict, dataset: Dataset, corruption_sha256: str | None, corruption_path: str | None, validation: dict, history: list[dict]
) -> dict:
    return {
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "num_classes": dataset.num_classes,
        "input_shape": list(dataset.input_shape),
        "mean": list(dataset.mean),
        "std": list(dataset.std),
        "dataset": dataset.spec,
        "dataset_fingerprint": dataset.fingerprint,
        **({"dataset_content_sha256": dataset.content_sha256} if dataset.content_sha256 else {}),
        "classes": list(dataset.classes),
        "corruption_sha256": corruption_sha256 or "",
        "corruption_path": corruption_path or "",
        "validation": validation,
        "history": history,
    }


def train_model(
    dataset: Dataset,
    cfg: TrainConfig,
    manifest: Manifest | None = None,
    corruption_sha256: str | None = None,
    corruption_path: str | None = None,
    reporter: NullReporter | None = None,
    group: DataParallel | None = None,
    sync_bn: bool = False,
) -> TrainResult:
    """Train `cfg.arch` on `dataset`. `group` (under torchrun, remcli.distributed): data-parallel,
    every rank returns the same model; `sync_bn` computes BatchNorm statistics over the global batch (CUDA)."""
    reporter = reporter or NullReporter()
    device = resolve_device(cfg.device) if group is None else group.device(resolve_device(cfg.device))
    if sync_bn and group is None:
        raise InputError("--sync-bn only applies under torchrun (several data-parallel processes); drop it for a single process")
    precision = resolve_precision(cfg.precision, device)
    arch_kwargs = resolve_arch_kwargs(cfg.arch, dataset.input_shape[-1], cfg.arch_kwargs)
    with seeded_global_rng(cfg.seed, "train/init"):
        model = build_model(cfg.arch, dataset.num_classes, model_channels(cfg.arch, dataset.input_shape[0]), dataset.input_shape[-1], **arch_kwargs)
    init = None
    if cfg.init is not None:
        source = load_checkpoint(cfg.init)
        fresh = load_init_weights(model, source, cfg.arch)
        init = {"path": str(Path(cfg.init).resolve()), "sha256": source.sha256, "num_classes": source.num_classes, "reinitialised": fresh}
        if fresh:
            reporter.note(
                f"--init {cfg.init} has {source.num_classes} classes, the data {dataset.num_classes}: the classifier ({', '.join(fresh)}) starts "
                "freshly initialised, every other layer from the init"
            )
        del source
    model = model.to(device).to(memory_format=torch.channels_last)
    if group is not None:
        group.broadcast_model(model)  # built from the same seed on every rank; rank 0's weights make sure
    if sync_bn:
        model = sync_batchnorm(model, device)

    held_out = validation_split(dataset, manifest, cfg.val_fraction, cfg.seed)
    view = training_view(dataset, manifest, held_out, device)
    val_view = clean_view(dataset.train, held_out, device) if len(held_out) else None
    spec = input_spec(dataset, cfg.arch)
    steps_per_epoch = len(training_batch_bounds(len(view), cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    optim = cfg.optim()
    schedule = warmup_linear_decay(total_steps) if optim.name == "sgd" else None
    engine = Engine(make_optimizer(model.parameters(), optim), device, precision, schedule, reporter, group, (model,))
    batch_order = generator(cfg.seed, "train/batches", device)

    def loss_fn(batch):
        return F.cross_entropy(model(batch.inputs), batch.labels)

    def validation_accuracy() -> dict:
        preds = predict(model, val_view.batches(spec, inference_batch_size(device)), precision)
        return {"val_acc": round(float((preds == val_view.labels).float().mean()), 5)}

    start = time.perf_counter()
    epochs_log, train_seconds = engine.fit(
        model,
        lambda: view.batches(spec, cfg.batch_size, batch_order, augment=True),
        loss_fn,
        cfg.epochs,
        "train",
        steps_per_epoch,
        validation_accuracy if val_view is not None else None,
    )
    synchronize(device)
    wall = time.perf_counter() - start

    summary = {
        "arch": cfg.arch,
        "epochs": cfg.epochs,
        "steps": engine.steps,
        "train_samples": len(view),
        "validation_samples": len(held_out),
        "final_loss": epochs_log[-1]["loss"] if epochs_log else None,
        "val_acc": epochs_log[-1].get("val_acc") if epochs_log else None,
        "images_per_s": round(engine.samples / train_seconds, 1) if train_seconds else None,
        "wall_time_s": round(wall, 3),
        "device": str(device),
        "precision": precision,
        "epoch_log": epochs_log,
        **({"init": init} if init else {}),
    }
    params = {**asdict(cfg), "arch_kwargs": arch_kwargs, "optimizer": optim.name, "lr": optim.lr, "init": init["path"] if init else None}
    params["precision"] = precision  # what ran (bf16, fp32...), not the "auto" that chose it: this machine's choice, not every machine's
    history = [
        history_entry(
            "train",
            params,
            cfg.seed,
            wall,
            str(device),
            init["sha256"] if init else None,
            steps=engine.steps,
            images_per_s=summary["images_per_s"],
            corruption_sha256=corruption_sha256,
            **({"init": init} if init else {}),
            **({"data_parallel": {"world_size": group.world_size, "sync_bn": sync_bn}} if group is not None else {}),
        )
    ]
    validation = {"seed": cfg.seed, "fraction": cfg.val_fraction, "indices": held_out.tolist()}
    meta = model_metadata(cfg.arch, arch_kwargs, dataset, corruption_sha256, corruption_path, validation, history)
    return TrainResult(model=model, meta=meta, summary=summary)
