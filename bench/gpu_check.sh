#!/usr/bin/env bash
# Issue 13's GPU check as one command for a machine with one NVIDIA GPU: gpt2_small training
# throughput of `nnspec train` against a hand-written loop, eager and compiled
# (bench/bench_gpu_throughput.py). Writes FOLDER/gpu_throughput.log and .json (default: here).
#
# A machine whose Python lacks nnspec's pure-Python needs (lark, pydantic) gets them as wheels
# in .whl/ (see the README's Benchmarks section); they are installed into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath "${1:-.}")
shift || true
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
python=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$python" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$out/gpu_throughput.log"
timeout 540 "$python" bench/bench_gpu_throughput.py --json "$out/gpu_throughput.json" "$@" 2>&1 \
  | tee -a "$out/gpu_throughput.log"
