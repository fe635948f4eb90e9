"""One process or two ranks: a demo round's training and recaption, timed as a run does them.

``processes: 1`` trains and captions in the run's own process; ``processes: 2`` starts
``accelerate launch`` for each step (two gloo ranks of one thread each: DDP training with the
same effective batch, captioning sharded by rank), the code path of ``vila2.pipeline.launch``.
Both are timed end to end as a step pays for them: process starts, imports and model loading
included. The two settings alternate ``--repeats`` times in this one process; the best of each
counts, so a burst of load from other jobs does not decide the ratio. ``--busy`` keeps one core
spinning throughout (the demo's budget is measured with the other core busy).

    python benchmarks/ranks.py [--steps 120] [--images 400] [--repeats 2] [--busy]

Data: the demo-sized embedded world (seed 0): its first ``--images`` pretraining images in shards
of 100 (as a run's ``pretrain_limit`` subset), alt-text + SFT for training; the model: the
shipped starting point (``world-start``); the demo recipe's batch sizes, learning rate and
caption length.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def spin() -> None:
    """Keep a core busy, as another job would."""
    while True:
        pass


def subset(world: Path, out: Path, n: int) -> Path:
    """The first ``n`` pretraining images in shards of 100, as a run's ``pretrain_limit``."""
    from vila2.data import Dataset

    source, target = Dataset.open(world / "pretrain"), Dataset.create(out)
    with target.writer(shard_size=100, source="ranks benchmark") as writer:
        for _, sample in zip(range(n), source.iter_samples(), strict=False):
            writer.add(sample["id"], sample["image"], sample["width"], sample["height"])
    return out


def train_spec(model: Path, world: Path, out: Path, steps: int) -> dict:
    return {"model": str(model), "out": str(out), "stage": "sft", "max_steps": steps, "batch_size": 16,
            "lr": 2e-3, "warmup_ratio": 0.05, "max_length": 256, "save_every": 0, "seed": 0,
            "mixture": [{"dataset": str(world / "pretrain"), "layers": ["alt"], "template": "concat"},
                        {"dataset": str(world / "sft"), "layers": ["conversations"], "template": "conversation",
                         "prompt": None}]}


def caption_spec(model: Path, images: Path, layer: str) -> dict:
    return {"dataset": str(images), "model": str(model), "layer": layer, "prompts": "long", "batch_size": 64,
            "max_new_tokens": 96, "filters": ["repeated_sentence"], "progress": False}


def timed(kind: str, spec: dict, processes: int, folder: Path) -> float:
    """Seconds for one step of ``kind`` on ``processes`` (1: in this process)."""
    start = time.perf_counter()
    if processes == 1:
        if kind == "train":
            from vila2.training.trainer import TrainConfig, train

            train(TrainConfig(**spec))
        else:
            from vila2.captioning.engine import caption_dataset

            caption_dataset(**spec)
    else:
        from vila2.pipeline.launch import launch

        if kind == "train":  # the same effective batch: each rank takes its share, as a run does
            spec = {**spec, "batch_size": spec["batch_size"] // processes}
        launch(kind, spec, processes=processes, folder=folder, threads=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120, help="training steps of 16 per run")
    parser.add_argument("--images", type=int, default=400, help="images recaptioned per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--busy", action="store_true", help="keep one core spinning throughout")
    args = parser.parse_args()

    import torch

    from vila2.data import Dataset
    from vila2.pipeline.recipe import PACKAGED
    from vila2.world import write_world

    torch.set_num_threads(1)  # as the demo recipe (threads: 1)
    model = PACKAGED / "world-start"
    root = Path(tempfile.mkdtemp(prefix="vila2-ranks-"))
    spinner = multiprocessing.Process(target=spin, daemon=True) if args.busy else None
    try:
        world = write_world(root / "world", seed=0, size="demo")
        images = subset(Path(world), root / "images", args.images)
        if spinner is not None:
            spinner.start()
        best: dict[tuple[str, int], float] = {}
        for repeat in range(args.repeats):
            for processes in (1, 2):
                for kind in ("train", "caption"):
                    folder = root / f"{kind}-{processes}-{repeat}"
                    layer = f"cap-{processes}-{repeat}"
                    spec = (train_spec(model, Path(world), folder, args.steps) if kind == "train"
                            else caption_spec(model, images, layer))
                    seconds = timed(kind, spec, processes, folder)
                    if kind == "caption":
                        Dataset.open(images).delete_layer(layer)
                    shutil.rmtree(folder, ignore_errors=True)
                    best[kind, processes] = min(seconds, best.get((kind, processes), float("inf")))
                    print(f"repeat {repeat}: {kind:7s} on {processes} process(es): {seconds:6.1f} s", flush=True)
    finally:
        if spinner is not None:
            spinner.terminate()
        shutil.rmtree(root, ignore_errors=True)

    load = "one core kept busy" if args.busy else "no load added"
    print(f"\nbest of {args.repeats}, {load}; {args.steps} steps of 16, {args.images} images:")
    print("| step | 1 process (s) | 2 ranks (s) | 2 ranks / 1 process |")
    print("|---|---:|---:|---:|")
    for kind in ("train", "caption"):
        one, two = best[kind, 1], best[kind, 2]
        print(f"| {kind} | {one:.1f} | {two:.1f} | {two / one:.2f} |")


if __name__ == "__main__":
    main()
