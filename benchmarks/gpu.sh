#!/usr/bin/env bash
# The prepared GPU check (one run, no network, under 8 minutes on one H100/H200 including
# compilation): first the CUDA-marked tests (decoding with static caches under CUDA graphs,
# tree collection, a bf16 training run and the server, on tiny models), then the speed of
# plain generate against MAVIS, eager and compiled, at the paper's shapes (benchmarks/gpu.py;
# its last line is JSON). Extra arguments go to benchmarks/gpu.py.
# Usage: bash benchmarks/gpu.sh [--budget-s 420]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c "import torch, transformers; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
start=$(date +%s)
"$PY" -m pytest -m cuda -p no:cacheprovider tests/test_cuda.py tests/test_static_layout.py
echo "cuda tests: $(( $(date +%s) - start )) s"
"$PY" benchmarks/gpu.py "$@"
