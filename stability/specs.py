"""The `name:key=value,...` syntax of the `--family` and `--data` specifications.

A specification is a name, optionally followed by a colon and comma-separated parameters:
``t:df=3``, ``gamma:a=2,scale=0.5``, ``categorical:p=[0.2,0.3,0.5]``. Values are numbers
(``inf`` allowed), bracketed lists of numbers, or words. Commas inside brackets do not split.
"""

from __future__ import annotations

import math

from stability.errors import UsageError


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split `text` on `sep` outside square brackets (``"a=[1,2],b=3"`` -> two parts)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise UsageError(f"unbalanced ']' in {text!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise UsageError(f"unbalanced '[' in {text!r}")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_value(text: str):
    """A parameter value: float, list of floats (``[1,2]``) or, failing both, the word itself."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [parse_value(v) for v in split_top_level(inner)] if inner else []
    try:
        value = float(text)
    except ValueError:
        return text
    if math.isnan(value):
        raise UsageError(f"parameter value {text!r} is NaN")
    return value


def parse_params(text: str, spec: str) -> dict:
    """``"a=2,scale=0.5"`` -> ``{"a": 2.0, "scale": 0.5}``; raises UsageError naming `spec`."""
    params: dict = {}
    if not text.strip():
        return params
    for part in split_top_level(text):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise UsageError(f"bad parameter {part!r} in {spec!r}: write key=value")
        if key in params:
            raise UsageError(f"parameter {key!r} given twice in {spec!r}")
        params[key] = parse_value(value)
    return params


def split_spec(spec: str) -> tuple[str, dict]:
    """``"t:df=3"`` -> ``("t", {"df": 3.0})``; the name is lower-cased."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("empty specification")
    name, _, rest = spec.strip().partition(":")
    return name.strip().lower(), parse_params(rest, spec)
