"""What `pip install` reads: no deprecated metadata, no folder it would warn about."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_the_license_is_an_spdx_expression_and_setuptools_reads_it() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["license"] == "MIT"  # the table form stops working in 2027
    assert "setuptools>=77" in meta["build-system"]["requires"]  # the first to read SPDX


def test_every_config_group_folder_is_a_listed_package() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(meta["tool"]["setuptools"]["packages"])
    configs = REPO / "configs"
    folders = {
        "dlexp.configs." + ".".join(d.relative_to(configs).parts)
        for d in configs.rglob("*")
        if d.is_dir() and not d.name.startswith((".", "__"))
    }
    assert folders - listed == set(), "add them to [tool.setuptools] packages"
