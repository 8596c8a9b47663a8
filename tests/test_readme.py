"""The README's commands are what a user copies: they must parse in bash and name options
that exist, and its table of config groups must list every shipped option."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from dlexp.config.paths import CONFIG_DIR
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra")


def bash_blocks() -> list[str]:
    """The ```bash blocks, their placeholders (`<run folder>`) filled in as a user would."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return [re.sub(r"<[A-Za-z][\w .-]*>", "X", b) for b in blocks]


def options(group: str) -> set[str]:
    return {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}


def test_every_bash_block_parses() -> None:
    blocks = bash_blocks()
    assert len(blocks) > 10, "the README's examples are ```bash blocks"
    for block in blocks:
        done = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert done.returncode == 0, f"{done.stderr}\nin:\n{block}"


def test_group_choices_in_the_examples_exist() -> None:
    named = []
    for block in bash_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            if not line.lstrip().startswith(("dlexp", "python -m dlexp")):
                continue
            for word in shlex.split(line.split(" # ")[0], posix=True):
                group, eq, value = word.lstrip("+~").partition("=")
                if not eq or group not in GROUPS or "$" in value or "(" in value:
                    continue
                for option in re.split(r"[\[\],]", value):
                    if option and option != "null":
                        named.append((group, option))
    assert len(named) > 20
    unknown = sorted({(g, o) for g, o in named if o not in options(g)})
    assert not unknown, f"the README names options that do not exist: {unknown}"


@pytest.mark.parametrize("group", GROUPS)
def test_the_table_of_groups_lists_every_option(group: str) -> None:
    row = re.search(rf"^\| `{group}` \|(.*)$", README, flags=re.M)
    assert row, f"no row for `{group}` in the README's table of config groups"
    missing = sorted(o for o in options(group) if f"`{o}`" not in row.group(1))
    assert not missing, f"the README's row for `{group}` lacks {missing}"
