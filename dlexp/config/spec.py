"""The building blocks of the schemas: a `Spec` per value and the table check that uses them.

Torch-free. `schema.py` holds the tables (trainer, data, models, optimizers, ...) and
`validate`; `schema_text.py` and `schema_gan.py` add the sequence and GAN families.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    """One key's type and range. `kind`: int, float, bool, str, choice, ints, floats, dict, any."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # True: value must be > lo instead of >= lo
    hi_open: bool = False  # True: value must be < hi instead of <= hi
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    length: int | None = None  # for ints/floats lists
    min_length: int = 0  # for ints/floats lists: at least this many values

    def check(self, key: str, value: Any) -> str | None:
        if value is None:
            return None if self.nullable else f"{key}: a value is required, got null"
        problem = self._check_type(value)
        if problem:
            return f"{key}: {problem}"
        for item in value if self.kind in ("ints", "floats") else [value]:
            problem = self._check_range(item)
            if problem:
                return f"{key}: {problem}"
        return None

    def _check_type(self, value: Any) -> str | None:
        given = f"got {value!r} ({type(value).__name__})"
        if self.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            return f"expected an integer, {given}"
        if self.kind == "float" and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            return f"expected a number, {given}"
        if self.kind == "bool" and not isinstance(value, bool):
            return f"expected true or false, {given}"
        if self.kind == "str" and not isinstance(value, str):
            return f"expected a string, {given}"
        if self.kind == "dict" and not isinstance(value, Mapping):
            return f"expected a group of keys like {{a: 1}}, {given}"
        # compare types too: 1 == True in Python, but `channels_last=1` is not `true`
        if self.kind == "choice" and not any(
            type(value) is type(c) and value == c for c in self.choices
        ):
            shown = (str(c).lower() if isinstance(c, bool) else str(c) for c in self.choices)
            valid = ", ".join(dict.fromkeys(shown))
            return f"must be one of {valid}; {given}"
        if self.kind in ("ints", "floats"):
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                return f"expected a list like [64, 128], {given}"
            item_kind = int if self.kind == "ints" else (int, float)
            if any(isinstance(v, bool) or not isinstance(v, item_kind) for v in value):
                return f"expected a list of {'integers' if self.kind == 'ints' else 'numbers'}, {given}"
            if self.length is not None and len(value) != self.length:
                return f"expected {self.length} values, {given}"
            if len(value) < self.min_length:
                return f"expected at least {self.min_length} value(s) like [64, 128], {given}"
        return None

    def _check_range(self, value: Any) -> str | None:
        if self.kind not in ("int", "float", "ints", "floats"):
            return None
        if not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return f"must be {'>' if self.lo_open else '>='} {self.lo}, got {value!r}"
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return f"must be {'<' if self.hi_open else '<='} {self.hi}, got {value!r}"
        return None


def Int(lo: float | None = None, hi: float | None = None, nullable: bool = False) -> Spec:
    return Spec("int", lo=lo, hi=hi, nullable=nullable)


def Float(lo: float | None = None, hi: float | None = None, **kw: Any) -> Spec:
    return Spec("float", lo=lo, hi=hi, **kw)


def Choice(*choices: Any, nullable: bool = False) -> Spec:
    return Spec("choice", choices=choices, nullable=nullable)


BOOL = Spec("bool")
PROB = Float(0.0, 1.0, hi_open=True)  # dropout-style probability in [0, 1)
POSITIVE = Float(0.0, lo_open=True)
NONNEG = Float(0.0)


def _check_table(prefix: str, node: Mapping[str, Any], table: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, value in node.items():
        full = f"{prefix}.{key}"
        spec = table.get(key)
        if spec is None:
            problems.append(unknown_key(full, key, table.keys()))
        elif isinstance(spec, Mapping):
            if isinstance(value, Mapping):
                problems += _check_table(full, value, spec)
            else:
                problems.append(
                    f"{full}: expected a group of keys ({', '.join(spec)}), got {value!r}"
                )
        else:
            problem = spec.check(full, value)
            if problem:
                problems.append(problem)
    return problems


def unknown_key(full: str, key: str, valid: Any) -> str:
    valid = sorted(str(k) for k in valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    parent = f"{full.rsplit('.', 1)[0]}." if "." in full else ""
    hint = f" Did you mean '{parent}{close[0]}'?" if close else ""
    return f"{full}: unknown key.{hint} Valid keys: {', '.join(valid)}"


def _check_target_group(
    group: str, node: Mapping[str, Any], tables: Mapping[str, Any]
) -> list[str]:
    target = node.get("_target_")
    if not isinstance(target, str) or not target:
        return [f"{group}._target_: expected the import path of a class, got {target!r}"]
    table = tables.get(target)
    # A user's own class: its keyword arguments are checked against its signature when built.
    return _check_table(group, node, table) if table is not None else []
