"""Train a small CLIP on world images: ``vila2 clipscore train --world W --out DIR``.

No CLIP can be downloaded here, so this package makes one, as an ordinary Hugging Face folder
(``CLIPModel`` weights in safetensors, a byte-level BPE tokenizer trained with ``tokenizers``, a
``CLIPImageProcessor``) that any CLIP code opens:

* **data** — scenes drawn from this package's own seeds (:mod:`vila2_clipscore.worlddata`),
  checked disjoint from every split and benchmark of the world, rendered as the world renders;
  texts are their full descriptions and single sentences (the pieces the filter scores);
* **loss** — CLIP's symmetric contrastive loss, with two changes for templated text: a text that
  occurs several times in a batch ("There is no text in the image.") is a positive of every image
  it describes (soft targets), and every image brings a hard negative, a sentence (or
  description) of the same scene with one thing changed (:func:`vila2_clipscore.worlddata.corrupt`),
  which only the image-to-text direction sees (NegCLIP);
* **calibration** — on held-out scenes of its own, the threshold that best separates true
  descriptions from descriptions with one wrong sentence is stored, per pooling, in
  ``DIR/clipscore.json``: the filter's default threshold for this model.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vila2_clipscore import worlddata

CALIBRATION_FILE = "clipscore.json"
SPECIAL_TOKENS = ("<|endoftext|>", "<|startoftext|>", "<pad>")  # eos id 0: CLIP pools at the eos


@dataclass
class TrainSettings:
    """What ``vila2 clipscore train`` trains (the defaults: the model measured in docs/PLUGINS.md)."""

    images: int = 12000
    steps: int = 1500
    batch_size: int = 96
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_ratio: float = 0.05
    seed: int = 0
    hidden_size: int = 64
    layers: int = 3
    heads: int = 4
    patch_size: int = 8
    vocab_size: int = 768
    max_tokens: int = 77
    calibration_images: int = 400
    hard_negatives: bool = True
    #: weight of a pairwise term: each image's true text must beat its own hard negative
    pair_weight: float = 0.0
    #: a CLIP folder trained here to continue from (its tokenizer and sizes are kept)
    init: str | None = None
    #: where to train (default: ``cuda`` when there is a GPU, else ``cpu``)
    device: str | None = None


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_tokens: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` that wraps each text in start/end tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator((str(t) for t in texts), trainer)
    eos, bos = SPECIAL_TOKENS[0], SPECIAL_TOKENS[1]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, tokenizer.token_to_id(bos)), (eos, tokenizer.token_to_id(eos))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos,
                                   pad_token=SPECIAL_TOKENS[2], model_max_length=max_tokens, padding_side="right")


def build_model(tokenizer: Any, settings: TrainSettings, image_size: int) -> tuple[Any, Any]:
    """A random ``CLIPModel`` sized by ``settings`` and its ``CLIPImageProcessor``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    width, heads = settings.hidden_size, settings.heads
    text = {"vocab_size": len(tokenizer), "hidden_size": width, "intermediate_size": 4 * width,
            "num_hidden_layers": settings.layers, "num_attention_heads": heads,
            "max_position_embeddings": settings.max_tokens, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    vision = {"hidden_size": width, "intermediate_size": 4 * width, "num_hidden_layers": settings.layers,
              "num_attention_heads": heads, "image_size": image_size, "patch_size": settings.patch_size}
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=width)
    processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})
    return CLIPModel(config), processor


def _pixels(pngs: list[bytes], processor: Any) -> Any:
    """All images as one normalised float tensor, through the saved image processor (so training
    sees exactly what scoring sees)."""
    import io

    import torch
    from PIL import Image

    out = []
    for start in range(0, len(pngs), 512):
        batch = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs[start:start + 512]]
        out.append(processor(images=batch, return_tensors="pt")["pixel_values"].to(torch.float16))
    return torch.cat(out)


def _encode_texts(model: Any, tokenizer: Any, texts: list[str], max_tokens: int) -> Any:
    """Text embeddings, with short and long texts padded in separate batches (a sentence is a
    tenth of a full description: padding them together would multiply the text cost)."""
    import torch
    import torch.nn.functional as F

    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    rows: list[Any] = [None] * len(texts)
    cut = max(16, sorted(lengths)[len(lengths) // 2] * 2)
    for group in ([i for i in order if lengths[i] <= cut], [i for i in order if lengths[i] > cut]):
        if not group:
            continue
        batch = tokenizer([texts[i] for i in group], padding=True, truncation=True, max_length=max_tokens,
                          return_tensors="pt")
        device = model.logit_scale.device
        out = model.get_text_features(input_ids=batch["input_ids"].to(device),
                                      attention_mask=batch["attention_mask"].to(device))
        for i, row in zip(group, F.normalize(out.pooler_output, dim=-1), strict=True):
            rows[i] = row
    return torch.stack(rows)


def _loss(model: Any, tokenizer: Any, pixels: Any, positives: list[str], negatives: list[str],
          max_tokens: int, pair_weight: float = 0.0) -> Any:
    """Symmetric contrastive loss with soft targets for repeated texts; ``negatives`` are extra
    texts only the image side ranks (no image is theirs), one per image; with ``pair_weight``,
    plus ``softplus(negative logit - positive logit)`` of each image's own pair."""
    import torch
    import torch.nn.functional as F

    texts = positives + negatives
    image = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    text = _encode_texts(model, tokenizer, texts, max_tokens)
    logits = model.logit_scale.exp().clamp(max=100) * image @ text.T  # [B, B + negatives]
    same = torch.tensor([[t == p for t in texts] for p in positives], dtype=torch.float32, device=logits.device)
    image_loss = -(F.log_softmax(logits, dim=1) * (same / same.sum(1, keepdim=True))).sum(1).mean()
    mine = same[:, : len(positives)].T  # text j describes image i when their strings are equal
    text_loss = -(F.log_softmax(logits[:, : len(positives)].T, dim=1) * (mine / mine.sum(1, keepdim=True))).sum(1).mean()
    loss = (image_loss + text_loss) / 2
    if pair_weight and negatives:
        n = len(positives)
        diagonal = torch.arange(n, device=logits.device)
        loss = loss + pair_weight * F.softplus(logits[diagonal, n + diagonal] - logits[diagonal, diagonal]).mean()
    return loss


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _batch_texts(scenes: list[Any], rng: random.Random, size: int, hard: bool) -> tuple[list[int], list[str], list[str]]:
    from vila2.world.captions import describe

    pairs = worlddata.iter_pairs(scenes, rng)
    index, positives, negatives = [], [], []
    for _ in range(size):
        i, text = next(pairs)
        index.append(i)
        positives.append(text)
        if hard:
            whole = text == describe(scenes[i])
            if whole:
                changed, _ = worlddata.corrupt(scenes[i], rng)
                negatives.append(describe(changed))
            else:
                negatives.append(worlddata.wrong_sentence(scenes[i], rng)[0])
    return index, positives, negatives


def calibrate(model_dir: str | os.PathLike[str], scenes: list[Any], pngs: list[bytes], seed: int = 0) -> dict[str, Any]:
    """Score held-out ``scenes`` against their true description and against the description with
    one sentence replaced by a wrong one; per pooling, the threshold with the best balanced
    accuracy, and the AUCs (true vs corrupted; true vs another image's description)."""
    from vila2.world.captions import describe
    from vila2_clipscore.scorer import ClipScorer
    from vila2_clipscore.segments import sentences

    rng = random.Random(f"{seed}/calibrate")
    scorer = ClipScorer(model_dir, device="cpu")
    true = [describe(s) for s in scenes]
    wrong = []
    for scene, text in zip(scenes, true, strict=True):
        parts = sentences(text)
        bad, _ = worlddata.wrong_sentence(scene, rng)
        parts[rng.randrange(len(parts))] = bad
        wrong.append(" ".join(parts))
    others = [true[(i + 1 + rng.randrange(len(true) - 1)) % len(true)] for i in range(len(true))]
    good = scorer.score_captions(pngs, true)
    bad_scores = scorer.score_captions(pngs, wrong)
    other_scores = scorer.score_captions(pngs, others)
    out: dict[str, Any] = {"images": len(scenes)}
    for how in ("mean", "min"):
        pos = [g.pooled(how) for g in good]
        neg = [b.pooled(how) for b in bad_scores]
        out[how] = {"threshold": best_threshold(pos, neg), "auc_wrong_sentence": auc(pos, neg),
                    "auc_other_description": auc(pos, [o.pooled(how) for o in other_scores])}
    return out


def auc(positives: list[float], negatives: list[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    import bisect

    ordered = sorted(negatives)
    wins = 0.0
    for p in positives:
        below = bisect.bisect_left(ordered, p)
        ties = bisect.bisect_right(ordered, p) - below
        wins += below + ties / 2
    return wins / (len(positives) * len(negatives)) if positives and negatives else float("nan")


def best_threshold(positives: list[float], negatives: list[float]) -> float:
    """The threshold ``t`` (keep ``score >= t``) with the best balanced accuracy."""
    candidates = sorted(set(positives) | set(negatives))
    best, best_t = -1.0, candidates[0] if candidates else 0.0
    for t in candidates:
        kept_true = sum(p >= t for p in positives) / len(positives)
        dropped_false = sum(n < t for n in negatives) / len(negatives)
        if kept_true + dropped_false > best:
            best, best_t = kept_true + dropped_false, t
    return round(float(best_t), 6)


def train_clip(world: str | os.PathLike[str], out: str | os.PathLike[str], settings: TrainSettings | None = None,
               *, log: Callable[[str], None] = print) -> Path:
    """Train a CLIP on scenes of this package's own seeds for ``world`` and save it to ``out``
    (written in ``out.partial`` and renamed when finished); returns ``out``."""
    import torch

    from vila2.world.captions import describe
    from vila2.world.texts import world_texts
    from vila2_clipscore.segments import sentences

    settings = settings or TrainSettings()
    out = Path(out)
    if (out / "config.json").is_file():
        raise FileExistsError(f"{out} already holds a model; choose another --out")
    info = worlddata.world_info(world)
    world_seed, image_size = int(info["seed"]), int(info["image_size"])
    started = time.perf_counter()
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)

    scenes = worlddata.own_scenes(world_seed, worlddata.TRAIN_SPLIT, settings.images)
    held = worlddata.own_scenes(world_seed, worlddata.HELDOUT_SPLIT, settings.calibration_images)
    pngs = [worlddata.render_png(s, image_size) for s in scenes]
    held_pngs = [worlddata.render_png(s, image_size) for s in held]
    checked = worlddata.check_disjoint(world, scenes + held, pngs + held_pngs)
    log(f"{len(scenes)} training and {len(held)} held-out scenes, disjoint from the world "
        f"({checked['world_seeds']} seeds, {checked['world_images']} images compared)")

    if settings.init:
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        tokenizer = AutoTokenizer.from_pretrained(settings.init)
        model = CLIPModel.from_pretrained(settings.init)
        processor = CLIPImageProcessor.from_pretrained(settings.init)
        if model.config.vision_config.image_size != image_size:
            raise ValueError(f"{settings.init} sees {model.config.vision_config.image_size}-px images; "
                             f"the world {world} has {image_size}-px ones")
    else:
        texts = [describe(s) for s in scenes]
        corpus = texts + [p for t in texts[:2000] for p in sentences(t)] + list(world_texts(world))
        tokenizer = train_tokenizer(corpus, settings.vocab_size, settings.max_tokens)
        model, processor = build_model(tokenizer, settings, image_size)
    pixels = _pixels(pngs, processor)
    device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=settings.lr)
    warmup = max(1, int(settings.warmup_ratio * settings.steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, settings.steps, warmup))
    rng = random.Random(f"{settings.seed}/batches")
    model.train()
    every = max(1, settings.steps // 20)
    running = 0.0
    for step in range(settings.steps):
        index, positives, negatives = _batch_texts(scenes, rng, settings.batch_size, settings.hard_negatives)
        loss = _loss(model, tokenizer, pixels[index].to(device).float(), positives, negatives, settings.max_tokens,
                     settings.pair_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        running += loss.item()
        if (step + 1) % every == 0 or step + 1 == settings.steps:
            log(f"step {step + 1}/{settings.steps} loss {running / every:.3f} "
                f"({time.perf_counter() - started:.0f} s)")
            running = 0.0

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.eval()
    model.to("cpu")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    processor.save_pretrained(partial)
    calibration = calibrate(partial, held, held_pngs, settings.seed)
    record = {
        "format": "vila2-clipscore", "version": 1,
        "thresholds": {how: calibration[how]["threshold"] for how in ("mean", "min")},
        "calibration": calibration,
        "data": {"world": str(Path(world).resolve()), "world_seed": world_seed, "image_size": image_size,
                 "train_split": worlddata.TRAIN_SPLIT, "heldout_split": worlddata.HELDOUT_SPLIT,
                 "disjoint_check": checked},
        "settings": asdict(settings),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (partial / CALIBRATION_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        out.rmdir()  # an empty folder only (a model was refused above; rmdir refuses anything else)
    partial.rename(out)
    log(f"saved {out}: held-out AUC (true vs another image's description) "
        f"{calibration['mean']['auc_other_description']:.3f}, thresholds {record['thresholds']}")
    return out


def read_calibration(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``clipscore.json`` of a model trained here, or ``None`` for any other checkpoint."""
    path = Path(model_dir) / CALIBRATION_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


__all__ = ["CALIBRATION_FILE", "TrainSettings", "auc", "best_threshold", "calibrate", "read_calibration",
           "train_clip", "train_tokenizer"]
