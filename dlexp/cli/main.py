"""`dlexp`: train by default; other verbs are thin dispatchers in front of the same trainer.

dlexp [overrides]                     train (see `dlexp --help`)
dlexp resume <run | latest> [...]     continue a run in its own folder
dlexp rerun <run | latest> [...]      a new run with a finished run's exact config
dlexp eval <run | latest> [ckpt=best|last] [split=test|val]
dlexp validate [overrides]            build everything, train nothing
dlexp sample <gan | vae run> [n=64] [seed=0]
dlexp predict <run | latest> INPUT... [ckpt=best|last] [out=FILE] [top_k=N]
dlexp export <run | latest> [format=onnx|torchscript] [ckpt=best|last] [out=FILE]
"""

# Imports of dlexp and Hydra are deferred into the functions below: `dlexp --version`, `--help`
# and an unknown command answer without loading Hydra or torch (tests/test_configs.py times it).
from __future__ import annotations

import importlib
import re
import sys
from typing import NoReturn

VERBS = {
    "resume": "dlexp.cli.verbs:resume",
    "rerun": "dlexp.cli.verbs:rerun",
    "eval": "dlexp.cli.evaluate:evaluate_run",
    "validate": "dlexp.cli.evaluate:validate_config",
    "sample": "dlexp.cli.sample:main",
    "compare": "dlexp.cli.compare:main",
    "predict": "dlexp.cli.predict:main",
    "export": "dlexp.cli.export:main",
}


def run_verb(name: str, argv: list[str]) -> int:
    """Call a verb; user mistakes become one message and exit status 2."""
    from dlexp.engine.interrupt import Interrupted
    from dlexp.errors import DlexpError

    module, func = VERBS[name].split(":")
    if argv[:1] in (["-h"], ["--help"]) and name in ("resume", "rerun", "eval", "validate"):
        doc = getattr(importlib.import_module(module), func).__doc__ or ""
        print(doc.strip())
        return 0
    try:
        result = getattr(importlib.import_module(module), func)(argv)
    except Interrupted as exc:
        from dlexp.tracking.console import print_notice

        print_notice(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside training (a second one during training)
        from dlexp.tracking.console import print_notice

        print_notice(f"dlexp {name} interrupted")
        return 130
    except DlexpError as exc:
        from dlexp.tracking.console import print_error

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
        exit_now(run_verb(argv[0], argv[1:]))
    if argv and argv[0] == "help":
        argv[0] = sys.argv[1] = "--help"
    elif argv and re.fullmatch(r"[A-Za-z][\w-]*", argv[0]):  # a word: not an override
        sys.exit(unknown_command(argv[0]))
    note = "stopped before the run started: nothing to resume"
    try:
        from dlexp.cli import train  # Hydra and the checks: only for a command that trains

        note = ""
        train.main()
    except KeyboardInterrupt:  # outside a job's own handling: loading, checking, between jobs
        print(f"\n{note or train.interrupted_note()}", file=sys.stderr)
        sys.exit(130)
    exit_now(0)


def exit_now(code: int) -> NoReturn:
    """Exit once everything is written, skipping the interpreter's teardown of every module:
    with torch and its compiler loaded that alone takes 0.5-1 s. What a normal exit does first
    still happens: other threads are joined, atexit handlers run (logging's flush among them)
    and stdout/stderr are flushed. Without torch loaded, or after a failure, a normal exit."""
    if code != 0 or "torch" not in sys.modules:
        sys.exit(code)
    import atexit
    import contextlib
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(0)


def unknown_command(word: str) -> int:
    import difflib

    from dlexp.tracking.console import print_error

    close = [v for v in VERBS if word.startswith(v) or v.startswith(word)][:1]
    close = close or difflib.get_close_matches(word, [*VERBS, "train"], n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    if close == ["train"]:
        hint = " Training needs no command: dlexp [key=value ...]."
    print_error(
        f"unknown command '{word}'.{hint} Commands: {', '.join(VERBS)}; without one, dlexp "
        "trains, and everything after it is key=value (dlexp --help lists the groups)."
    )
    return 2


if __name__ == "__main__":
    main()
