"""`dlexp`: train by default; other verbs are thin dispatchers in front of the same trainer."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in ("--version", "version"):
        from dlexp import __version__

        print(f"dlexp {__version__}")
        return
    from dlexp.train import main as train_main

    train_main()


if __name__ == "__main__":
    main()
