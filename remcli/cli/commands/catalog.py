"""`remcli methods` and `remcli archs`: what the registries hold."""

from __future__ import annotations

import dataclasses
import importlib.util

from rich.table import Table

from remcli.cli.options import JsonOpt
from remcli.cli.output import emit_json, stdout_console
from remcli.models import list_archs
from remcli.models.registry import TIMM_EXTRA
from remcli.sweep.entries import DETECT_DEFAULTS, DETECT_PREFIX, SYMPTOM_PREFIXES
from remcli.unlearning import list_methods


def methods_command(json_out: JsonOpt = None) -> None:
    """List every unlearning method: what it does, its data, default budget, cost vs retrain, and
    whether it runs data-parallel under torchrun."""
    rows = [
        {
            "name": m.name,
            "summary": m.summary,
            "data": m.data,
            "budget": m.budget,
            "cost_vs_retrain": m.cost,
            "data_parallel": m.data_parallel,
            "settings": {f.name: (f.default if f.default is not dataclasses.MISSING else None) for f in dataclasses.fields(m.config_cls)},
        }
        for m in list_methods()
    ]
    if json_out:
        # `sweep`: how `remcli sweep --methods` entries add detection to a method, and the settings that adds;
        # symptom prefixes detect from what a user saw instead, each in cells of one kind
        sweep = {"detect_prefix": DETECT_PREFIX, "symptom_prefixes": SYMPTOM_PREFIXES, "detect_settings": DETECT_DEFAULTS}
        emit_json({"methods": rows, "sweep": sweep}, json_out)
        return
    table = Table()
    table.add_column("method", no_wrap=True)  # names are what users type: never folded
    for column in ("what it does", "data", "default budget", "cost vs retrain", "torchrun"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["summary"], row["data"], row["budget"], row["cost_vs_retrain"], "yes" if row["data_parallel"] else "no")
    stdout_console().print(table)


def archs_command(json_out: JsonOpt = None) -> None:
    """List the architectures `--arch` accepts: remcli's own, torchvision's classifiers, and
    timm:NAME for any model of timm (the optional extra: pip install 'remcli\\[timm]')."""
    names = list_archs()
    timm_installed = importlib.util.find_spec("timm") is not None
    if json_out:
        emit_json({"archs": names, "timm": timm_installed}, json_out)
        return
    stdout_console().print(", ".join(names), soft_wrap=True)
    stdout_console().print(
        f"and timm:NAME for any timm model ({'timm is installed' if timm_installed else 'needs ' + TIMM_EXTRA})", soft_wrap=True, markup=False
    )
