"""REM's settings, validated on construction (`remcli.config`).

Two registered methods share them. `rem` (the default) runs the research code's mechanism:
batch-statistics BatchNorm, one optimiser across phases, gamma checked once per flush epoch, and
1x1 bottleneck units. `rem-redirect` runs the five changes that make the redirect real
(`REDIRECTING`): frozen BatchNorm, fresh optimiser state at each phase switch, gamma checked after
every flush step, chained conv units, and a 10x learning rate for the new units. Its redirect view
holds the identified set (0.93 of it at the last iteration, against 0.44 for `rem`), but on the
memorising CPU profile it healed less: utility x healed 4.8 +/- 1.4 points below `rem`, paired over
27 cells of three seeds (docs/results-cpu.md). Added to `rem` one at a time, the conv units at 10x lr
leave utility x healed where it was (-0.8 +/- 1.0, 27 pairs) and fresh optimiser state lowers it
(-3.9 +/- 1.1, 27 pairs). Continued removal only on rows the drop view still predicts as labelled
(`removal="while-preferred"`), with the conv units, mends their interclass failure at full discovery
but is level pooled (-0.1 +/- 0.8, 27 pairs). So the default is the mechanism that heals best there;
every change stays one setting away.
"""

from __future__ import annotations

from dataclasses import dataclass

from remcli.config import Settings
from remcli.engine import OPTIMIZERS
from remcli.unlearning.methods.rem.expansion import UNIT_KINDS
from remcli.unlearning.selection import SELECT_ON

BN_POLICIES = ("frozen", "batch")
FLUSH_STOPS = ("step", "epoch")
REMOVALS = ("npo", "while-preferred")
REDIRECTING_FIT = 0.8  # the redirect view must still fit this much of the identified set
REDIRECTING = {"bn": "frozen", "fresh_optimizer": True, "flush_stop": "step", "units": "conv", "new_units_lr_scale": 10.0}


@dataclass
class REMConfig(Settings):
    CHOICES = {
        "optimizer": OPTIMIZERS,
        "flush_stop": FLUSH_STOPS,
        "removal": REMOVALS,
        "bn": BN_POLICIES,
        "units": UNIT_KINDS,
        "flush": ("npo", "ga"),
        "select_on": SELECT_ON,
        "keep": ("best", "last"),
    }

    epochs: int = 10  # outer iterations; each = flush-until-gamma + one repair epoch over D_tr
    lr: float | None = None  # None: 0.005 (SGD, CNNs) or 2e-5 (Adam, ViTs), the paper's values
    optimizer: str | None = None  # None: sgd for CNNs, adam for ViTs
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 512
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
    silent_write: bool = True  # new units' writes start at zero (the redirect view starts as the input model)
    new_units_lr_scale: float = 1.0  # the new units' lr as a multiple of lr (rem-redirect: 10, they learn from scratch)
    mask_density: float = 0.2  # Bernoulli rate of each sample's mask over the new units
    targets: tuple[str, ...] | None = None  # module names; None = the arch's defaults
    redirect: bool = True  # False: --no-redirect ablation (fit in the drop view, no new units used)
    continued_removal: bool = True  # False: --no-continued-removal ablation
    removal: str = "npo"  # npo: every identified row (research code); while-preferred: rows the drop view still predicts as labelled
    flush: str = "npo"  # "ga": gradient-ascent flush (the rem-ga ablation)
    select_on: str = "auto"  # auto (validation if recorded, else retain), validation, retain
    keep: str = "best"  # best: the best-proxy iterate (the input model included, as in the paper); last: the final iterate
    diagnostic_samples: int = 256  # retain samples (fixed, seeded) in the per-iteration diagnostics


@dataclass
class REMRedirectConfig(REMConfig):
    """`rem-redirect`: REM with the five changes that make the redirect real (`REDIRECTING`)."""

    flush_stop: str = REDIRECTING["flush_stop"]
    bn: str = REDIRECTING["bn"]
    fresh_optimizer: bool = REDIRECTING["fresh_optimizer"]
    units: str = REDIRECTING["units"]
    new_units_lr_scale: float = REDIRECTING["new_units_lr_scale"]


@dataclass
class REMGAConfig(REMConfig):
    flush: str = "ga"
