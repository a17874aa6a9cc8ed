"""One settings grammar and validation inside the config objects: `unlearn --set`, `sweep --set`
and the Python API give the same typed values and refuse the same values with the same message."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from remcli.cli.main import app
from remcli.config import RANGES, check_settings
from remcli.errors import InputError
from remcli.settings import parse_settings
from remcli.sweep.grid import method_overrides, parse_method_settings
from remcli.train import TrainConfig
from remcli.unlearning import get_method, list_methods
from remcli.unlearning.ascent import AscentConfig
from remcli.unlearning.base import build_config
from remcli.unlearning.methods.potion import PotionConfig
from remcli.unlearning.methods.rem import REMConfig
from remcli.unlearning.methods.salun import SalUnConfig

runner = CliRunner()
PAIRS = ["redirect=false", "epochs=3", "lr=0.5", "lr=none", "targets=conv1,res1", "units=bottleneck", "capacity=2", "keep=last"]


def test_unlearn_and_sweep_parse_the_same_strings_to_the_same_values():
    through_unlearn = parse_settings(PAIRS, "--set")
    through_sweep = method_overrides(parse_method_settings([f"rem.{pair}" for pair in PAIRS])["rem"])  # as stored, then as the config gets it
    assert through_unlearn == through_sweep
    assert through_unlearn == {
        "redirect": False,
        "epochs": 3,
        "lr": None,
        "targets": ("conv1", "res1"),
        "units": "bottleneck",
        "capacity": 2,
        "keep": "last",
    }
    cfg = build_config(get_method("rem"), through_unlearn)
    assert cfg.redirect is False and cfg.targets == ("conv1", "res1") and cfg.lr is None


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: REMConfig(mask_density=1.7), "mask_density must be in (0, 1] (got 1.7)"),
        (lambda: REMConfig(redirect="false"), "setting redirect='false' must be bool"),
        (lambda: REMConfig(units="huge"), "units 'huge' is not valid; use conv or bottleneck"),
        (lambda: REMConfig(kernel_size=2), "kernel_size must be a positive odd number"),
        (lambda: TrainConfig(epochs=0), "epochs must be >= 1 (got 0)"),
        (lambda: TrainConfig(optimizer="rmsprop"), "optimizer 'rmsprop' is not valid; use sgd or adam"),
        (lambda: TrainConfig(precision="fp8"), "precision 'fp8' is not valid"),
        (lambda: TrainConfig(val_fraction=1.0), "val_fraction must be in [0, 1)"),
        (lambda: SalUnConfig(variant="new"), "variant 'new' is not valid; use original or rem-code"),
        (lambda: SalUnConfig(mask_fraction=0), "mask_fraction must be in (0, 1]"),
        (lambda: PotionConfig(rho=1.5), "rho must be in [0, 1]"),
        (lambda: PotionConfig(step_mult=1.0), "step_mult must be > 1"),
        (lambda: AscentConfig(select_on="test"), "select_on 'test' is not valid"),
        (lambda: AscentConfig(momentum=1.0), "momentum must be in [0, 1)"),
    ],
)
def test_the_python_api_refuses_invalid_values(make, needle):
    with pytest.raises(InputError) as err:
        make()
    assert needle in str(err.value)


def test_every_registered_method_validates_on_construction():
    for info in list_methods():
        cfg = info.config_cls()
        check_settings(cfg)  # the defaults are valid
        numeric = [f.name for f in dataclasses.fields(cfg) if str(f.type).split(" |")[0] in ("int", "float")]
        assert not [name for name in numeric if name not in RANGES], f"{info.name}: numeric settings without a range"
        enumerated = [f.name for f in dataclasses.fields(cfg) if str(f.type).startswith("str")]
        assert not [name for name in enumerated if name not in info.config_cls.CHOICES], f"{info.name}: text settings without a closed set"


def test_cli_and_api_give_the_same_message(tmp_path):
    with pytest.raises(InputError) as err:
        REMConfig(mask_density=1.7)
    result = runner.invoke(
        app, ["unlearn", "missing.safetensors", "--forget", "f.txt", "--set", "mask_density=1.7", "--out", str(tmp_path / "o.safetensors")]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: method rem: {err.value}"
