"""The package's shape: no import cycles (imports inside functions counted), and the layer
contracts of `make lint` hold."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_dlexps_modules():
    graph = grimp.build_graph("dlexp")  # every import statement, also those inside functions
    modules = {m for m in graph.modules if m.startswith("dlexp")}
    edges = {
        m: {n for n in graph.find_modules_directly_imported_by(m) if n in modules} for m in modules
    }
    # a package's __init__ importing its own modules is not a cycle of code; dlexp has none
    assert cycles(edges) == []


def test_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


def test_every_package_ships_in_the_wheel():
    """pyproject lists the packages by hand (configs/ is mapped into dlexp/configs): a new
    package missing there would be missing from `pip install .`."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for root in ("dlexp", "hydra_plugins")
        for p in (REPO / root).rglob("__init__.py")
    }
    assert found - listed == set()


CONFIG_NAME = re.compile(r"^(cfg|conf|config|.+_cfg|.+_config)$")
CONFIG_TYPE = re.compile(r"(?<!\w)(Mapping\[str, Any\]|DictConfig)(?!\w)")
# Parameters that look like a config and are not one, each with the reason it may stay
NOT_A_CONFIG = {
    # keyword arguments handed on unread to torchvision's / timm's own builder
    ("dlexp.models.hub", "torchvision_classifier", "kwargs"),
    ("dlexp.models.hub", "timm_classifier", "kwargs"),
}


def config_parameters(source: str, module: str) -> list[tuple[str, str, str]]:
    """(module, function, parameter) for each parameter of a function or method in `source`
    named like a config or annotated as a mapping of config keys, in the order they appear."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        a = node.args
        for arg in [*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg]:
            if arg is None:
                continue
            note = ast.unparse(arg.annotation) if arg.annotation else ""
            if CONFIG_NAME.match(arg.arg) or CONFIG_TYPE.search(note.replace("typing.", "")):
                found.append((arg.lineno, arg.col_offset, (module, node.name, arg.arg)))
    return [f for *_, f in sorted(found)]


def test_the_config_finder_finds_configs():
    source = (
        "def a(data_cfg, x: int): ...\n"
        "class B:\n    def m(self, config): ...\n"
        "def c(y: Mapping[str, Any], z: 'DictConfig', w: Optional[omegaconf.DictConfig]): ...\n"
        "def d(*, opts: dict[str, int], cfg=None): ...\n"
        "def e(name: str, options: Mapping[str, int], m: MutableMapping[str, Any]) -> None: ...\n"
        "def f(o: Mapping[str, Any] | None = None, *args: DictConfig) -> Mapping[str, Any]: ...\n"
    )
    assert config_parameters(source, "m") == [
        ("m", "a", "data_cfg"), ("m", "m", "config"), ("m", "c", "y"), ("m", "c", "z"),
        ("m", "c", "w"), ("m", "d", "cfg"), ("m", "f", "o"), ("m", "f", "args"),
    ]  # fmt: skip


def test_data_and_models_take_no_config():
    """Configs stop at the builders (dlexp/engine): every function of dlexp/data and
    dlexp/models takes plain, typed parameters, never the config mapping to read keys from."""
    found = []
    for package in ("data", "models"):
        for path in sorted((REPO / "dlexp" / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found += config_parameters(path.read_text(encoding="utf-8"), module)
    offending = [f"{m}.{f}({p})" for m, f, p in found if (m, f, p) not in NOT_A_CONFIG]
    assert not offending, "take plain parameters, built in dlexp/engine: " + ", ".join(offending)
    stale = NOT_A_CONFIG - set(found)
    assert not stale, f"allowances that no longer apply, remove them: {sorted(stale)}"
