#!/usr/bin/env bash
# The GPU figures of the README's Speed section, measured on a lent GPU machine in one call.
#   here, once:  bash benchmarks/gpu_prepare.sh   (the wheels the machine's image lacks, to .whl/)
#   there:       run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=480)
# The machine has python3 with torch but no registry: the carried wheels are installed into a
# temporary folder and the checkout is put on PYTHONPATH. Each benchmark runs under its own
# time limit, all of them within one budget; a step that fails is written down and the next
# one runs. Everything lands under $OUT (benchmarks/results/gpu/ where OUT is unset):
#   summary.txt   one line per step (ok, failed and why, timed out, skipped) and its seconds
#   results.json  the JSON of every benchmark that finished, rewritten after each step
#   env.json      Python, torch, the device and the carried wheels
#   gpu.log       everything printed
# Options: --device cuda|cuda:N|cpu (default cuda), --quick (tiny settings, as the dry run
# uses), --budget SECONDS for the whole script (default 360). Exit 0: every step ran;
# 1: some step did not (the others' results are kept); 2: this machine cannot run them.
# The same script on the CPU, in an environment like the GPU image's: make gpu-dry-run.
set -uo pipefail # no -e: a failed step must not end the others
cd "$(dirname "$0")/.."

device=cuda quick=0 budget=360
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=${2:-}; shift 2 || shift ;;
        --quick) quick=1; shift ;;
        --budget) budget=${2:-}; shift 2 || shift ;;
        -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "error: unknown option '$1'; options: --device, --quick, --budget" >&2; exit 2 ;;
    esac
done
[[ $device =~ ^(cpu|cuda(:[0-9]+)?)$ ]] || { echo "error: --device: cpu, cuda or cuda:N, not '$device'" >&2; exit 2; }
[[ $budget =~ ^[0-9]+$ ]] || { echo "error: --budget takes whole seconds, not '$budget'" >&2; exit 2; }

OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1 DLEXP_BENCH_RESULTS="$work/results" DLEXP_OUTPUT_ROOT="$work/outputs"
rm -f "$OUT/summary.txt" "$OUT/results.json" "$OUT/env.json" "$OUT/gpu.log"

# Runs one step: its own time limit, cut to what is left of the budget; then its line in
# summary.txt and every result so far in results.json.
step() {
    local name=$1 limit=$2 left rc took status before after
    shift 2
    left=$((budget - SECONDS))
    if [ "$left" -lt 20 ]; then
        summary "$name" "skipped: the ${budget} s budget is spent" 0
        failed=1
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name: $* (at most ${limit} s)"
    before=$(ls "$DLEXP_BENCH_RESULTS" 2>/dev/null)
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$work/step.log"
    rc=${PIPESTATUS[0]}
    took=$((SECONDS - start))
    case $rc in
        0) status=ok ;;
        124 | 137) status="timed out after ${limit} s" ;;
        *) status="failed (exit $rc, torch $torch): $(grep -v '^\s*$' "$work/step.log" | tail -n 1)" ;;
    esac
    [ "$rc" -eq 0 ] || failed=1
    after=$(ls "$DLEXP_BENCH_RESULTS" 2>/dev/null)
    new=$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')
    collect
    summary "$name" "$status${new:+ -> ${new% }}" "$took"
}

summary() { printf '%-20s %4d s  %s\n' "$1" "$3" "$2" | tee -a "$OUT/summary.txt"; }

collect() {
    python3 - "$DLEXP_BENCH_RESULTS" "$work/results.json" <<'EOF'
import json, pathlib, sys
found = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))}
pathlib.Path(sys.argv[2]).write_text(json.dumps(found, indent=2) + "\n")
EOF
    mv "$work/results.json" "$OUT/results.json"
}

main() {
    echo "gpu.sh: device $device, $([ $quick = 1 ] && echo quick || echo full) settings, budget ${budget} s, results in $OUT"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    site=$work/site
    shopt -s nullglob
    local wheels=(.whl/*.whl)
    if [ "${#wheels[@]}" -gt 0 ]; then
        echo "installing ${#wheels[@]} carried wheels: ${wheels[*]##*/}"
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --disable-pip-version-check --target "$site" "${wheels[@]}" || {
            echo "error: the carried wheels in .whl/ did not install; rebuild them: bash benchmarks/gpu_prepare.sh" >&2
            return 2
        }
    fi
    export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
    python3 benchmarks/gpu_env.py --device "$device" --site "$site" --json "$OUT/env.json" || return 2
    torch=$(python3 -c 'import torch; print(torch.__version__)')

    local e=5 lstm_e=3 tta=(--target 0.97) small=()
    # quick: one timed round, and a tenth of the training digits (the rest goes to validation)
    [ $quick = 1 ] && e=1 lstm_e=1 tta=(--target 0.5 --epochs 2) small=(--overrides data.val_fraction=0.9)
    local parity=(python3 benchmarks/parity.py --device "$device" --batch-sizes 512 "${small[@]}")
    failed=0
    : >"$OUT/summary.txt"
    step "parity fp32" 120 "${parity[@]}" --epochs $e
    step "parity bf16" 120 "${parity[@]}" --epochs $e --extra trainer.precision=bf16
    step "data path" 120 python3 benchmarks/data_path.py --device "$device" --batch-size 512 --epochs $e
    step "time to accuracy" 180 python3 benchmarks/time_to_accuracy.py --device "$device" "${tta[@]}" "${small[@]}"
    step "parity lstm" 240 "${parity[@]}" --models lstm --epochs $lstm_e
    # last: compiling is the slowest step and the likeliest to fail on another torch
    step "parity bf16 compile" 240 "${parity[@]}" --epochs $e --extra trainer.precision=bf16 trainer.compile=true
    echo "=== done in ${SECONDS} s; $OUT:"
    cat "$OUT/summary.txt"
    return $failed
}

main 2>&1 | tee "$OUT/gpu.log"
exit "${PIPESTATUS[0]}"
