"""Reading the files dlexp is given or left behind, with one message for each way they go wrong.

A file can be empty, cut off, in another encoding, or not what its name says (a table that is a
zip archive, a config.yaml that is a list). Each reader here names the file, the place in it
and what would fix it, as a `DlexpError`; nothing surfaces as a UnicodeDecodeError or a YAML
scanner's traceback. Torch-free.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

import yaml

from dlexp.errors import DlexpError


def decode_text(path: Path, data: bytes, encoding: str, setting: str | None = None) -> str:
    """`data` (the bytes of `path`) as text. `setting` is the config key that chooses the
    encoding (data.encoding), offered in the message; files dlexp wrote itself have none."""
    if b"\x00" in data[:8192] and "16" not in encoding and "32" not in encoding:
        raise DlexpError(
            f"{path} is not a text file: it holds NUL bytes (a compressed, binary or UTF-16 "
            f"file?). Give a plain text file{_offer(setting, 'utf-16')}"
        )
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.end].hex(" ")
        raise DlexpError(
            f"{path} is not {encoding} text: the byte{'s' if exc.end - exc.start > 1 else ''} "
            f"{bad} at line {line}, column {column} (byte {exc.start}) cannot be read as "
            f"{encoding}{_offer(setting, 'latin-1')}"
        ) from None


def _offer(setting: str | None, example: str) -> str:
    if setting is None:
        return "; dlexp reads it as UTF-8: save it so, or restore the original"
    return f". If it is in another encoding, say which: {setting}={example} (or cp1252, ...)"


def encoding_problem(key: str, value: Any) -> str | None:
    """A config's encoding name that Python does not know."""
    if not isinstance(value, str):
        return f"{key}: expected an encoding name like utf-8 or latin-1, got {value!r}"
    try:
        codecs.lookup(value)
    except LookupError:
        return f"{key}: unknown encoding {value!r}; e.g. utf-8, latin-1, cp1252, utf-16"
    return None


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object that dlexp wrote (summary.json, manifest.json), or a message saying it
    is damaged and what to do (`what`: e.g. "delete it to let the sweep write a new one")."""
    try:
        data = path.read_bytes()
        value = json.loads(decode_text(path, data, "utf-8")) if data.strip() else None
    except OSError as exc:
        raise DlexpError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise DlexpError(
            f"{path} is not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); {what}"
        ) from None
    except DlexpError as exc:
        raise DlexpError(f"{exc}; {what}") from None
    return _mapping(path, value, "a JSON {}, not an object", what)


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (a run's config.yaml), unresolved."""
    try:
        text = decode_text(path, path.read_bytes(), "utf-8")
        loaded = yaml.safe_load(text) if text.strip() else None
    except OSError as exc:
        raise DlexpError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise DlexpError(f"{path} is not valid YAML{where} ({problem}); {what}") from None
    except DlexpError as exc:
        raise DlexpError(f"{exc}; {what}") from None
    return _mapping(path, loaded, "a YAML {}, not a mapping", what)


def _mapping(path: Path, value: Any, other: str, what: str) -> dict[str, Any]:
    """`value` when it is a mapping; else which it is (`other`, formatted with its type)."""
    if isinstance(value, dict):
        return value
    shown = "is empty" if value is None else f"holds {other.format(type(value).__name__)}"
    raise DlexpError(f"{path} {shown}; {what}")
