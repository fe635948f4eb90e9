#!/usr/bin/env bash
# GPU check for vila2 training, offline: builds a ~2B-parameter random LLaVA-style model
# (SigLIP-so400m-like tower at 336 px, 576 image tokens; a 2048-wide, 24-layer Llama decoder),
# trains a few steps with flash-attention-2 (when the package imports) and with SDPA, in bf16,
# and prints tokens/s for each.
#
#   bash benchmarks/gpu_check.sh [STEPS] [BATCH_SIZE]
#
# Needs: a CUDA GPU with >= 40 GB, the vila2 venv active; no network access.
set -euo pipefail

STEPS="${1:-10}"
BATCH="${2:-8}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORK="$(mktemp -d -t vila2-gpu-check-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

python - "$WORK" "$STEPS" "$BATCH" <<'PY'
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

from vila2.models.presets import build
from vila2.training.trainer import train
from vila2.world import world_texts, write_world

work, steps, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible")
print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")

world = write_world(work / "world", seed=0, size="tiny")
started = time.perf_counter()
model = build(
    "llava-tiny", work / "model", texts=world_texts(world), seed=0,
    vocab_size=32000, hidden_size=2048, num_layers=24, num_heads=32, num_kv_heads=4,
    intermediate_size=8192, vision_hidden_size=1152, vision_layers=27, vision_heads=16,
    vision_intermediate_size=4304, image_size=336, patch_size=14, max_position_embeddings=2048,
)
config = json.loads((model / "config.json").read_text())
size = sum(f.stat().st_size for f in model.glob("*.safetensors")) / 4  # float32 weights
print(f"built a {size / 1e9:.2f}B-parameter model in {time.perf_counter() - started:.0f} s "
      f"({config['text_config']['num_hidden_layers']} decoder layers)")

mixture = [
    {"dataset": str(world / "pretrain"), "layers": ["alt"], "template": "concat"},
    {"dataset": str(world / "sft"), "layers": ["conversations"], "template": "conversation"},
]
implementations = ["sdpa"]
if importlib.util.find_spec("flash_attn") is not None:
    implementations.insert(0, "flash_attention_2")
else:
    print("flash_attn is not installed: SDPA only (pip install flash-attn to compare)")

results = {}
for impl in implementations:
    try:
        out = train({
            "model": str(model), "out": str(work / f"run-{impl}"), "mixture": mixture, "stage": "sft",
            "max_steps": steps, "batch_size": batch, "lr": 1e-5, "mixed_precision": "bf16",
            "attn_implementation": impl, "max_length": 1024, "save_every": 0,
        })
    except Exception as exc:  # report and go on with the next implementation
        print(f"{impl}: FAILED: {type(exc).__name__}: {exc}")
        continue
    done = json.loads((out / "training" / "done.json").read_text())
    results[impl] = done["tokens_per_second"]
    print(f"{impl}: {done['tokens_per_second']:.0f} tokens/s, {done['samples_per_second']:.1f} samples/s "
          f"({done['steps']} steps in {done['seconds']} s, peak memory "
          f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB)")
    torch.cuda.reset_peak_memory_stats()

if len(results) == 2:
    print(f"flash_attention_2 / sdpa: {results['flash_attention_2'] / results['sdpa']:.2f}x")
if not results:
    sys.exit("gpu_check: no implementation trained")
PY

# ---------------------------------------------------------------------------------------------
# vLLM vs the built-in engine (plugins/vllm, vila2-vllm): recaption images/s on the same ~2B
# model, in bf16, greedy, 64 new tokens per image; prints both rates, the ratio and how many
# captions are equal. vLLM brings its own torch, so it runs in an environment of its own:
# VILA2_VLLM_PYTHON names a python that has vllm + vila2 + vila2-vllm, else one is built with
# `VILA2_VLLM_FLAVOUR=gpu plugins/vllm/scripts/make_env.sh` (pip install vllm: minutes, GBs).
# VILA2_VLLM_CHECK=0 skips this part; VILA2_VLLM_IMAGES sets the image count (default 512).
if [[ "${VILA2_VLLM_CHECK:-1}" == "1" ]]; then
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  VLLM_PY="${VILA2_VLLM_PYTHON:-}"
  if [[ -z "$VLLM_PY" ]]; then
    VILA2_VLLM_FLAVOUR=gpu bash "$ROOT/plugins/vllm/scripts/make_env.sh"
    VLLM_PY="${VILA2_VLLM_VENV:-$ROOT/plugins/vllm/.venv-vllm-gpu}/bin/python"
  fi
  echo "--- vLLM vs built-in recaption throughput ($WORK/model)"
  "$VLLM_PY" "$ROOT/benchmarks/vllm_throughput.py" --model "$WORK/model" --images "${VILA2_VLLM_IMAGES:-512}" \
    --tokens 64 --batch-size 32 --dtype bfloat16 --repeats 2 \
    --engine '{"gpu_memory_utilization": 0.5, "max_model_len": 2048}'
fi
