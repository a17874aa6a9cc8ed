"""The one table of recipe defaults: which optimiser a model family trains with, and the step sizes
that go with each optimiser for training and for unlearning.

Train, retrain, REM and the help text all read it, so a default is changed here or nowhere.
Values are the REM paper's: SGD 0.025 for CNNs and Adam 1e-4 for transformers when
training; REM's 0.005 (SGD) and 2e-5 (Adam) when unlearning.
"""

from __future__ import annotations

from remcli.models.registry import arch_family

FAMILY_OPTIMIZER = {"cnn": "sgd", "transformer": "adam"}
TRAIN_LR = {"sgd": 0.025, "adam": 1e-4}
UNLEARN_LR = {"sgd": 0.005, "adam": 2e-5}


def default_optimizer(arch: str) -> str:
    """SGD for convolutional nets, Adam for transformers (ViTs, Swin, timm's fixed-size models)."""
    return FAMILY_OPTIMIZER[arch_family(arch)]


def train_lr(optimizer: str) -> float:
    return TRAIN_LR[optimizer]


def unlearn_lr(optimizer: str) -> float:
    return UNLEARN_LR[optimizer]


def describe_train_lr() -> str:
    """Help text: 'Default 0.025 (SGD) or 0.0001 (Adam)'."""
    return "Default " + " or ".join(f"{lr:g} ({name.upper() if name == 'sgd' else name.title()})" for name, lr in TRAIN_LR.items())
