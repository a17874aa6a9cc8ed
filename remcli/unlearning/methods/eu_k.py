"""EU-k (Goel et al. 2022): re-initialise the last k blocks, then train them on the retain set.

Same split as cf-k (generic blocks, frozen eval-mode prefix); the head's initialisers are re-run
with a seed derived from --seed. k = -1 re-initialises every block (close to retrain, but with
the cf-k budget). Keeps the last iterate.
"""

from __future__ import annotations

from dataclasses import dataclass

from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.methods.cf_k import CFKConfig, train_last_blocks


@dataclass
class EUKConfig(CFKConfig):
    pass


@register_method(
    "eu-k",
    EUKConfig,
    "Re-initialise the last k blocks and train them on the retain set",
    data="retain set",
    budget="{epochs} epochs, lr {lr:g}, k={k}",
    cost="~10-20%",
)
def eu_k(task: UnlearnTask, cfg: EUKConfig) -> MethodResult:
    return train_last_blocks(task, cfg, "eu-k", reinit=True)
