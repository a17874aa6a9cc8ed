"""REM, the whole method in one folder: `config` (settings), `expansion` (the new units and the
drop / redirect views), `masks` (per-sample masks as a pure function of seed and id), `method`
(flush, repair, selection), `batchnorm` (which statistics each view uses, and their recalibration),
`budget` (compute in sample-passes) and `diagnostics` (is it redirecting?). Importing it registers
`rem`, `rem-full` (the research code's repair, `config.FULL`), `rem-redirect` (the redirecting
mechanism, `config.REDIRECTING`) and the `rem-ga` ablation."""

from remcli.unlearning.base import register_method
from remcli.unlearning.methods.rem.config import REMConfig, REMFullConfig, REMGAConfig, REMRedirectConfig
from remcli.unlearning.methods.rem.method import rem

_FULL = dict(
    data="identified set (flush) + whole training set (repair)",
    budget="{epochs} outer iterations: flush-until-gamma + 1 repair epoch each",
    cost="~60-70% (measured at the paper's budgets, bf16 CPU)",
    data_parallel=True,
)
_LEAN = dict(
    data="identified set (flush) + a seeded part of the training set (repair)",
    budget="{epochs} outer iterations: flush-until-gamma + 1 repair epoch on the identified rows and {repair_fraction:g} of the rest",
    cost="~18% (measured at the paper's budgets, bf16 CPU; --budget F caps it)",
    data_parallel=True,
)
register_method("rem", REMConfig, "REM: add units, redirect identified samples into them via one shared mask, NPO removal, drop units", **_LEAN)(rem)
register_method(
    "rem-full",
    REMFullConfig,
    "REM with the research code's repair: drop view on every row, NPO on every row, whole training set every iteration",
    **_FULL,
)(rem)
register_method(
    "rem-redirect",
    REMRedirectConfig,
    "REM with the redirect made real: frozen BatchNorm, fresh optimiser per phase, per-step flush stop, chained conv units",
    **_FULL,
)(rem)
register_method("rem-ga", REMGAConfig, "REM ablation with a gradient-ascent flush instead of NPO", **_LEAN)(rem)

__all__ = ["REMConfig", "REMFullConfig", "REMGAConfig", "REMRedirectConfig", "rem"]
