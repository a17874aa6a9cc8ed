"""REM's compute accounting, in sample-passes, and the `budget` that caps it.

A sample-pass is one image's forward and backward, a training step's work per image; a forward
without backward (reference, measurements, BatchNorm recalibration) counts `FORWARD_ONLY` = 1/3 of
one, its share of the arithmetic (the backward costs about two forwards). `budget` caps the compute
at a fraction of the checkpoint's recorded training (epochs x training images) and picks the repair
fraction to fit; the log records what was spent (`compute`)."""

from __future__ import annotations

from remcli.errors import InputError
from remcli.unlearning.base import UnlearnTask
from remcli.unlearning.methods.rem.config import REMConfig

FORWARD_ONLY = 1 / 3  # a forward without backward, in sample-passes (module docstring)


def training_passes(task: UnlearnTask) -> int | None:
    """Sample-passes of the recorded training run (epochs x training images), if it was recorded."""
    epochs = task.train_params.get("epochs")
    return int(epochs) * len(task.train_positions) if isinstance(epochs, int) and epochs > 0 else None


class Compute:
    """The sample-passes a run has spent (`spent`, which the run adds to as it works) and what one
    iteration is expected to cost, from the sizes fixed before the first: the identified and retain
    rows, the recalibration samples and the images each measurement passes."""

    def __init__(self, task: UnlearnTask, cfg: REMConfig, recalibration: int, measure: int, spent: float):
        self.cfg = cfg
        self.identified, self.retain = len(task.forget_view), len(task.retain_view)
        self.recalibration, self.measure = recalibration, measure
        self.training = training_passes(task)
        self.spent = spent

    def iteration(self, fraction: float) -> float:
        """Sample-passes one iteration is expected to cost at `fraction` (a flush of one epoch)."""
        cfg, n_id, n_retain = self.cfg, self.identified, self.retain
        whole_drop = cfg.drop_view == "batch" and cfg.bn == "batch"
        per_retain = 1 + FORWARD_ONLY * (cfg.retain_loss == "npo") + whole_drop  # npo-cached: paid once, before the first iteration
        per_identified = 1 + FORWARD_ONLY + (not whole_drop)  # fit, live reference, drop view on the row alone
        flush = n_id * (1 + 2 * FORWARD_ONLY)  # one epoch: forward-backward, reference, accuracy check
        recalibration = 2 * self.recalibration
        return fraction * n_retain * per_retain + n_id * per_identified + flush + FORWARD_ONLY * (recalibration + self.measure)

    def repair_fraction(self) -> float:
        """`repair_fraction`, or with a `budget` the largest fraction whose iterations fit it."""
        cfg = self.cfg
        if cfg.budget is None:
            return cfg.repair_fraction
        if self.training is None:
            raise InputError(
                "--budget is a fraction of the recorded training run, and this checkpoint records no training epochs; set repair_fraction instead"
            )
        one_off = self.spent + FORWARD_ONLY * self.measure  # so far + iteration 0's measurement
        per_iteration = (cfg.budget * self.training - one_off) / cfg.epochs
        fixed = self.iteration(0.0)
        full = self.iteration(1.0) - fixed
        fraction = min(1.0, (per_iteration - fixed) / full) if full > 0 else 1.0
        smallest = min(1.0, cfg.batch_size / max(self.retain, 1))
        if fraction < smallest:
            needed = (one_off + cfg.epochs * self.iteration(smallest)) / self.training
            raise InputError(
                f"--budget {cfg.budget:g} is too small for {cfg.epochs} iterations on this data: "
                f"at least {needed:.3f} is needed; raise it or lower --epochs"
            )
        return fraction

    def fits_another(self, fraction: float) -> bool:
        """Whether one more iteration at `fraction` fits the budget (always, without one)."""
        if self.cfg.budget is None:
            return True
        return self.spent + self.iteration(fraction) <= self.cfg.budget * self.training * (1 + 1e-9)

    def record(self, fraction: float) -> dict:
        spent = {"sample_passes": int(round(self.spent)), "repair_fraction": round(fraction, 5)}
        if self.training is not None:
            spent["training_sample_passes"] = self.training
            spent["fraction_of_training"] = round(self.spent / self.training, 5)
        return spent
