"""Does the starting point SEE? A llava-tiny model on a pretrained, frozen SigLIP tower, warmed up
on the SFT mix, measured with the right images and with shuffled ones.

    python benchmarks/starting_point.py --out /tmp/sp [--short] [--detail all|seed]
        [--warmup-steps 1200] [--vision-lr-scale 0] [--vqa 1000] [--recaptions 300]

Builds, in memory (no world folder): the tower (:mod:`vila2.training.tower`, its own split), the
``llava-tiny`` preset with that tower (8-px patches, 64 image tokens), and a warm-up on the SFT mix
of the demo world (seed 0): the 1,500 general-VQA conversations of ``sft`` plus the detailed-caption
seed (4 % of the pretraining images); with ``--detail all`` every SFT conversation also carries a
"describe in detail" turn with the full description (the probe's mix). Then it prints:

* the answer loss on 200 held-out SFT-style conversations (a split of their own), right vs
  shuffled images;
* VQA accuracy on the world's VQA benchmark questions (``bench-vqa`` scenes, as the world writes
  them, extended to ``--vqa`` questions), right vs shuffled images;
* recaptions of ``--recaptions`` pretraining images (not in the seed) with the long prompts,
  scored by :mod:`vila2.world.scoring` against their scenes, next to their alt-text.

The ground truth of pretraining images is read only to score; no training sees it (the detailed
seed is part of the world's SFT mix). Helpers here are reused by ``benchmarks/recaption_rounds.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORLD_SEED = 0
PRETRAIN = 4000  # the demo world's sizes
SFT = 1500
SEED_FRACTION = 0.04
HELD_OUT_SPLIT = "probe-heldout-sft"  # a split of this benchmark's own, for the loss probe


# -- the world, in memory ------------------------------------------------------------------------
def scene(split: str, index: int, word_rate: float = 0.3) -> Any:
    from vila2.world.scene import sample_scene, scene_seed

    return sample_scene(scene_seed(WORLD_SEED, split, index), word_rate=word_rate)


def text_rng(s: Any) -> random.Random:
    """The world's per-scene text randomness (vila2.world.write._text_rng)."""
    return random.Random(f"{s.seed}/text")


def png(s: Any) -> bytes:
    from vila2.world.render import png_bytes, render

    return png_bytes(render(s, 64))


def seed_indices(pretrain: int = PRETRAIN, fraction: float = SEED_FRACTION) -> list[int]:
    """The pretraining images repeated with full descriptions in ``sft/`` (as the world picks them)."""
    import math

    count = max(1, math.ceil(fraction * pretrain))
    return sorted(random.Random(f"{WORLD_SEED}/seed").sample(range(pretrain), count))


def with_detail(turns: list[dict[str, str]], s: Any, rng: random.Random) -> list[dict[str, str]]:
    """A conversation with a "describe in detail" turn added at a random place."""
    from vila2.world import conversations as conv
    from vila2.world.captions import describe

    pairs = [(turns[i]["value"].replace("<image>\n", ""), turns[i + 1]["value"]) for i in range(0, len(turns), 2)]
    pairs.insert(rng.randint(0, len(pairs)), (rng.choice(conv.DETAIL_PROMPTS), describe(s)))
    return conv.turns(pairs)


def sft_examples(detail: str, seed_set: Sequence[int] | None = None, sft: int = SFT) -> list[dict[str, Any]]:
    """The SFT mix: general VQA on the first ``sft`` scenes of ``sft`` (each with a detail turn
    when ``detail == 'all'``) plus the detailed-caption seed on pretraining images."""
    from vila2.world import conversations as conv

    out = []
    for i in seed_indices() if seed_set is None else seed_set:
        s = scene("pretrain", i)
        out.append({"id": f"seed-{i}", "image": png(s), "conversations": conv.detail_conversation(s, text_rng(s))})
    for i in range(sft):
        s = scene("sft", i)
        rng = text_rng(s)
        turns = conv.sft_conversation(s, rng)
        if detail == "all":
            turns = with_detail(turns, s, rng)
        out.append({"id": f"sft-{i}", "image": png(s), "conversations": turns})
    return out


def pretrain_records(count: int, skip: Sequence[int] = ()) -> list[dict[str, Any]]:
    """The first ``count`` pretraining images outside ``skip``: id, png, alt-text, scene."""
    from vila2.world.captions import alt_text

    skipped, out, i = set(skip), [], 0
    while len(out) < count:
        if i not in skipped:
            s = scene("pretrain", i)
            out.append({"id": f"pretrain-{i:06d}", "image": png(s), "alt": alt_text(s, text_rng(s)), "scene": s})
        i += 1
    return out


def benchmark_samples(name: str, count: int, train_hashes: set[bytes]) -> list[dict[str, Any]]:
    """``count`` samples of the world's benchmark ``name`` (the world's own held-out scenes)."""
    from vila2.world.benchmarks import BENCHMARKS, benchmark_pair

    bench = BENCHMARKS[name]
    out, index = [], 0
    while len(out) < count:
        s = scene(f"bench-{name}", index, bench.word_rate)
        index += 1
        if len(s.objects) < bench.min_objects:
            continue
        data = png(s)
        if hashlib.sha1(data).digest() in train_hashes:
            continue
        kind, (question, answer) = benchmark_pair(bench, s, text_rng(s), len(out))
        out.append({"image": data, "question": question, "answer": answer, "kind": kind, "scene": s})
    return out


def held_out_examples(count: int) -> list[dict[str, Any]]:
    """SFT-style VQA conversations on scenes of a split nothing trains on."""
    from vila2.world import conversations as conv

    out = []
    for i in range(count):
        s = scene(HELD_OUT_SPLIT, i)
        out.append({"id": f"held-{i}", "image": png(s), "conversations": conv.sft_conversation(s, text_rng(s))})
    return out


def shuffled(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same examples, each with the next one's image."""
    return [{**e, "image": examples[(i + 1) % len(examples)]["image"]} for i, e in enumerate(examples)]


def image_of(data: bytes) -> Any:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


# -- training --------------------------------------------------------------------------------------
def train_steps(model: Any, processor: Any, examples: list[dict[str, Any]], *, steps: int, lr: float,
                batch_size: int = 16, vision_lr_scale: float = 0.0, seed: int = 0, max_length: int = 256,
                label: str = "train") -> dict[str, float]:
    """Train ``model`` in place (AdamW, 5 % warm-up + cosine; loss on answers only); the vision
    tower is frozen when ``vision_lr_scale`` is 0, else trained at ``lr * vision_lr_scale``."""
    import functools

    import torch

    from vila2.training.batching import LengthGroupedBatches
    from vila2.training.collate import EncodedExamples, ExampleEncoder, collate
    from vila2.training.stages import part_of
    from vila2.training.trainer import cosine_schedule

    torch.manual_seed(seed)
    encoder = ExampleEncoder(processor, max_length)
    sampler = LengthGroupedBatches(encoder.lengths(examples), batch_size, seed=seed)
    pad = processor.tokenizer.pad_token_id
    loader = torch.utils.data.DataLoader(EncodedExamples(examples, encoder), batch_sampler=sampler,
                                         collate_fn=functools.partial(collate, pad_token_id=pad))
    groups: dict[str, list[Any]] = {"vision": [], "other": []}
    for name, param in model.named_parameters():
        vision = part_of(name) == "vision"
        param.requires_grad_(not vision or vision_lr_scale > 0)
        if param.requires_grad:
            groups["vision" if vision else "other"].append(param)
    optimizer = torch.optim.AdamW([{"params": groups["other"], "lr": lr},
                                   *([{"params": groups["vision"], "lr": lr * vision_lr_scale}]
                                     if groups["vision"] else [])], weight_decay=0.0)
    scheduler = cosine_schedule(optimizer, round(0.05 * steps), steps)
    model.train()
    started, step, epoch, losses = time.perf_counter(), 0, 0, []
    while step < steps:
        sampler.epoch = epoch
        for batch in loader:
            loss = model(**batch, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in groups.values() for p in g], 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
            step += 1
            if step % 100 == 0:
                print(f"  [{label}] step {step}/{steps} loss {sum(losses[-100:]) / len(losses[-100:]):.3f} "
                      f"{time.perf_counter() - started:.0f}s", flush=True)
            if step >= steps:
                break
        epoch += 1
    model.eval()
    return {"steps": steps, "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4),
            "seconds": round(time.perf_counter() - started, 1)}


def answer_loss(model: Any, processor: Any, examples: list[dict[str, Any]], batch_size: int = 32) -> float:
    """Mean loss per answer token over ``examples``."""
    import torch

    from vila2.training.collate import ExampleEncoder, collate

    encoder = ExampleEncoder(processor, 256)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = collate([encoder(e) for e in examples[start:start + batch_size]], processor.tokenizer.pad_token_id)
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
            labels = batch["labels"][:, 1:]
            mask = labels != -100
            logp = torch.log_softmax(logits[:, :-1].float(), -1)
            picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            total += float(-(picked * mask).sum())
            tokens += int(mask.sum())
    return total / max(1, tokens)


# -- measuring --------------------------------------------------------------------------------------
def vqa_accuracy(generator: Any, samples: list[dict[str, Any]], shuffle: bool = False) -> dict[str, Any]:
    """Exact-match accuracy overall and per question kind."""
    from vila2.world.scoring import vqa_score

    images = [image_of(s["image"]) for s in samples]
    if shuffle:
        images = images[1:] + images[:1]
    answers = generator(images, [s["question"] for s in samples])
    hits = [vqa_score(a, s["answer"])["accuracy"] for a, s in zip(answers, samples, strict=True)]
    kinds: dict[str, list[float]] = {}
    for hit, s in zip(hits, samples, strict=True):
        kinds.setdefault(s["kind"], []).append(hit)
    return {"accuracy": sum(hits) / len(hits), "n": len(hits),
            "kinds": {k: round(sum(v) / len(v), 3) for k, v in sorted(kinds.items())}}


def caption_metrics(texts: Sequence[str], scenes: Sequence[Any]) -> dict[str, float]:
    """Object recall, wrong-mention rate (corpus CHAIR-i), BLEU-4, distinct share, mean words."""
    from vila2.world.captions import describe
    from vila2.world.scoring import caption_score

    rows = [caption_score(t, describe(s), {"truth": json.dumps(s.to_dict())}) for t, s in zip(texts, scenes, strict=True)]
    n = len(rows)
    mentioned = sum(r["mentioned"] for r in rows)
    return {
        "n": n,
        "object_recall": sum(r["object_recall"] for r in rows) / n,
        "wrong_mentions": sum(r["hallucinated"] for r in rows) / mentioned if mentioned else 0.0,
        "bleu4": sum(r["bleu4"] for r in rows) / n,
        "distinct": len(set(texts)) / n,
        "words": sum(len(t.split()) for t in texts) / n,
    }


def recaption(generator: Any, records: list[dict[str, Any]]) -> list[str]:
    """One long-prompt recaption per record (the prompt drawn per id, as ``vila2 caption`` does)."""
    from vila2.captioning.prompts import LONG_PROMPTS, choose_prompt

    return generator([image_of(r["image"]) for r in records], [choose_prompt(LONG_PROMPTS, r["id"]) for r in records])


def make_generator(model: Any, processor: Any, max_new_tokens: int) -> Any:
    from vila2.models.generation import Generator

    return Generator((model, processor), batch_size=64, max_new_tokens=max_new_tokens)


def build_starting_model(out: Path, tower_settings: Any, texts: list[str], preset: str = "llava-tiny",
                         feature_layers: list[int] | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Pretrain (or reuse) the tower, build the preset with it, load it."""
    import torch

    from vila2.models.checkpoint import load
    from vila2.training.tower import build_with_tower, pretrain_tower

    started = time.perf_counter()
    tower = pretrain_tower(out / "tower", tower_settings, world_seed=WORLD_SEED, world_size="default")
    info = json.loads((tower / "tower.json").read_text())
    build_with_tower(preset, out / "base", tower, texts=texts, seed=0, feature_layers=feature_layers)
    model, processor = load(str(out / "base"), dtype=torch.float32)
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    return model, processor, info


def tokenizer_texts(sft: list[dict[str, Any]], pretrain: list[dict[str, Any]]) -> list[str]:
    """What the preset's tokenizer learns from: alt-texts and SFT turns (as the pipeline does)."""
    texts = [r["alt"] for r in pretrain]
    for e in sft:
        texts.extend(t["value"].replace("<image>", "") for t in e["conversations"])
    return texts


def measure(model: Any, processor: Any, *, held: list[dict[str, Any]], vqa: list[dict[str, Any]],
            records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every number of the table for one model."""
    started = time.perf_counter()
    loss = answer_loss(model, processor, held)
    loss_shuffled = answer_loss(model, processor, shuffled(held))
    short = make_generator(model, processor, 6)
    right = vqa_accuracy(short, vqa)
    wrong = vqa_accuracy(short, vqa, shuffle=True)
    texts = recaption(make_generator(model, processor, 112), records)
    return {
        "held_out_loss": round(loss, 4), "held_out_loss_shuffled": round(loss_shuffled, 4), "held_out_n": len(held),
        "vqa": right, "vqa_shuffled": wrong,
        "recaption": caption_metrics(texts, [r["scene"] for r in records]),
        "alt": caption_metrics([r["alt"] for r in records], [r["scene"] for r in records]),
        "examples": texts[:3],
        "seconds": round(time.perf_counter() - started, 1),
    }


def print_table(result: dict[str, Any]) -> None:
    m = result["measure"]
    rows = [
        ("held-out answer loss (nats/token), right images", f"{m['held_out_loss']:.3f}", f"n={m['held_out_n']}"),
        ("held-out answer loss, shuffled images", f"{m['held_out_loss_shuffled']:.3f}",
         f"gap {m['held_out_loss_shuffled'] - m['held_out_loss']:.3f} (target ≥ 0.5)"),
        ("VQA accuracy, right images", f"{100 * m['vqa']['accuracy']:.1f}", f"n={m['vqa']['n']} {m['vqa']['kinds']}"),
        ("VQA accuracy, shuffled images", f"{100 * m['vqa_shuffled']['accuracy']:.1f}",
         f"gap {100 * (m['vqa']['accuracy'] - m['vqa_shuffled']['accuracy']):.1f} points (target ≥ 25)"),
    ]
    for who in ("recaption", "alt"):
        c = m[who]
        rows.append((f"{who}: object recall / wrong mentions", f"{100 * c['object_recall']:.1f} / {100 * c['wrong_mentions']:.1f}",
                     f"n={c['n']} distinct {100 * c['distinct']:.1f}% words {c['words']:.1f} bleu4 {100 * c['bleu4']:.1f}"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)} | value | notes")
    for name, value, note in rows:
        print(f"{name.ljust(width)} | {value} | {note}")
    print("tower held-out accuracy:", result["tower"]["held_out_accuracy"])
    print("seconds:", json.dumps(result["seconds"]))
    for text in m["examples"]:
        print("  e.g.", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--short", action="store_true", help="seconds-long run (tiny tower, few steps)")
    parser.add_argument("--detail", choices=("all", "seed"), default="all")
    parser.add_argument("--warmup-steps", type=int, default=1200)
    parser.add_argument("--sft", type=int, default=SFT, help="general-VQA SFT images (the demo world: 1,500)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--vision-lr-scale", type=float, default=0.0)
    parser.add_argument("--tower-steps", type=int, default=None)
    parser.add_argument("--tower-images", type=int, default=None)
    parser.add_argument("--preset", choices=("llava-tiny", "idefics3-tiny"), default="llava-tiny",
                        help="idefics3-tiny: the tower's 64 cells pixel-shuffled into 16 tokens")
    parser.add_argument("--vqa", type=int, default=1000)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--recaptions", type=int, default=300)
    parser.add_argument("--feature-layers", type=int, nargs="+", default=None,
                        help="LLaVA vision_feature_layer as a list, e.g. 0 -1 (patch embedding + last layer)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from vila2.training.tower import TowerSettings

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = TowerSettings.short() if args.short else TowerSettings()
    changes: dict[str, Any] = {k: v for k, v in (("steps", args.tower_steps), ("images", args.tower_images)) if v}
    if args.preset == "idefics3-tiny":
        changes["feature"] = "normed"
    if changes:
        settings = TowerSettings(**{**settings.__dict__, **changes})
    steps = 20 if args.short else args.warmup_steps
    counts = (40, 40, 20) if args.short else (args.vqa, args.held_out, args.recaptions)

    seconds: dict[str, float] = {}
    t = time.perf_counter()
    sft = sft_examples(args.detail, sft=args.sft)
    records = pretrain_records(counts[2], skip=seed_indices())
    train_hashes = {hashlib.sha1(e["image"]).digest() for e in sft}
    vqa = benchmark_samples("vqa", counts[0], train_hashes)
    held = held_out_examples(counts[1])
    seconds["data"] = round(time.perf_counter() - t, 1)

    model, processor, tower = build_starting_model(out, settings, tokenizer_texts(sft, records), args.preset,
                                                   args.feature_layers)
    seconds["tower_and_base"] = tower["wall_seconds"]
    warm = train_steps(model, processor, sft, steps=steps, lr=args.lr, vision_lr_scale=args.vision_lr_scale,
                       label="warmup")
    seconds["warmup"] = warm["seconds"]
    model.save_pretrained(str(out / "warmup"))
    processor.save_pretrained(str(out / "warmup"))
    m = measure(model, processor, held=held, vqa=vqa, records=records)
    seconds["measure"] = m["seconds"]
    result = {"args": vars(args), "tower": {k: tower[k] for k in ("settings", "held_out_accuracy", "seconds")},
              "warmup": warm, "measure": m, "seconds": seconds}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
