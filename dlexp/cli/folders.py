"""The config folders a command line names: they must exist and hold readable YAML. Torch-free.

Hydra warns about a --config-dir that does not exist and then reports the first option it cannot
find there; a config file that is not YAML (or not a mapping) ends in a scanner's traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlexp.cli.overrides import fail
from dlexp.config.files import read_yaml_mapping
from dlexp.config.paths import CONFIG_DIR
from dlexp.errors import DlexpError


def check_config_folders(args: Any) -> None:
    """--config-dir, --config-path and --config-name must name what exists: Hydra would warn
    and then report the first option it cannot find there instead."""
    for flag, folder in (("--config-dir", args.config_dir), ("--config-path", args.config_path)):
        if folder and not Path(folder).expanduser().is_dir():
            what = "a file" if Path(folder).expanduser().exists() else "no such folder"
            fail(
                f"{flag} {folder}: {what} (from {Path.cwd()}). Give the folder that holds your "
                "config groups, e.g. my_configs with my_configs/model/tiny.yaml in it"
            )
    if args.config_name:
        folders = [Path(args.config_path or CONFIG_DIR).expanduser()]
        folders += [Path(args.config_dir).expanduser()] if args.config_dir else []
        name = args.config_name.removesuffix(".yaml")
        if not any((f / f"{name}.yaml").is_file() for f in folders):
            found = sorted({p.stem for f in folders for p in f.glob("*.yaml")})
            fail(
                f"--config-name {args.config_name}: no {name}.yaml in "
                f"{' or '.join(map(str, folders))}; primary configs there: {', '.join(found)}"
            )


def check_config_files(folders: list[Path], overrides: list[str]) -> None:
    """The files of the options the command line chooses from a user's config folder must be
    YAML holding key: value lines (an empty file is an empty option)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    chosen: list[tuple[str, str]] = []
    for o in OverridesParser.create().parse_overrides(overrides):  # grammar checked before
        value = o.value()
        items = value.list if isinstance(value, ChoiceSweep) else [value]
        names = [v for item in items for v in (item if isinstance(item, list) else [item])]
        chosen += [(o.key_or_group, str(name)) for name in names if isinstance(name, str)]
    for folder in folders:
        for group, name in chosen:
            path = folder / group / f"{name}.yaml"
            if not path.is_file() or not path.read_bytes().strip():
                continue
            try:
                read_yaml_mapping(path, f"it is option {name} of {group}: key: value lines")
            except DlexpError as exc:
                fail(str(exc))
