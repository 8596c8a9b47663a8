#!/usr/bin/env bash
# Run here, before a lent GPU machine is used: fetches the wheels its image lacks
# (benchmarks/gpu_wheels.txt) for Python 3.12 on x86-64 Linux into .whl/, which git ignores
# and the device call carries. A pin published only as a source archive is built here, and
# must give a pure-Python wheel. A failed run leaves the previous .whl/ as it was.
#   bash benchmarks/gpu_prepare.sh            (PYTHON=python3 by default: any Python with pip)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEST=.whl
LIMIT_MB=64   # what one device call may carry, the working tree included
PINS=benchmarks/gpu_wheels.txt
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)

mapfile -t pins < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PINS" | grep -v '^$')
for pin in "${pins[@]}"; do
    [[ $pin == *==* ]] || { echo "error: $PINS: '$pin' is no exact pin (NAME==VERSION)" >&2; exit 2; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done

for pin in "${pins[@]}"; do
    name=${pin%%==*}
    if "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platform_args[@]}" -d "$tmp" "$pin" 2>"$tmp/.log"; then
        echo "fetched $pin"
    else
        # no wheel for 3.12/x86-64: a pure-Python source archive builds into one anywhere
        "$PYTHON" -m pip wheel -q --no-deps --no-binary="$name" -w "$tmp" "$pin" 2>>"$tmp/.log" || {
            grep -v 'is ignored' "$tmp/.log" >&2
            echo "error: $pin: no wheel for Python 3.12 on x86-64 Linux, nor a source archive that builds here" >&2
            exit 1
        }
        echo "built $pin from its source archive"
    fi
done
rm -f "$tmp/.log"

# one wheel per pin (two versions of a package stop the whole install there), each pure
# Python or built for x86-64 Linux and CPython 3.12
shopt -s nullglob
wheels=("$tmp"/*.whl)
canon() { echo "$1" | tr 'A-Z' 'a-z' | sed 's/[-_.]\+/_/g'; }
for pin in "${pins[@]}"; do
    want="$(canon "${pin%%==*}")-${pin##*==}"
    n=0
    for w in "${wheels[@]}"; do
        file=${w##*/}
        IFS=- read -r wname wversion _ <<<"$file"
        [ "$(canon "$wname")-$wversion" = "$want" ] || continue
        n=$((n + 1))
        case "$file" in
            *-py3-none-any.whl | *-py2.py3-none-any.whl | *-cp312-*x86_64.whl | *-abi3-*x86_64.whl) ;;
            *) echo "error: $file does not run on Python 3.12 on x86-64 Linux" >&2; exit 1 ;;
        esac
    done
    [ "$n" -eq 1 ] || { echo "error: $pin: expected one wheel, found $n" >&2; exit 1; }
done
if [ "${#wheels[@]}" -ne "${#pins[@]}" ]; then
    echo "error: ${#wheels[@]} wheels for ${#pins[@]} pins" >&2; exit 1
fi
size_kb=$(du -sk "$tmp" | cut -f1)
if [ "$size_kb" -ge $((LIMIT_MB * 1024)) ]; then
    echo "error: the wheels take ${size_kb} KiB, over the ${LIMIT_MB} MiB a device call carries" >&2
    exit 1
fi
cp "$PINS" "$tmp/.pins"   # gpu_dry_run.sh compares it with the list to know they match
chmod 755 "$tmp"
rm -rf "$DEST"
mv "$tmp" "$DEST"
trap - EXIT
echo "${#wheels[@]} wheels, ${size_kb} KiB, in $DEST/"
