"""The REM paper's Ascent / NPO protocol (the `ga` and `npo` methods): one identified-set epoch at
a time until its accuracy on the corrupted labels is <= gamma, keeping the best iterate by the
selection proxy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from remcli.data.pipeline import Batch
from remcli.seeding import generator
from remcli.unlearning.base import UnlearnTask
from remcli.unlearning.selection import SELECT_ON, ProxySelection
from remcli.unlearning.training import OptimiserSettings, make_engine


@dataclass
class AscentConfig(OptimiserSettings):
    """The REM paper's Ascent / NPO protocol: one identified-set epoch at a time until gamma."""

    CHOICES = {**OptimiserSettings.CHOICES, "select_on": SELECT_ON}

    lr: float = 0.005
    batch_size: int = 512
    gamma: float = 0.2  # stop once identified-set accuracy (corrupted labels) <= gamma
    max_epochs: int = 100  # hard cap (the research code had none: its step counter did not advance)
    select_on: str = "auto"


def ascend_until(task: UnlearnTask, cfg: AscentConfig, loss_fn: Callable[[Batch], torch.Tensor], name: str) -> tuple[int, dict]:
    """Epochs of `loss_fn` over the identified set until its accuracy <= gamma or `max_epochs`;
    keeps the best iterate by the proxy (the input model itself is a candidate)."""
    model = task.model
    selection = ProxySelection(task, model, cfg.gamma, cfg.select_on)
    engine = make_engine(task, model.parameters(), cfg.optim(), synced_modules=(model,))
    order = generator(task.seed, f"unlearn/{name}/batches", task.device)
    epochs = [{"epoch": 0, **selection.consider(0)}]
    task.reporter.phase(f"{name}: ascend until forget acc <= {cfg.gamma}", None)
    epoch = 0
    while epochs[-1]["forget_acc"] > cfg.gamma and epoch < cfg.max_epochs:
        epoch += 1
        model.train()
        stats = engine.run_epoch(task.forget_view.batches(task.spec, cfg.batch_size, order, augment=True), loss_fn)
        entry = {"epoch": epoch, "loss": round(stats.mean_loss, 5), **selection.consider(epoch)}
        task.reporter.advance(0, forget_acc=entry["forget_acc"], proxy=entry["proxy"])
        epochs.append(entry)
    selection.restore_kept()
    model.eval()
    log = {
        "select_on": selection.select_on,
        "best_epoch": selection.best_iteration,
        "best_proxy": round(selection.best_proxy, 5),
        "stopped": "gamma reached" if epochs[-1]["forget_acc"] <= cfg.gamma else "max_epochs",
        "epochs": epochs,
    }
    return engine.steps, log
