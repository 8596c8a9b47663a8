"""The one exception type users see: a message that says what was wrong and what is valid."""

from __future__ import annotations


class DlexpError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    The message must name what was wrong and what would be valid instead.
    The CLI prints it, exits with status 2 and writes nothing further.
    """


class DatasetNotFoundError(DlexpError):
    """A data set is not on disk and cannot be downloaded."""


class FolderOccupied(DlexpError):
    """The run folder already holds a run, and nothing said to continue or skip it (or
    another process is writing there)."""


def format_problems(problems: list[str]) -> str:
    """Every problem of a config in one message."""
    head = (
        "the config has 1 problem:"
        if len(problems) == 1
        else f"the config has {len(problems)} problems:"
    )
    return "\n  ".join([head, *problems])
