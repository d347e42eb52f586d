#!/usr/bin/env bash
# The CUDA glue checked on the CPU against mamba-ssm's and causal-conv1d's own reference functions
# (tests/model/test_kernel_refs.py). Installs, into this Python, einops and triton (which the
# libraries import; triton is ~1 GB installed, which is why CI does not do this) and the two
# libraries without their CUDA builds, from the sdists in benchmarks/sdists; then runs
# `pytest -m kernel_refs` and fails if those tests were skipped rather than run.
# Usage: benchmarks/kernel_refs.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet einops triton
MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE \
    python -m pip install --quiet --no-build-isolation --no-deps \
    benchmarks/sdists/mamba_ssm-2.3.2.post1.tar.gz benchmarks/sdists/causal_conv1d-1.7.0.tar.gz
log=$(mktemp)
trap 'rm -f "$log"' EXIT
python -m pytest -m kernel_refs -rs "$@" | tee "$log"
if grep -Eq "[0-9]+ skipped" "$log"; then
    echo "kernel_refs.sh: tests were skipped (see the reasons above), not run" >&2
    exit 1
fi
