#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (about 5 minutes on one GPU):
#   bash benchmarks/gpu.sh            results land in benchmarks/results/*.json (and $OUT if set)
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python benchmarks/parity.py --device cuda --batch-sizes 512 --epochs 5
python benchmarks/parity.py --device cuda --batch-sizes 512 --epochs 5 --extra trainer.precision=bf16
python benchmarks/parity.py --device cuda --batch-sizes 512 --epochs 5 --extra trainer.precision=bf16 trainer.compile=true
python benchmarks/data_path.py --device cuda --batch-size 512 --epochs 5
python benchmarks/parity.py --device cuda --models lstm --batch-sizes 512 --epochs 3
python benchmarks/time_to_accuracy.py --device cuda --target 0.97
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*.json "$OUT"/; fi
