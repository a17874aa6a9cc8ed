"""The one grammar for `name=value` settings: `unlearn --set`, `sweep --set`, `--arch-arg`.

Values are parsed the same way everywhere: int, then float, then true/false and none/null,
else the text itself. Method configs then check the parsed value's type (one-line errors).
"""

from __future__ import annotations

from remcli.errors import InputError


def parse_value(text: str):
    """`3` -> 3, `0.5` -> 0.5, `false` -> False, `none` -> None, anything else -> the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def parse_setting(pair: str, option: str, example: str = "name=value") -> tuple[str, object]:
    """`name=value` -> (name, parsed value); `targets=a,b` becomes a tuple of names."""
    key, sep, value = pair.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"{option} {pair!r} must look like {example}")
    parsed = parse_value(value)
    if key.rpartition(".")[2] == "targets" and isinstance(parsed, str):
        parsed = tuple(t.strip() for t in parsed.split(",") if t.strip())
    return key, parsed


def parse_settings(pairs: list[str], option: str, example: str = "name=value") -> dict:
    return dict(parse_setting(pair, option, example) for pair in pairs)
