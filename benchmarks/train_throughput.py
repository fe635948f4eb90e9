"""Training throughput: vila2's trainer vs ``transformers.Trainer`` on the same tiny model, data
and batch size, in one run.

The data mixes short web alt-texts with long detailed captions (the lengths a VILA² mixture has),
so batches padded to their longest example waste much of their compute; vila2 groups examples
of similar length. Both trainers see the same examples, encoded and collated by the same code,
with the same optimizer settings and frozen vision tower.

    python benchmarks/train_throughput.py [--steps 30] [--batch-size 16] [--world-size demo] [--threads 1] [--repeats 2]
        [--model vila2/recipes/world-start] [--kept-encodings]

Prints samples/s for each trainer, the padding fraction of their batches and the ratio; and
vila2's trainer with logits at every position against logits at the answer positions only.
``--kept-encodings`` compares instead encoded examples kept between epochs with encoding them
in every epoch, over about three epochs.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _mixture(world: Path, pretrain_weight: float = 1.0) -> list[dict]:
    return [
        {"dataset": str(world / "pretrain"), "layers": ["alt"], "template": "concat", "weight": pretrain_weight},
        {"dataset": str(world / "sft"), "layers": ["conversations"], "template": "conversation"},
    ]


def run_vila2(model: Path, world: Path, out: Path, steps: int, batch_size: int, grouped: bool,
              answers_only: bool = True, cache_mb: int = 1024, pretrain_weight: float = 1.0) -> dict:
    """One vila2 training run; ``answers_only=False`` makes the head compute logits at every
    position (as ``model(...).loss`` does), the baseline for the answer-position logits;
    ``cache_mb=0`` encodes every example again in every epoch."""
    import json
    from unittest import mock

    from vila2.training.trainer import train

    with mock.patch("vila2.training.trainer.keeps_logits", return_value=answers_only):
        result = train({"model": str(model), "out": str(out), "mixture": _mixture(world, pretrain_weight),
                        "max_steps": steps, "batch_size": batch_size, "group_by_length": grouped,
                        "save_every": 0, "max_length": 256, "lr": 1e-3, "cache_mb": cache_mb})
    done = json.loads((result / "training" / "done.json").read_text())
    return {"samples_per_second": done["samples_per_second"], "seconds": done["seconds"]}


class _LoopClock:
    """Times the training loop only (``on_train_begin`` to ``on_train_end``), as vila2's
    ``done.json`` does, so setup costs are left out of both numbers."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        self.start = self.end = 0.0
        clock = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                clock.start = time.perf_counter()

            def on_train_end(self, args, state, control, **kwargs):
                clock.end = time.perf_counter()

        self.callback = Callback()


def run_hf_trainer(model_dir: Path, world: Path, out: Path, steps: int, batch_size: int) -> dict:
    from transformers import Trainer, TrainingArguments

    from vila2.data.mixture import build_examples
    from vila2.models.checkpoint import load
    from vila2.training.collate import EncodedExamples, ExampleEncoder, collate
    from vila2.training.stages import freeze_for_stage

    model, processor = load(model_dir)
    freeze_for_stage(model, "sft")
    examples = build_examples(_mixture(world))
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=1e-3,
        lr_scheduler_type="cosine", warmup_steps=0.03, max_grad_norm=1.0, logging_steps=10,
        save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
        remove_unused_columns=False, seed=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=EncodedExamples(examples, ExampleEncoder(processor, 256)),
                      data_collator=functools.partial(collate, pad_token_id=processor.tokenizer.pad_token_id))
    clock = _LoopClock()
    trainer.add_callback(clock.callback)
    trainer.train()
    seconds = clock.end - clock.start
    return {"samples_per_second": round(steps * batch_size / seconds, 2), "seconds": round(seconds, 2)}


def padding(model_dir: Path, world: Path, batch_size: int) -> dict[str, float]:
    from vila2.data.mixture import build_examples
    from vila2.models.checkpoint import load
    from vila2.training.batching import LengthGroupedBatches, padding_ratio
    from vila2.training.collate import ExampleEncoder

    _, processor = load(model_dir)
    encoder = ExampleEncoder(processor, 256)
    lengths = encoder.lengths(build_examples(_mixture(world)))
    return {
        "grouped": padding_ratio(lengths, LengthGroupedBatches(lengths, batch_size).batches()),
        "random": padding_ratio(lengths, LengthGroupedBatches(lengths, batch_size, group_by_length=False).batches()),
        "examples": len(lengths), "mean_length": sum(lengths) / len(lengths), "max_length": max(lengths),
    }


def kept_encodings(model: Path, world: Path, root: Path, steps: int, batch_size: int, repeats: int) -> None:
    """Encoded examples kept for the next epoch against encoding them every time, on the demo's
    round-0 shape: a quarter of the pretraining alt-texts (1,000 of the demo world's) + the SFT
    mix, so 500 steps of 16 see every example about three times."""
    from vila2.data.mixture import build_examples

    n = len(build_examples(_mixture(world, 0.25)))
    runs: dict[str, list[dict]] = {"kept": [], "encoded": []}
    for r in range(repeats):
        for name, cache in (("kept", 1024), ("encoded", 0)):
            runs[name].append(run_vila2(model, world, root / f"{name}{r}", steps, batch_size, grouped=True,
                                        cache_mb=cache, pretrain_weight=0.25))
    kept, encoded = (max(runs[k], key=lambda x: x["samples_per_second"]) for k in ("kept", "encoded"))
    print(f"\n{model}, {n} examples, {steps} steps of {batch_size} ({steps * batch_size / n:.1f} epochs), "
          f"best of {repeats}")
    print(f"vila2, every epoch encoded   {encoded['samples_per_second']:8.1f} samples/s ({encoded['seconds']} s)")
    print(f"vila2, encodings kept        {kept['samples_per_second']:8.1f} samples/s ({kept['seconds']} s)")
    print(f"ratio kept / encoded: {kept['samples_per_second'] / encoded['samples_per_second']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--world-size", default="tiny")
    parser.add_argument("--preset", default="llava-tiny")
    parser.add_argument("--model", type=Path, help="a model folder to train instead of a new --preset model "
                        "(vila2/recipes/world-start: the demo's starting point)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs; the best of each counts")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for tiny models)")
    parser.add_argument("--kept-encodings", action="store_true",
                        help="only compare encoded examples kept between epochs with encoding them every time")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from vila2.models.presets import build
    from vila2.world import world_texts, write_world

    root = Path(tempfile.mkdtemp(prefix="vila2-throughput-"))
    world = write_world(root / "world", seed=0, size=args.world_size)
    model = args.model or build(args.preset, root / "model", texts=world_texts(world), seed=0)
    if args.kept_encodings:
        kept_encodings(model, world, root, args.steps, args.batch_size, args.repeats)
        return
    pads = padding(model, world, args.batch_size)
    runs: dict[str, list[dict]] = {"hf": [], "grouped": [], "random": [], "all": []}
    for r in range(args.repeats):  # alternate, keep the best: the machine's load varies
        runs["hf"].append(run_hf_trainer(model, world, root / f"hf{r}", args.steps, args.batch_size))
        runs["grouped"].append(run_vila2(model, world, root / f"grouped{r}", args.steps, args.batch_size, True))
        runs["random"].append(run_vila2(model, world, root / f"random{r}", args.steps, args.batch_size,
                                        grouped=False))
        runs["all"].append(run_vila2(model, world, root / f"all{r}", args.steps, args.batch_size, grouped=True,
                                     answers_only=False))
    hf, ours, ungrouped, every = (max(runs[k], key=lambda x: x["samples_per_second"])
                                  for k in ("hf", "grouped", "random", "all"))
    print(f"\n{args.model or args.preset}, {pads['examples']} examples (mean {pads['mean_length']:.0f} tokens, max "
          f"{pads['max_length']}), batch {args.batch_size}, {args.steps} steps, best of {args.repeats}, "
          f"{args.threads} thread(s), "
          f"{os.cpu_count()} CPUs")
    print(f"padding: length-grouped {pads['grouped']:.1%}, random {pads['random']:.1%}")
    print(f"transformers.Trainer         {hf['samples_per_second']:8.1f} samples/s ({hf['seconds']} s)")
    print(f"vila2 (random batches)       {ungrouped['samples_per_second']:8.1f} samples/s ({ungrouped['seconds']} s)")
    print(f"vila2 (grouped, all logits)  {every['samples_per_second']:8.1f} samples/s ({every['seconds']} s)")
    print(f"vila2 (length-grouped)       {ours['samples_per_second']:8.1f} samples/s ({ours['seconds']} s)")
    print(f"ratio answer-position logits / all logits: "
          f"{ours['samples_per_second'] / every['samples_per_second']:.2f}x")
    print(f"ratio vila2 / Trainer: {ours['samples_per_second'] / hf['samples_per_second']:.2f}x")


if __name__ == "__main__":
    main()
