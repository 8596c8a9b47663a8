#!/usr/bin/env bash
# `make gpu-dry-run`: benchmarks/gpu.sh end to end on the CPU, as it would run on a lent GPU
# machine. A virtual environment holds only packages of that machine's image (IMAGE_PKGS, each
# checked against gpu_image.txt, and nothing else they pull in may be missing from it either);
# the wheels of gpu_prepare.sh travel in .whl/ and are installed the way gpu.sh installs them;
# the script runs with a clean environment, no pip configuration, `python3` from that
# environment and no `python` at all, with --device cpu --quick. Then it checks what came back:
# every step ok, every benchmark's JSON, and no more files, nor deeper, than a device call returns.
#   GPU_DRY_VENV=DIR  where the environment lives (kept and reused: building it takes minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=${GPU_DRY_VENV:-$ROOT/.venv-gpu}
IMAGE_PKGS=(torch torchvision tensorboard rich matplotlib numpy pillow pyyaml packaging)
EXPECTED=(parity parity_bf16 data_path time_to_accuracy parity_lstm parity_bf16_true)
LIMIT_KB=$((64 * 1024)) # what one device call carries: the working tree and .whl/
fail() { echo "gpu-dry-run: FAILED: $*" >&2; exit 1; }
canon() { tr 'A-Z_.' 'a-z--'; }

image=$(sed 's/#.*//' benchmarks/gpu_image.txt | grep -v '^\s*$' | canon)
for pkg in "${IMAGE_PKGS[@]}"; do
    grep -qx "$pkg" <<<"$image" || fail "$pkg is not in the GPU image (benchmarks/gpu_image.txt)"
done

# 1. the wheels, fetched again whenever gpu_wheels.txt changed
if ! cmp -s benchmarks/gpu_wheels.txt .whl/.pins; then
    PYTHON=$PYTHON bash benchmarks/gpu_prepare.sh
fi
# what travels: tracked and untracked-not-ignored files, plus the carried folder
tree_kb=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -ck 2>/dev/null | tail -n 1 | cut -f1) || echo 0)
whl_kb=$(du -sk .whl | cut -f1)
echo "travels: working tree ${tree_kb} KiB + .whl ${whl_kb} KiB (limit ${LIMIT_KB} KiB)"
[ $((tree_kb + whl_kb)) -lt "$LIMIT_KB" ] || fail "over the 64 MiB a device call carries"

# 2. the environment: only the image's packages
not_in_image() {
    "$VENV/bin/python3" -m pip list --format=freeze 2>/dev/null | cut -d= -f1 | canon |
        grep -vx -F "$image" | grep -vx pip || true
}
stamp="$VENV/.gpu-dry-run"
if ! [ -x "$VENV/bin/python3" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${IMAGE_PKGS[*]}" ]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python3" -m pip install -q "${IMAGE_PKGS[@]}" 2> >(grep -v 'is ignored' >&2)
    # newer releases here can pull in what the image's don't (python-dateutil 4: tzdata)
    extra=$(not_in_image)
    if [ -n "$extra" ]; then
        echo "removing what the GPU image lacks: $(echo $extra)"
        "$VENV/bin/python3" -m pip uninstall -y -q $extra
    fi
    echo "${IMAGE_PKGS[*]}" >"$stamp"
fi
extra=$(not_in_image)
[ -z "$extra" ] || fail "the environment holds packages the GPU image lacks: $(echo $extra)"

# 3. gpu.sh, with nothing of this machine's Python setup leaking in
shim=$(mktemp -d)
out=$(mktemp -d)
trap 'rm -rf "$shim" "$out"' EXIT
printf '#!/bin/sh\nexec "%s" "$@"\n' "$VENV/bin/python3" >"$shim/python3"
printf '#!/bin/sh\necho "gpu.sh called python, which the GPU machine may lack; use python3" >&2\nexit 127\n' >"$shim/python"
chmod +x "$shim/python3" "$shim/python"
rc=0
env -i HOME="$HOME" LANG=C.UTF-8 PATH="$shim:/usr/bin:/bin" OUT="$out" PIP_CONFIG_FILE=/dev/null \
    bash benchmarks/gpu.sh --device cpu --quick --budget "${GPU_DRY_BUDGET:-900}" || rc=$?

# 4. what came back
[ "$rc" -eq 0 ] || fail "gpu.sh exited $rc"
files=$(cd "$out" && find . -type f | sort)
echo "under \$OUT: $(echo $files)"
[ "$(wc -l <<<"$files")" -le 8 ] || fail "more than the 8 files a device call returns"
grep -q '/.*/.*/' <<<"$files" && fail "a file deeper than the 2 folders a device call returns"
grep -v '^[./A-Za-z0-9_-]*$' <<<"$files" && fail "a file name a device call does not return"
grep -Ev '^.{20} +[0-9]+ s  ok( |$)' "$out/summary.txt" && fail "a step did not pass"
"$VENV/bin/python3" - "$out" "${EXPECTED[@]}" <<'EOF' || fail "results.json or env.json is not as expected"
import json, re, sys
from pathlib import Path
out, expected = Path(sys.argv[1]), sys.argv[2:]
results, env = json.loads((out / "results.json").read_text()), json.loads((out / "env.json").read_text())
assert sorted(results) == sorted(expected), f"results.json holds {sorted(results)}"
assert all(r["rows"] and r["device"] == "cpu" for r in results.values()), "a result has no rows"
pins = re.findall(r"^([\w.-]+)==(\S+)", Path("benchmarks/gpu_wheels.txt").read_text(), re.M)
carried = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}
assert env["problems"] == [] and env["carried"] == carried, env
print(f"results.json: {len(results)} benchmarks; torch {env['torch']}, Python {env['python']}")
EOF
echo "gpu-dry-run: passed in ${SECONDS} s"
