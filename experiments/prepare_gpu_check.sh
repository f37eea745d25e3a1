#!/usr/bin/env bash
# Fill the git-ignored folder .device/ with what experiments/gpu_check.sh needs on a lent GPU machine
# that reaches no network: the MNIST IDX files (from ../shared/data/mnist) and wheels of the packages
# its image lacks (for its Python 3.12). Then call the device tool with carry [".device"] and the
# command "bash experiments/gpu_check.sh" (timeout about 540 s).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device/data/mnist .device/wheels
cp "${GENMEM_SHARED_DATA:-../shared/data}"/mnist/*-ubyte.gz .device/data/mnist/
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .device/wheels pyro-ppl==1.9.1 pyro-api==0.1.2 captum==0.9.0
du -sh .device
