#!/usr/bin/env bash
# The GPU check on the project's lent GPU machine (the device tool): install the wheels carried in
# .device/wheels (pyro-ppl, pyro-api, captum: not in that machine's image), then run
# experiments/gpu_check.py on the MNIST files carried in .device/data/mnist. Prepare both here with
# experiments/prepare_gpu_check.sh; results land in $OUT (the device tool's folder) or results/.
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".device/wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .device/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 experiments/gpu_check.py --data-dir .device/data/mnist --out "${OUT:-results}/gpu_check.json" "$@"
