"""Check a command line before Hydra runs it: one clear message for every mistake we can see.

Hydra's own error for a misspelt key ("Key 'lrr' is not in struct") names no alternative, and a
wrong type would only surface after a run folder exists. Here the config is composed once
(the first job's values, for a sweep), checked key by key with "did you mean" suggestions and
validated against the schemas; any problem exits with status 2 before anything is written.
Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dlexp.cli.folders import check_config_files, check_config_folders
from dlexp.cli.grammar import check_grammar
from dlexp.cli.overrides import (
    check_group_options,
    check_swept_values,
    fail,
    first_job_overrides,
    search_path,
)
from dlexp.cli.unknown_keys import explain_failed_key, failed_key
from dlexp.cli.verbs import check_occupied
from dlexp.config.paths import CONFIG_DIR
from dlexp.config.resolvers import register_resolvers, to_plain
from dlexp.errors import DlexpError, format_problems
from dlexp.sweeps.manifest import read_manifest
from dlexp.tasks.registry import override_problems, validate
from dlexp.tracking.loggers.reach import check_servers


def check_given_folders(overrides: list[str], cfg: dict[str, Any], multirun: bool) -> None:
    """A run or sweep folder given on the command line that already holds a run (or a sweep)
    is checked now: once Hydra starts, it rewrites the folder's .hydra/ files and manifest."""
    given = dict(
        o.split("=", 1) for o in overrides if o.startswith(("hydra.run.dir=", "hydra.sweep.dir="))
    )
    folder = given.get("hydra.sweep.dir" if multirun else "hydra.run.dir")
    if not folder or "${" in folder:
        return
    path = Path(os.path.expandvars(os.path.expanduser(folder)))
    if path.exists() and not path.is_dir():
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        fail(f"{key}={folder}: that is a file, not a folder")
    try:
        if not multirun:
            check_occupied(cfg, path)
        elif (path / "manifest.json").is_file():
            read_manifest(path)  # a damaged one is reported now, not by the sweep's callback
            continued = (path / "optuna.db").is_file()  # a study continues in new trials
            if not continued and cfg.get("resume") != "auto":
                fail(
                    f"{path} already holds a sweep. Pass resume=auto to skip its finished jobs "
                    "and continue the others, or choose another hydra.sweep.dir."
                )
    except DlexpError as exc:
        fail(str(exc))


def preflight(argv: list[str]) -> None:
    """Exit with a clear message if the command line cannot give a valid first job."""
    checked_config(argv)


def checked_config(argv: list[str], always: bool = False) -> dict[str, Any] | None:
    """The first job's config, composed and validated (exits with a message on problems).

    Without overrides the shipped defaults are known to be valid: only the output folder is
    checked, unless `always` (the `validate` verb) asks for the config anyway.
    """
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    modes = [f for f, on in (("--multirun", args.multirun), ("--cfg", args.cfg),
                             ("--info", args.info)) if on]  # fmt: skip
    if len(modes) > 1:
        fail(f"{' and '.join(modes)} cannot be combined: use one of them")
    check_config_folders(args)
    if not args.shell_completion:
        check_grammar(args.overrides or [], bool(args.multirun))
    if args.shell_completion:
        return None
    if args.help or args.hydra_help or args.info or args.cfg:
        dirs = config_dirs(args)
        if dirs is not None:  # --cfg job model=lenett: the same suggestion as for a run
            check_group_options(args.overrides or [], dirs)
        first = first_job_overrides(args.overrides or []) if args.cfg and dirs else None
        if dirs and first:  # --cfg job optim.lrr=1: and the same message for a key
            compose(dirs[0], args.config_name or "config", searching(first, dirs[1:]))
        return None
    if not args.overrides and not always:
        check_output_root(os.environ.get("DLEXP_OUTPUT_ROOT", "outputs"))
        return None
    overrides = first_job_overrides(args.overrides or [])
    if overrides is None:
        return None
    dirs = config_dirs(args)
    if dirs is None:
        return None
    config_dir, extra_dirs, name = dirs[0], dirs[1:], args.config_name or "config"
    check_config_files(extra_dirs, args.overrides or [])
    check_group_options(args.overrides or [], [config_dir, *extra_dirs])
    overrides = searching(overrides, extra_dirs)
    composed = compose(config_dir, name, overrides)
    search = str(OmegaConf.select(composed, "hydra.mode")).endswith("MULTIRUN")
    if search and not args.multirun:
        chosen = OmegaConf.select(composed, "hydra.runtime.choices.hparams_search")
        what = (
            f"hparams_search={chosen} is a search" if chosen else "hydra.mode=MULTIRUN is a sweep"
        )
        fail(f"{what} of many runs, which needs -m: dlexp -m {' '.join(args.overrides or [])}")
    launcher = OmegaConf.select(composed, "hydra.runtime.choices", default={}).get("hydra/launcher")
    with open_dict(composed):  # resolving Hydra's own node would claim the run folder
        del composed["hydra"]
    try:
        plain = to_plain(composed)
    except OmegaConfBaseException as exc:
        if "HydraConfig was not set" not in str(exc):
            fail(f"the config cannot be resolved: {str(exc).splitlines()[0]}")
        if always:
            fail("values that use ${hydra:...} are known only once a run starts; "
                 "dlexp validate checks configs without them")  # fmt: skip
        return None  # ${hydra:job.num} and friends: train() validates inside Hydra
    problems = validate(plain)
    if problems:
        fail(format_problems(problems))
    check_swept_values(args.overrides or [], plain)
    misplaced = override_problems(plain, overrides)
    if misplaced:
        fail(misplaced[0])
    check_given_folders(args.overrides or [], plain, bool(args.multirun))
    check_output_root(plain["paths"]["output_root"])
    # a tracking server that does not answer: said now, before a run folder exists; jobs that
    # a launcher sends to other machines ask from there (the logger asks before it starts)
    here = not args.multirun or launcher in (None, "basic", "joblib", "submitit_local")
    try:
        if here:
            check_servers(plain.get("logger"), plain["paths"]["output_root"])
    except DlexpError as exc:
        fail(str(exc))
    return plain


def config_dirs(args: Any) -> list[Path] | None:
    """The primary config folder, then --config-dir and hydra.searchpath's folders; None when
    Hydra must find the configs itself (a primary config from --config-dir, pkg:// paths)."""
    config_dir = Path(args.config_path).absolute() if args.config_path else CONFIG_DIR
    if not (config_dir / f"{args.config_name or 'config'}.yaml").is_file():
        return None  # a primary config from --config-dir: Hydra finds it; train() validates
    searched = [f"file://{Path(args.config_dir).absolute()}"] if args.config_dir else []
    searched += search_path(args.overrides or [])
    if any(not p.startswith("file://") for p in searched if p):
        return None  # pkg:// and other providers: leave the composing to Hydra
    return [config_dir, *(Path(p[len("file://") :]) for p in searched if p)]


def searching(overrides: list[str], extra_dirs: list[Path]) -> list[str]:
    """The overrides with hydra.searchpath naming the extra config folders as plain paths."""
    overrides = [o for o in overrides if not o.lstrip("+~").startswith("hydra.searchpath")]
    if extra_dirs:
        overrides.append(f"hydra.searchpath=[{','.join(f'file://{d}' for d in extra_dirs)}]")
    return overrides


def check_output_root(root: str) -> None:
    """An unwritable output folder is reported now, not as a crash inside Hydra.

    Nothing is left behind: the nearest existing folder on the way must take a new folder.
    """
    path = Path(os.path.expandvars(os.path.expanduser(root))).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        fail(f"paths.output_root: cannot create {path}: {existing} is a file. {_ROOT_HINT}")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"paths.output_root: {existing} is not writable. {_ROOT_HINT}")
    try:  # root passes os.access everywhere; a real folder made and removed says it all
        import tempfile

        os.rmdir(tempfile.mkdtemp(prefix=".dlexp-probe-", dir=existing))
    except OSError as exc:
        fail(
            f"paths.output_root: cannot create folders in {existing} ({exc.strerror}). {_ROOT_HINT}"
        )


_ROOT_HINT = "Set paths.output_root=... (or DLEXP_OUTPUT_ROOT) to a folder you can write to."


def compose(config_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    with initialize_config_dir(str(config_dir), version_base="1.3", job_name="dlexp"):
        try:
            return hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as exc:
            cause, key = exc.__cause__, failed_key(exc)
            explained = key and explain_failed_key(config_dir, config_name, overrides, key)
            if explained:
                fail(explained)
            message = str(exc).split("\nConfig search path:")[0].strip()
            missing = re.search(
                r"Could not find '(.+)/([^/']+)'\s+Available options in '(.+)':", message
            )
            if missing:  # an option named in a config file (experiment/*.yaml) or a default
                group, option = missing[3], missing[1].removeprefix(missing[3]).strip("/")
                option = f"{option}/{missing[2]}" if option else missing[2]
                options = re.findall(r"^\t(\S+)$", message, flags=re.M)
                close = difflib.get_close_matches(option, options, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                fail(
                    f"{group}={option}: no such option (no {group}/{option}.yaml in the config "
                    f"folders).{hint} Options of {group}: {', '.join(options)}"
                )
            group = re.match(r"Multiple values for (\S+)\. To override", message)
            if group:  # `+experiment=x` for a group the defaults already have
                fail(
                    f"+{group[1]}=...: {group[1]} is already in the defaults, so it is "
                    f"chosen, not added: write {group[1]}=<option> without the +"
                )
            if isinstance(cause, OmegaConfBaseException):
                message += f"\n{str(cause).splitlines()[0]}"
            fail(message)
        except ValueError as exc:  # e.g. `model=nan`: Hydra reads the option as a number
            fail(
                f"{exc}. An option of a config group is a name (model=lenet, optim=adam); "
                "`dlexp --help` lists every group and its options."
            )
    raise AssertionError("unreachable")
