#!/usr/bin/env bash
# The prepared GPU check (python -m bench.gpu) for a lent device machine, in two steps:
#   here, where the package registry is reachable:  bash bench/gpu_check.sh fetch
#       (downloads the wheels the GPU image lacks into .whl/, git-ignored locally)
#   there, through the device tool's run with carry [".whl"]:  bash bench/gpu_check.sh
#       (installs them, runs the check inside a wall budget, writes $OUT/gpu.{txt,log,json})
# The GPU image has torch, transformers and safetensors; diffusers and cityscapesscripts
# (whose label table amadapter imports) travel as wheels. bench.gpu imports no Beam.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(diffusers==0.42.1 cityscapesscripts==2.3.0)

if [[ "${1:-}" == fetch ]]; then
    grep -qxF '/.whl/' .git/info/exclude || echo '/.whl/' >>.git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    exit 0
fi

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
out="${OUT:-out/gpu_check}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" || true
# 8 minutes in all: the check stops starting measurements after 380 s
timeout 470 python3 -m bench.gpu --budget-s 380 2>&1 | tee "$out/gpu.log"
tail -n 1 "$out/gpu.log" >"$out/gpu.json"
