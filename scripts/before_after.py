"""Print two `remcli evaluate --json` results side by side (used by scripts/demo)."""

import json
import sys

from rich.console import Console
from rich.table import Table

before, after = (json.load(open(path)) for path in sys.argv[1:3])
table = Table(title="poisoned model -> after REM (half of the poison identified)")
for column in ("metric", "before", "after", "change"):
    table.add_column(column, justify="right" if column != "metric" else "left")
for name, value in before["metrics"].items():
    new = after["metrics"].get(name)
    change = "" if value is None or new is None else f"{new - value:+.3f}"
    table.add_row(name, "-" if value is None else f"{value:.3f}", "-" if new is None else f"{new:.3f}", change)
Console().print(table)
