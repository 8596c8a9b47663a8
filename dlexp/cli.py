"""`dlexp`: train by default; other verbs are thin dispatchers in front of the same trainer.

dlexp [overrides]                     train (see `dlexp --help`)
dlexp resume <run | latest> [...]     continue a run in its own folder
dlexp rerun <run | latest> [...]      a new run with a finished run's exact config
dlexp eval <run | latest> [ckpt=best|last] [split=test|val]
dlexp validate [overrides]            build everything, train nothing
dlexp sample <gan run> [n=64] [seed=0]
"""

from __future__ import annotations

import importlib
import sys

VERBS = {
    "resume": "dlexp.verbs:resume",
    "rerun": "dlexp.verbs:rerun",
    "eval": "dlexp.evaluate:evaluate_run",
    "validate": "dlexp.evaluate:validate_config",
    "sample": "dlexp.sample:main",
    "compare": "dlexp.compare:main",
}


def run_verb(name: str, argv: list[str]) -> int:
    """Call a verb; user mistakes become one message and exit status 2."""
    from dlexp.errors import DlexpError
    from dlexp.interrupt import Interrupted

    module, func = VERBS[name].split(":")
    try:
        result = getattr(importlib.import_module(module), func)(argv)
    except Interrupted as exc:
        from dlexp.console import print_notice

        print_notice(str(exc))
        return exc.exit_code
    except DlexpError as exc:
        from dlexp.console import print_error

        print_error(str(exc))
        return 2
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in ("--version", "version"):
        from dlexp import __version__

        print(f"dlexp {__version__}")
        return
    if argv and argv[0] in VERBS:
        sys.exit(run_verb(argv[0], argv[1:]))
    from dlexp.train import main as train_main

    train_main()


if __name__ == "__main__":
    main()
