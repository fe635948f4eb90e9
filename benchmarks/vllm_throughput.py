"""Recaption throughput, vLLM vs the built-in engine: images/s on the same model and images.

(a) the built-in ``self`` captioner (``vila2.models.generation.Generator``: HF ``generate``,
    length-bucketed batches of ``--batch-size``);
(b) the ``vllm`` captioner (vila2-vllm: vLLM's offline engine, continuous batching).

Both decode greedily and exactly ``--tokens`` new tokens per image (``min_new_tokens`` =
``max_new_tokens``, so a random model's early EOS cannot make one side look faster), are handed
all images in one call, and are timed without model loading; each runs ``--repeats`` times
(alternating) and its best run counts. The captions are compared too (they should be equal).
Runs in an environment with vLLM (``plugins/vllm/scripts/make_env.sh`` builds the CPU one)::

    plugins/vllm/.venv-vllm/bin/python benchmarks/vllm_throughput.py [--images 256] [--tokens 32]
    # a model of your own, e.g. the ~2B one benchmarks/gpu_check.sh builds, on a GPU
    python benchmarks/vllm_throughput.py --model MODEL --images 1024 --tokens 64 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="llava-tiny", help="tiny preset to build when --model is not given")
    parser.add_argument("--model", default=None, help="a model folder (default: build --preset)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's image size")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32, help="the built-in engine's batch size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtype", default=None, help="both engines (default: float32 on CPU, the checkpoint's on GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the built-in engine")
    parser.add_argument("--engine", default="{}", help="JSON: extra vllm.LLM arguments")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    import torch
    from vila2_vllm import fixtures
    from vila2_vllm.captioner import load_vllm

    from vila2.models.generation import Generator

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="vila2-vllm-bench-") as work:
        model = Path(args.model) if args.model else fixtures.build_preset(args.preset, Path(work) / args.preset)
        config = json.loads((model / "config.json").read_text())
        size = args.image_size or int((config.get("vision_config") or {}).get("image_size", 64))
        images = fixtures.images(args.images, size=size)
        prompts = fixtures.prompts(args.images)
        settings: dict[str, Any] = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}
        print(f"model: {model} ({config.get('architectures', ['?'])[0]}), {args.images} images of {size}px, "
              f"{args.tokens} new tokens each, device {device}, torch {torch.__version__}", flush=True)

        started = time.perf_counter()
        builtin = Generator(str(model), batch_size=args.batch_size, dtype=args.dtype, **settings)
        print(f"built-in engine loaded in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        vllm_settings = {**settings, "engine": json.loads(args.engine), "cache_dir": str(Path(work) / "cache")}
        if args.dtype:
            vllm_settings["dtype"] = args.dtype
        fast = load_vllm(str(model), vllm_settings)
        print(f"vLLM engine loaded in {time.perf_counter() - started:.1f} s", flush=True)

        fast(images[:2], prompts[:2])  # warm-up: first-call allocations, CUDA graphs
        builtin(images[:2], prompts[:2])
        times: dict[str, list[float]] = {"builtin": [], "vllm": []}
        outputs: dict[str, list[str]] = {}
        for repeat in range(args.repeats):
            for name, engine in (("builtin", builtin), ("vllm", fast)):
                seconds, outputs[name] = _timed(engine, images, prompts)
                times[name].append(seconds)
                print(f"  run {repeat + 1}: {name:8s} {args.images / seconds:8.1f} images/s ({seconds:.1f} s)",
                      flush=True)

    rates = {name: args.images / min(runs) for name, runs in times.items()}
    same = sum(a == b for a, b in zip(outputs["builtin"], outputs["vllm"], strict=True))
    print(f"built-in engine: {rates['builtin']:.1f} images/s")
    print(f"vLLM:            {rates['vllm']:.1f} images/s")
    print(f"vLLM / built-in: {rates['vllm'] / rates['builtin']:.2f}x")
    print(f"equal captions:  {same} of {args.images}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rates": rates, "times": times, "equal": same,
                                               "images": args.images, "tokens": args.tokens, "model": str(model),
                                               "device": device}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
