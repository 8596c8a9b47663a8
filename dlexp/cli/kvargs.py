"""`key=value` arguments of the run-folder verbs (`dlexp export`, `dlexp sample`): each key
from a fixed set with a default, an unknown one refused with the nearest valid key and the
verb's usage. Torch-free: the verbs check their arguments before torch is imported.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from dlexp.errors import DlexpError


def parse_key_values(
    args: list[str],
    defaults: Mapping[str, str],
    verb: str,
    usage: str,
    *,
    list_keys: bool = False,
) -> dict[str, str]:
    """`defaults` with the values `args` give, as strings. An argument without `=` or with a
    key not in `defaults` raises DlexpError naming it (with "Did you mean ...?" for a near
    key, and, with `list_keys`, every valid key), then `usage` on its own line."""
    raw = dict(defaults)
    for item in args:
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f" Did you mean {close[0]}=...?" if close and sep else ""
            valid = f" Valid: {', '.join(f'{k}=' for k in defaults)}" if list_keys else ""
            raise DlexpError(f"{verb}: unknown argument '{item}'.{hint}{valid}\n{usage}")
        raw[key] = value
    return raw
