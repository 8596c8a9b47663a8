"""Ctrl-C and SIGTERM: finish the current step, save, say how to resume. A second one aborts."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from types import FrameType
from typing import Any

from dlexp.errors import DlexpError
from dlexp.sweeps.trial import Pruned

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class Interrupted(DlexpError):
    """Training stopped on request after saving a checkpoint; `exit_code` is 128 + signal."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StopRequest:
    """Installs SIGINT/SIGTERM handlers for the duration of a `with` block.

    The first signal only sets `requested`; the loop checks it after every step and stops
    cleanly. A second signal raises KeyboardInterrupt at once, for a user who cannot wait.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            raise KeyboardInterrupt(f"{name} again: aborting without saving")
        self.requested = name
        print(
            f"\n{name}: stopping after this step and saving a checkpoint "
            "(send it again to abort at once)",
            file=sys.stderr,
            flush=True,
        )

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.requested or "", 1)

    def stopped(self, step: int, epoch: int, run_dir: object) -> Interrupted:
        """The error that ends a run stopped on request, after last.pt has been saved."""
        return Interrupted(
            f"{self.requested or 'stop requested'}: stopped at step {step} (epoch {epoch + 1}) "
            f"and saved checkpoints/last.pt. Resume with: dlexp resume {shlex.quote(str(run_dir))}",
            self.exit_code,
        )


def with_checkpoint_note(exc: DlexpError, ckpt_dir: Any) -> DlexpError:
    """A run stopped by a non-finite loss: say which checkpoint, if any, is still good."""
    from pathlib import Path

    last = Path(ckpt_dir) / "last.pt"
    kept = (
        f"{last} (the last good checkpoint) is kept"
        if last.is_file()
        else "no checkpoint had been saved yet"
    )
    return type(exc)(f"{exc} Training stopped; {kept}.")


def outcome(exc: BaseException) -> tuple[str, str]:
    """(status, error) that summary.json records for a run that ended with `exc`."""
    if isinstance(exc, Interrupted):
        return "interrupted", str(exc)
    if isinstance(exc, Pruned):
        return "pruned", str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "aborted by a second signal; last.pt is the one saved before"
    if isinstance(exc, DlexpError):
        return "failed", str(exc)
    return "failed", f"{type(exc).__name__}: {exc}"
