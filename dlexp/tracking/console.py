"""What a person sees in the terminal: a progress bar per epoch, an epoch table, a final panel.

On a terminal the bar redraws in place; without one (CI, nohup, a pipe) every line is plain
text, so logs stay readable. Everything printed also goes to `train.log` through `logging`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

log = logging.getLogger("dlexp")


def plain_console(**kwargs: Any) -> Console:
    """A console for stdout. Without a terminal (a pipe, a log, CI) nothing wraps or folds:
    tables and panels are as wide as their longest line, so every path and command in them
    stays whole and can be pasted."""
    console = Console(highlight=False, soft_wrap=True, **kwargs)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=100_000, **kwargs)
    return console


def error_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """One clear error message on stderr, no traceback (and in train.log, where there is one)."""
    error_console().print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    _to_log_files(logging.ERROR, message)


def print_notice(message: str) -> None:
    """Something the user asked for happened (an interruption): say so, and what to do next."""
    error_console().print(
        f"[bold yellow]stopped:[/] {escape(message)}", markup=True, highlight=False
    )
    _to_log_files(logging.WARNING, message)


def print_note(message: str) -> None:
    """Something worth knowing that changes nothing the user asked for."""
    error_console().print(f"[bold]note:[/] {escape(message)}", markup=True, highlight=False)
    _to_log_files(logging.INFO, message)


def _to_log_files(level: int, message: str) -> None:
    """Into train.log, where there is one; the terminal has the message already (a console
    handler, such as Hydra's own, would print it twice)."""
    record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class Reporter:
    """Progress and summaries for one run. `mode`: auto | bar | plain | none."""

    def __init__(self, mode: str = "auto", columns: Sequence[str] = ()) -> None:
        # soft_wrap: a long line (a run folder's path) stays whole in a pipe, a log or CI
        self.console = plain_console()
        if mode == "auto":
            mode = "bar" if self.console.is_terminal else "plain"
        self.mode = mode
        self.columns = list(columns)
        self._progress: Progress | None = None
        self._task: Any = None
        self._header_done = False

    def info(self, message: str) -> None:
        log.info(message)
        if self.mode != "none":
            self.console.print(message, markup=False)

    # -- one epoch -------------------------------------------------------------------------
    def start_epoch(self, epoch: int, epochs: int, total_batches: int, done: int = 0) -> None:
        if self.mode != "bar":
            return
        self._progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TextColumn("•"),
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            # redraw only when the loop reports (once per log interval): a refresh thread
            # would compete with training for the interpreter and the cores
            auto_refresh=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total_batches, completed=done, stats="")

    def update(self, batches_done: int, stats: Mapping[str, float], rate: float) -> None:
        """Called once per log interval with values already read back from the device."""
        text = "  ".join(f"{k} {_fmt(v)}" for k, v in stats.items()) + f"  {rate:,.0f} samples/s"
        if self._progress is not None:
            self._progress.update(self._task, completed=batches_done, stats=text, refresh=True)

    def end_epoch(self, row: Mapping[str, Any]) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        line, header = self._row(row), self._row({c: c for c in self.columns})
        if not self._header_done:
            log.info(header)
        log.info(line)
        if self.mode != "none":
            if not self._header_done:
                self.console.print(header, style="bold", markup=False)
            self.console.print(line, markup=False)
        self._header_done = True

    def _row(self, row: Mapping[str, Any]) -> str:
        return "  ".join(f"{_fmt(row.get(c, '')):>{max(len(c), 9)}}" for c in self.columns)

    # -- end of run ------------------------------------------------------------------------
    def final(self, title: str, items: Mapping[str, Any], style: str = "green") -> None:
        for key, value in items.items():
            log.info("%s: %s", key, value)
        if self.mode == "none":
            return
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")  # a long path breaks across lines, never cut off
        for key, value in items.items():
            table.add_row(f"[bold]{escape(str(key))}[/]", escape(_fmt(value)))
        self.console.print(Panel(table, title=title, border_style=style, expand=False))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        sys.stdout.flush()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)
