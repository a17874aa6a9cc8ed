"""REM's settings: every mechanism choice is a setting whose old value reproduces the earlier REM
(rem@legacy = bn=batch, fresh_optimizer=false, flush_stop=epoch, units=bottleneck,
new_units_lr_scale=1). Validated on construction (`remcli.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from remcli.config import Settings
from remcli.engine import OPTIMIZERS
from remcli.unlearning.methods.rem.expansion import UNIT_KINDS
from remcli.unlearning.selection import SELECT_ON

BN_POLICIES = ("frozen", "batch")
FLUSH_STOPS = ("step", "epoch")
REDIRECTING_FIT = 0.8  # the redirect view must still fit this much of the identified set


@dataclass
class REMConfig(Settings):
    CHOICES = {
        "optimizer": OPTIMIZERS,
        "flush_stop": FLUSH_STOPS,
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
    flush_stop: str = "step"  # step: check gamma after every flush step; epoch: once per flush epoch (research code)
    bn: str = "frozen"  # frozen: running statistics used and never updated; batch: the research code's
    fresh_optimizer: bool = True  # clear optimiser state (momentum) at each flush/repair switch
    units: str = "conv"  # conv: chained kxk channels + BatchNorm; bottleneck: 1x1 side branch (earlier design)
    capacity: float = 1.0  # new units per target, as a multiple of its width (paper: 1.0)
    kernel_size: int = 3  # conv units' spatial kernel
    chain: bool = True  # conv units also read the previous target's new channels
    silent_write: bool = True  # new units' writes start at zero (the redirect view starts as the input model)
    new_units_lr_scale: float = 10.0  # the new units learn from scratch: their lr is this multiple of lr
    mask_density: float = 0.2  # Bernoulli rate of each sample's mask over the new units
    targets: tuple[str, ...] | None = None  # module names; None = the arch's defaults
    redirect: bool = True  # False: --no-redirect ablation (fit in the drop view, no new units used)
    continued_removal: bool = True  # False: --no-continued-removal ablation
    flush: str = "npo"  # "ga": gradient-ascent flush (the rem-ga ablation)
    select_on: str = "auto"  # auto (validation if recorded, else retain), validation, retain
    keep: str = "best"  # best: the best-proxy iterate (the input model included, as in the paper); last: the final iterate
    diagnostic_samples: int = 256  # retain samples (fixed, seeded) in the per-iteration diagnostics


@dataclass
class REMGAConfig(REMConfig):
    flush: str = "ga"
