"""Turn a wish list of methods and budgets into `remcli sweep` arguments that the registry accepts.

Reads `remcli methods --json -` on stdin (the registered methods, their settings, and the settings
a `detect+METHOD` entry adds); prints one argument per line (`--methods`, the list, then `--set`,
`METHOD.name=value` pairs). Methods that are not registered and settings a method
does not have are dropped with a note on stderr, so a benchmark script keeps working while the
set of baselines grows; `*.name=value` applies to every selected method that has the setting:

    remcli methods --json - | python3 benchmarks/sweep_args.py --methods rem,retrain rem.epochs=3 retrain.epochs=10
"""

from __future__ import annotations

import argparse
import json
import sys


class Catalog:
    """`remcli methods --json -`: each method's settings, and how a sweep entry adds detection."""

    def __init__(self, body: dict):
        self.settings = {m["name"]: m["settings"] for m in body["methods"]}
        self.prefixes = (body["sweep"]["detect_prefix"], *body["sweep"].get("symptom_prefixes", {}))
        self.detect_settings = body["sweep"]["detect_settings"]

    def prefix(self, method: str) -> str:
        """The detection prefix `method` starts with (`detect+`, `query-detect+`, ...), or ''."""
        return next((p for p in self.prefixes if method.startswith(p)), "")

    def base(self, method: str) -> str:
        """`rem-redirect@bottleneck` -> `rem-redirect`, `detect+rem` and `query-detect+rem` -> `rem`: entries take the settings of
        their registered method."""
        name = method.split("@", 1)[0]
        return name.removeprefix(self.prefix(name))

    def has_setting(self, method: str, name: str) -> bool:
        return name in self.settings[self.base(method)] or (bool(self.prefix(method)) and name in self.detect_settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", required=True, help="comma-separated wish list")
    parser.add_argument("settings", nargs="*", help="METHOD.name=value budgets, applied where the method has that setting; METHOD may be *")
    args = parser.parse_args()
    catalog = Catalog(json.load(sys.stdin))
    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    methods = [m for m in wanted if catalog.base(m) in catalog.settings]
    for missing in (m for m in wanted if catalog.base(m) not in catalog.settings):
        print(f"note: method {missing} is not registered in this remcli; left out of the sweep", file=sys.stderr)
    if not methods:
        raise SystemExit(f"error: none of {args.methods} is registered; see `remcli methods`")
    out = ["--methods", ",".join(methods)]
    for pair in args.settings:
        key, _, value = pair.partition("=")
        method, _, name = key.rpartition(".")
        if method == "*":  # every selected method that has this setting, silently
            out += [x for m in methods if catalog.has_setting(m, name) for x in ("--set", f"{m}.{name}={value}")]
            continue
        if method not in methods:
            continue
        if not catalog.has_setting(method, name):
            print(
                f"note: {method} has no setting {name!r}; {pair} dropped (its settings: {', '.join(sorted(catalog.settings[catalog.base(method)]))})",
                file=sys.stderr,
            )
            continue
        out += ["--set", pair]
    print("\n".join(out))


if __name__ == "__main__":
    main()
