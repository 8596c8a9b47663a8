"""benchmarks/gpu.sh stays runnable on a lent GPU machine: cheap checks of what it relies on.

The real proof is `make gpu-dry-run` (the whole script on the CPU in an environment like the
machine's image; minutes, so not part of the suite). These catch the usual ways it breaks:
a new dependency that neither the image nor the carried wheels hold, a loose pin, a script
that no longer parses or calls a `python` the machine may lack.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
SCRIPTS = ["gpu.sh", "gpu_prepare.sh", "gpu_dry_run.sh"]
ONE_CALL = 'run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=480)'

spec = importlib.util.spec_from_file_location("gpu_env", BENCH / "gpu_env.py")
gpu_env = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_env)


def names(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def image() -> set[str]:
    return {gpu_env.canonical(n) for n in names(BENCH / "gpu_image.txt")}


def pins() -> dict[str, str]:
    found = {}
    for line in names(BENCH / "gpu_wheels.txt"):
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.]+", line), f"not an exact pin: {line}"
        name, version = line.split("==")
        assert gpu_env.canonical(name) not in found, f"{name} pinned twice"
        found[gpu_env.canonical(name)] = version
    return found


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(BENCH / script)], check=True)


def test_every_dependency_of_dlexp_is_in_the_image_or_carried():
    image_names, carried = image(), pins()
    missing = [
        req
        for req in gpu_env.dlexp_requirements()
        if gpu_env.canonical(re.split(r"[<>=!~;\[ ]", req)[0]) not in image_names | set(carried)
    ]
    assert not missing, f"add to benchmarks/gpu_wheels.txt: {missing}"
    assert "torch" in image_names and "hydra-core" in carried


def test_carried_wheels_are_what_the_image_lacks():
    assert not image() & set(pins()), "a carried wheel would shadow the image's own version"
    assert set(pins()) >= gpu_env.DATA_ONLY


def test_unmet_names_missing_and_wrong_versions():
    requirements = [
        "torch>=2.4",
        "omegaconf>=2.3",
        "antlr4-python3-runtime==4.9.*",
        "dataclasses; python_version == '3.6'",  # marker false: not needed
        "PyYAML>=5.1.0",
    ]
    installed = {"torch": "2.3.1", "antlr4-python3-runtime": "4.9.3", "pyyaml": "6.0.2"}
    assert gpu_env.unmet(requirements, installed, "dlexp") == [
        "dlexp needs torch>=2.4: 2.3.1 is installed",
        "dlexp needs omegaconf>=2.3: not installed",
    ]


def test_env_check_passes_here():
    info, problems = gpu_env.check("cpu", None)
    assert problems == []
    assert Path(info["dlexp"]) == ROOT / "dlexp" and info["torch"]


def test_gpu_sh_calls_python3_never_python():
    for script in SCRIPTS:
        code = [
            line for line in (BENCH / script).read_text().splitlines() if not line.startswith("#")
        ]
        bare = [line for line in code if re.search(r"(^|[\s;&|(])python(\s|$)", line)]
        assert not bare, f"{script} calls `python`: {bare}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "gpu"], "--device: cpu, cuda or cuda:N, not 'gpu'"),
        (["--budget", "5m"], "--budget takes whole seconds, not '5m'"),
        (["--fast"], "unknown option '--fast'"),
    ],
)
def test_gpu_sh_refuses_bad_options_before_anything(tmp_path, args, message):
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(BENCH / "gpu.sh"), *args],
        env={"PATH": "/usr/bin:/bin", "OUT": str(out)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and message in result.stderr
    assert not out.exists()


def test_the_one_call_is_written_down():
    assert ONE_CALL in (ROOT / "README.md").read_text()
    assert ONE_CALL in (BENCH / "gpu.sh").read_text()
    assert ".whl/" in (ROOT / ".gitignore").read_text().splitlines()
