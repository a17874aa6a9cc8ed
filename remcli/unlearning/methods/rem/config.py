"""REM's settings, validated on construction (`remcli.config`).

Four registered methods share them; each variant is a table of defaults over `REMConfig`
(`remcli.config.with_defaults`, the one pattern for variants):

* `rem` (the default): the research code's mechanism (batch-statistics BatchNorm, one optimiser
  across phases, gamma checked once per flush epoch, 1x1 bottleneck units) with a repair that does
  only the work its loss reads: the drop view on the identified rows only, the retain rows' NPO
  reference CE computed once instead of every step, a seeded `repair_fraction` of the retain rows
  per iteration; and it keeps the latest iterate tied with the best on the selection proxy
  (`keep=latest-tied`) rather than the best, which on a small selection set is often an early
  iterate that won by noise. Its cost and healing against `rem-full` are in docs/rem.md.
* `rem-full`: the research code's repair as written (`FULL`): the drop view over every batch, NPO
  on every row, the whole training set every iteration, every iteration run, the best-proxy
  iterate kept. It reproduces the earlier `rem` and its measured figures.
* `rem-redirect`: `rem-full` plus the five changes that make the redirect real (`REDIRECTING`): frozen
  BatchNorm, fresh optimiser state at each phase switch, gamma checked after every flush step,
  chained conv units, and a 10x learning rate for the new units. Its redirect view holds the
  identified set, but on the memorising CPU profile it healed less than the research mechanism
  (docs/results-cpu.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from remcli.config import with_defaults
from remcli.errors import InputError
from remcli.unlearning.losses import REMOVALS
from remcli.unlearning.methods.rem.expansion import UNIT_KINDS
from remcli.unlearning.selection import KEEP_RULES, SELECT_ON
from remcli.unlearning.training import BudgetSettings, OptimiserSettings

BN_POLICIES = ("frozen", "batch")
FLUSH_STOPS = ("step", "epoch")
DROP_VIEWS = ("identified", "batch")
RETAIN_LOSSES = ("npo-cached", "npo", "ce")
IDENTIFIED_WEIGHTS = ("fraction", "one")
REDIRECTING_FIT = 0.8  # the redirect view must still fit this much of the identified set
FULL = {"drop_view": "batch", "retain_loss": "npo", "repair_fraction": 1.0, "patience": 0, "bn_recalibration": 0, "keep": "best"}
REDIRECTING = {"bn": "frozen", "fresh_optimizer": True, "flush_stop": "step", "units": "conv", "new_units_lr_scale": 10.0}


@dataclass
class REMConfig(BudgetSettings, OptimiserSettings):
    CHOICES = {
        **OptimiserSettings.CHOICES,
        "flush_stop": FLUSH_STOPS,
        "removal": REMOVALS,
        "retain_loss": RETAIN_LOSSES,
        "drop_view": DROP_VIEWS,
        "identified_weight": IDENTIFIED_WEIGHTS,
        "bn": BN_POLICIES,
        "units": UNIT_KINDS,
        "flush": ("npo", "ga"),
        "select_on": SELECT_ON,
        "keep": KEEP_RULES,
    }

    # epochs (10): outer iterations; each = flush-until-gamma + one repair epoch over D_tr
    lr: float | None = None  # None: 0.005 (SGD, CNNs) or 2e-5 (Adam, ViTs), the paper's values
    optimizer: str | None = None  # None: sgd for CNNs, adam for ViTs
    beta: float = 1.0  # NPO inverse temperature
    gamma: float = 0.2  # flush until identified-set accuracy (corrupted labels) <= gamma
    flush_max_epochs: int = 100  # cap per outer iteration
    flush_stop: str = "epoch"  # epoch: check gamma once per flush epoch (research code); step: after every flush step
    bn: str = "batch"  # batch: batch statistics, running statistics updated (research code); frozen: running statistics, never updated
    fresh_optimizer: bool = False  # True: clear optimiser state (momentum) at each flush/repair switch
    units: str = "bottleneck"  # bottleneck: 1x1 read -> ReLU -> 1x1 write beside each target; conv: chained kxk channels + BatchNorm
    capacity: float = 1.0  # new units per target, as a multiple of its width (paper: 1.0)
    kernel_size: int = 3  # conv units' spatial kernel
    chain: bool = True  # conv units also read the previous target's new channels
    silent_write: bool = True  # conv and linear units' writes start at zero; bottleneck units always start with a random write
    new_units_lr_scale: float = 1.0  # the new units' lr as a multiple of lr (rem-redirect: 10, they learn from scratch)
    mask_density: float = 0.2  # Bernoulli rate of each sample's mask over the new units
    targets: tuple[str, ...] | None = None  # module names; None = the arch's defaults
    redirect: bool = True  # False: --no-redirect ablation (fit in the drop view, no new units used)
    continued_removal: bool = True  # False: --no-continued-removal ablation
    removal: str = "npo"  # npo: every identified row (research code); while-preferred: rows the drop view still predicts as labelled
    flush: str = "npo"  # "ga": gradient-ascent flush (the rem-ga ablation)
    select_on: str = "auto"  # auto (validation if recorded, else retain), validation, retain
    keep: str = "latest-tied"  # the latest iterate within one standard error of the best proxy (selection.py); best: the
    # best-proxy iterate (the input model counts; the paper's, rem-full's); last: the final iterate
    diagnostic_samples: int = 64  # retain samples (fixed, seeded) in the per-iteration diagnostics (measurements only)
    # what a repair step computes, and how many steps (method.py's docstring; FULL = the research code)
    drop_view: str = "identified"  # identified: drop view on identified rows only (running statistics); batch: every row, batch statistics
    retain_loss: str = "npo-cached"  # NPO against the reference's CE, cached once per image; npo: live every step; ce: plain CE
    repair_fraction: float = 0.35  # retain rows repaired per iteration (seeded; every identified row always)
    identified_weight: str = "fraction"  # fraction: identified rows' terms x repair_fraction (a full epoch's batch mix); one: unscaled
    patience: int = 0  # stop after this many iterations in which the keep rule kept none (keep=best: none better); 0: run every iteration
    budget: float | None = None  # cap on sample-passes as a fraction of the recorded training run; sets repair_fraction
    bn_recalibration: int = 256  # retain samples that re-estimate BatchNorm statistics after each phase (drop_view=identified)
    bn_recalibration_augment: bool = True  # augment them as in training (non-augmented statistics cost ~1 point of accuracy)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patience > 0 and self.keep == "last":
            raise InputError(
                f"patience={self.patience} stops once the keep rule has kept no iterate for that many, and keep=last keeps every one; "
                "use keep=best or latest-tied, or patience=0"
            )


REMFullConfig = with_defaults(REMConfig, "REMFullConfig", FULL)  # `rem-full`: the research code's repair, every row, every iteration
REMRedirectConfig = with_defaults(REMFullConfig, "REMRedirectConfig", REDIRECTING)  # `rem-redirect`: `rem-full` redirecting for real
REMGAConfig = with_defaults(REMConfig, "REMGAConfig", {"flush": "ga"})  # `rem-ga`: a gradient-ascent flush
