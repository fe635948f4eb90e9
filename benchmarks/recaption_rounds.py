"""Round 0 vs round 1 of VILA² from a starting point that sees: does what the pretraining
captions carry reach the benchmarks?

    python benchmarks/recaption_rounds.py --out /tmp/rr --tower /tmp/sp/tower
        [--warmup-detail none|seed|all] [--warmup-steps 700] [--round-steps 500] [--pretrain 1000]
        [--vqa 1000] [--captions 300]

The world shape: the SFT mix of every round is the demo world's (1,500 general-VQA conversations +
the detailed-caption seed, 4 % of the pretraining images), so SFT teaches "describe in detail" on
160 images only. The starting point is ``llava-tiny`` on the pretrained tower (frozen), warmed up on
``--warmup-detail``: ``seed`` = that same SFT mix, ``none`` = VQA only (the starting point knows no
description), ``all`` = every SFT conversation with a description (the probe's mix).

* round 0: from the starting point, ``--round-steps`` steps on alt-text captions of ``--pretrain``
  images + the SFT mix;
* the round-0 model recaptions those images (long prompts; ``word_count >= 3`` kept);
* round 1: from the same starting point, the same steps on alt-text + recaption (``concat``) + the
  SFT mix.

Both are measured on ``--vqa`` questions of the world's VQA benchmark (right and shuffled images)
and ``--captions`` images of its caption benchmark (object recall, wrong mentions, BLEU-4).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import starting_point as sp


def caption_examples(records: list[dict[str, Any]], layers: list[str]) -> list[dict[str, Any]]:
    """Caption training conversations (the mixture's ``concat`` template, neutral prompts)."""
    from vila2.data.mixture import MixtureEntry, conversation_for

    entry = MixtureEntry(dataset="pretrain", layers=layers, template="concat")
    out = []
    for r in records:
        turns = conversation_for(entry, r, seed=0)
        if turns:
            out.append({"id": r["id"], "image": r["image"], "conversations": turns})
    return out


def evaluate(model: Any, processor: Any, vqa: list[dict[str, Any]], captions: list[dict[str, Any]]) -> dict[str, Any]:
    """VQA (right and shuffled images) and the caption benchmark."""
    started = time.perf_counter()
    short = sp.make_generator(model, processor, 6)
    right, wrong = sp.vqa_accuracy(short, vqa), sp.vqa_accuracy(short, vqa, shuffle=True)
    long = sp.make_generator(model, processor, 112)
    texts = long([sp.image_of(c["image"]) for c in captions], [c["question"] for c in captions])
    return {"vqa": right, "vqa_shuffled": wrong,
            "caption": sp.caption_metrics(texts, [c["scene"] for c in captions]),
            "caption_examples": texts[:2], "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tower", required=True, help="a folder written by vila2.training.tower.pretrain_tower (or vila2/recipes/world-tower)")
    parser.add_argument("--warmup-detail", choices=("none", "seed", "all"), default="seed")
    parser.add_argument("--warmup-steps", type=int, default=700)
    parser.add_argument("--round-steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--pretrain", type=int, default=1000)
    parser.add_argument("--sft", type=int, default=sp.SFT, help="general-VQA SFT images (the demo world: 1,500)")
    parser.add_argument("--vqa", type=int, default=1000)
    parser.add_argument("--captions", type=int, default=300)
    parser.add_argument("--preset", choices=("llava-tiny", "idefics3-tiny"), default="llava-tiny",
                        help="must fit the tower: idefics3-tiny for a tower trained with feature='normed'")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from vila2.models.checkpoint import load
    from vila2.training.tower import build_with_tower

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    sft = sp.sft_examples("seed", sft=args.sft)
    warm_mix = {"seed": sft, "none": sp.sft_examples("none", seed_set=[], sft=args.sft),
                "all": sp.sft_examples("all", sft=args.sft)}[args.warmup_detail]
    records = sp.pretrain_records(args.pretrain)
    hashes = {hashlib.sha1(e["image"]).digest() for e in [*sft, *warm_mix, *records]}
    vqa = sp.benchmark_samples("vqa", args.vqa, hashes)
    captions = sp.benchmark_samples("caption", args.captions, hashes)
    seconds["data"] = round(time.perf_counter() - t, 1)

    build_with_tower(args.preset, out / "base", args.tower, texts=sp.tokenizer_texts([*sft, *warm_mix], records), seed=0)
    model, processor = load(str(out / "base"), dtype=torch.float32)
    warm = sp.train_steps(model, processor, warm_mix, steps=args.warmup_steps, lr=args.lr, label="warmup")
    seconds["warmup"] = warm["seconds"]
    start = copy.deepcopy(model.state_dict())
    result: dict[str, Any] = {"args": vars(args), "warmup": warm}

    def round_model(layers: list[str], label: str) -> dict[str, Any]:
        model.load_state_dict(start)
        mix = [*caption_examples(records, layers), *sft]
        trained = sp.train_steps(model, processor, mix, steps=args.round_steps, lr=args.lr, label=label)
        seconds[f"{label}.train"] = trained["seconds"]
        scores = evaluate(model, processor, vqa, captions)
        seconds[f"{label}.eval"] = scores["seconds"]
        return {"train": trained, **scores}

    result["round0"] = round_model(["alt"], "round0")
    t = time.perf_counter()
    texts = sp.recaption(sp.make_generator(model, processor, 112), records)
    seconds["recaption"] = round(time.perf_counter() - t, 1)
    kept = 0
    for r, text in zip(records, texts, strict=True):
        if len(text.split()) >= 3:
            r["recap"] = text
            kept += 1
    scenes = [r["scene"] for r in records]
    result["recaptions"] = {"kept": kept, "of": len(records), **sp.caption_metrics(texts, scenes)}
    result["alt"] = sp.caption_metrics([r["alt"] for r in records], scenes)
    result["round1"] = round_model(["alt", "recap"], "round1")
    result["seconds"] = seconds
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nwarm-up on {args.warmup_detail!r} SFT, {args.warmup_steps} steps; rounds {args.round_steps} steps; "
          f"{len(records)} pretraining images")
    c, a = result["recaptions"], result["alt"]
    print(f"round-0 recaptions of the pretraining images: recall {100 * c['object_recall']:.1f}, wrong "
          f"{100 * c['wrong_mentions']:.1f}, distinct {100 * c['distinct']:.1f}%, {c['words']:.1f} words "
          f"(alt-text: recall {100 * a['object_recall']:.1f}, wrong {100 * a['wrong_mentions']:.1f})")
    print("model  | VQA (n) | VQA shuffled | caption recall | wrong mentions | BLEU-4 | distinct | words")
    for name in ("round0", "round1"):
        r = result[name]
        cap = r["caption"]
        print(f"{name} | {100 * r['vqa']['accuracy']:.1f} ({r['vqa']['n']}) {r['vqa']['kinds']} | "
              f"{100 * r['vqa_shuffled']['accuracy']:.1f} | {100 * cap['object_recall']:.1f} | "
              f"{100 * cap['wrong_mentions']:.1f} | {100 * cap['bleu4']:.1f} | {100 * cap['distinct']:.1f} | {cap['words']:.1f}")
        print("   e.g.", r["caption_examples"][0])
    print("seconds:", json.dumps(seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
