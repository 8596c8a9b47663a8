"""Where the configs live, where runs go, and paths as the user wrote them. Torch-free.

Nothing here imports torch (or OmegaConf): `dlexp --help`, `--cfg job` and config errors answer
fast, and the data sets can expand their paths without knowing any config.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
from pathlib import Path


def config_dir() -> Path:
    """The packaged configs: `dlexp/configs` in an installed wheel, `<repo>/configs` in a checkout."""
    package = Path(__file__).resolve().parent.parent  # dlexp/
    packaged = package / "configs"
    if (packaged / "config.yaml").is_file():
        return packaged
    return package.parent / "configs"


CONFIG_DIR = config_dir()

_claimed: dict[tuple[str, str], str] = {}


def unique_dir(parent: str, name: str) -> str:
    """Create `parent/name` atomically and return its absolute path.

    `os.mkdir` fails when the folder exists, so two processes that start in the same second
    (or a sweep's jobs in parallel) can never share a folder: the loser takes `name-2`, `-3`, ...
    Hydra may resolve the run dir more than once per process; the first claim is remembered.
    """
    key = (parent, name)
    if key in _claimed:
        return _claimed[key]
    if not _claimed:
        atexit.register(_remove_unused_claims)
    if os.environ.get("RANK", "0") != "0":
        # torchrun: rank 0 claims the run folder and tells the others (dlexp.engine.distributed);
        # Hydra's own files of the other ranks go to a scratch folder
        import tempfile

        _claimed[key] = tempfile.mkdtemp(prefix=f"dlexp-rank{os.environ['RANK']}-")
        return _claimed[key]
    base = Path(os.path.expanduser(parent)).absolute()
    base.mkdir(parents=True, exist_ok=True)
    stem = slug(name)
    for attempt in range(1, 10_000):
        candidate = base / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        _claimed[key] = str(candidate)
        return _claimed[key]
    raise RuntimeError(f"could not create a unique folder for {name!r} under {base}")


def claimed_here(path: str | os.PathLike[str]) -> bool:
    """Whether this process created the folder `path` (with `unique_dir`)."""
    return any(Path(claimed) == Path(path) for claimed in _claimed.values())


def slug(text: str, max_len: int = 120) -> str:
    """A folder-safe version of `text`: no path separators, no spaces, bounded length."""
    text = re.sub(r"[/\\\s]+", "-", str(text))
    text = re.sub(r"[^A-Za-z0-9._=,+@%-]", "_", text)
    return text[:max_len] or "run"


def _remove_unused_claims() -> None:
    """Folders claimed but never used are removed at exit: Hydra resolves a default
    `hydra.sweep.dir` even when a config replaces it, and a command that fails before its first
    job leaves its folder empty. `rmdir` removes only empty folders, never a run's files."""
    for path in _claimed.values():
        with contextlib.suppress(OSError):
            os.rmdir(path)


def expand_path(path: str | os.PathLike[str]) -> Path:
    """`~` and environment variables expanded; relative paths stay relative to where dlexp started."""
    return Path(os.path.expandvars(os.path.expanduser(str(path))))
