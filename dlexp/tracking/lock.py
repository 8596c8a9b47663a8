"""A run folder's lock: one process writes there at a time.

An OS lock (flock) on the folder itself: the OS lets go of it when the holder dies, however it
dies, so a lock left by a killed process is taken over at once (a requeued cluster job
resumes). While it is held, `.lock` in the folder says who holds it (pid, host, what it does,
since when), for the message another process gets; it is removed on release, so a refused or
failed command leaves the folder as it found it. Callers take it through `RunFolder.lock`.
Torch-free; POSIX only (dlexp runs on Linux and macOS).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from dlexp.errors import FolderOccupied
from dlexp.tracking.writes import now_iso, write_text

LOCK = ".lock"  # in the run folder, while the lock is held: who holds it

# Locks held by this process: path → [file descriptor, depth]. A process may take its own
# folder's lock again (a sweep job checks its folder, then trains in it).
_held: dict[str, list[int]] = {}


@contextlib.contextmanager
def hold(folder: Path, purpose: str = "trains") -> Iterator[None]:
    """Hold `folder`'s lock, or raise FolderOccupied naming who holds it. `purpose` says what
    this process does there ("trains", "evaluates"), for another process's message."""
    import fcntl  # POSIX only; dlexp runs on Linux and macOS

    key = str(folder.resolve())
    if key in _held:  # this process holds it already (a sweep job checks, then trains)
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
            raise
        raise FolderOccupied(
            f"{folder} is in use: {holder(folder)}. Wait for it to finish (or stop it), "
            "then try again; two processes writing one run folder would mix two runs."
        ) from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso()}
    _held[key] = [fd, 1]
    try:
        write_text(folder / LOCK, json.dumps({**info, "purpose": purpose}) + "\n")
        yield
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            del _held[key]
            with contextlib.suppress(OSError):
                (folder / LOCK).unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def holder(folder: Path) -> str:
    """Who holds `folder`'s lock, as its `.lock` says."""
    try:
        info = json.loads((folder / LOCK).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process holds its lock"
    return (
        f"process {info.get('pid')} on {info.get('host')} {info.get('purpose', 'works')} "
        f"there (since {info.get('since')})"
    )


def check_unlocked(path: Path) -> None:
    """Refuse at once when another process holds `path`'s lock (taking it only a moment).
    Under torchrun only rank 0 asks: it is the one that takes the lock, and another rank's
    moment with it would refuse rank 0 itself."""
    if os.environ.get("RANK", "0") == "0" and Path(path).is_dir():
        with hold(Path(path), "checks"):
            pass
