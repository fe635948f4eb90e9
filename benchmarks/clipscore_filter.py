"""Does the clipscore filter lower the wrong-mention rate of the recaptions it keeps? (vila2-clipscore)

    python benchmarks/clipscore_filter.py --clip models/clip --work /tmp/clipscore_bench [--limit 1000]
    python benchmarks/clipscore_filter.py --clip models/clip --work /tmp/clipscore_r0 \
        --world RUN/world --model RUN/round0/train/0-sft      # a demo run's own round-0 model

Real recaptions, as the demo recipe (vila2/recipes/demo.yaml) makes them in its first round:

1. the demo world (seed 0, size demo) and the demo's starting point: the ``llava-tiny`` preset
   (8-px patches) warmed up on the SFT set (``--warmup-steps``, 1,200 as in the recipe);
2. the first ``--limit`` pretraining images (the recipe's ``pretrain_limit``) recaptioned with
   the ``long`` prompts, ``max_new_tokens`` 96, through the demo's filters (``repeated_sentence``,
   ``garbage``, ``word_count`` min 3) plus ``clipscore`` and ``clipscore_min`` with ``--clip``;
   every filter scores every caption, so all the subsets below come from the stored scores;
3. the wrong-mention rate (:func:`vila2.world.quality.text_quality`: share of object mentions
   that name no object of the image, against the ground-truth scenes) of: every caption; the
   captions the demo's filters keep; those plus each clipscore filter at the model's calibrated
   threshold; and the top 90/75/50 % of the demo-kept captions by each score.

``--world`` and ``--model`` replace step 1's world and warmed-up model with existing ones (a demo
run's ``RUN/world`` and the model its first round recaptions with, ``RUN/round0/train/0-sft``).

The same is done for the world's web alt-text of those images (20 % name a wrong colour or
shape), scored in batches with ``vila2_clipscore.layers.score_layer``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DEMO_FILTERS: list[Any] = ["repeated_sentence", "garbage", {"name": "word_count", "min": 3}]
DEMO_NAMES = ("repeated_sentence", "garbage", "word_count")


def warm_model(work: Path, world: Path, steps: int) -> Path:
    """The demo's starting point: llava-tiny (patch 8) warmed up on the world's SFT set."""
    from vila2.models.presets import build
    from vila2.training.trainer import TrainConfig, train
    from vila2.world import world_texts

    out = work / "warmup"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    base = work / "base"
    if not (base / "config.json").is_file():
        build("llava-tiny", base, texts=list(world_texts(world)), seed=0, patch_size=8)
    config = TrainConfig(
        model=str(base), out=str(out), stage="sft", max_steps=steps, batch_size=16, lr=2e-3,
        warmup_ratio=0.05, max_length=192, seed=0, train_vision=True, save_every=200,
        mixture=[{"dataset": str(world / "sft"), "layers": ["conversations"], "template": "conversation",
                  "prompt": None, "weight": 1.0}],
    )
    return Path(train(config))


def subset(world: Path, out: Path, limit: int) -> Path:
    """The first ``limit`` pretraining images with their alt-text (as ``pretrain_limit`` does)."""
    from vila2.data import Dataset

    if (out / "manifest.json").is_file():
        return out
    source = Dataset.open(world / "pretrain")
    target = Dataset.create(out)
    alt = {row["id"]: row for row in source.layer("alt").iter_rows()}
    rows = []
    with target.writer(shard_size=100, source="subset of the world's pretrain") as writer:
        for sample in source.iter_samples():
            if len(rows) == limit:
                break
            writer.add(sample["id"], sample["image"], sample["width"], sample["height"], source=sample["source"])
            rows.append(alt[sample["id"]])
    layer = target.create_layer("alt", "caption", producer="benchmarks/clipscore_filter.py")
    by_id = {row["id"]: row for row in rows}
    for shard in layer.pending_shards():
        layer.write_shard(shard, [by_id[i] for i in target.shard_ids(shard)])
    return out


def _rows(dataset: Path, layer: str) -> list[dict[str, Any]]:
    from vila2.data import Dataset

    return [r for r in Dataset.open(dataset).layer(layer).iter_rows() if r["text"] and "error" not in r["meta"]]


def _quality(rows: list[dict[str, Any]], truth: Any) -> dict[str, Any]:
    from vila2.world.quality import text_quality

    texts = {r["id"]: r["text"] for r in rows}
    q = text_quality(texts, {i: truth.scene(i) for i in texts})
    return {k: q[k] for k in ("captions", "wrong_mention_rate", "captions_with_wrong_mention",
                              "object_recall", "mentions_per_caption", "mean_words")}


def compare(dataset: Path, layer: str, world: Path, thresholds: dict[str, float], demo: bool) -> dict[str, Any]:
    """Wrong-mention rates of subsets of ``layer`` chosen from its stored scores."""
    from vila2.world.quality import PretrainTruth

    truth = PretrainTruth(world)
    rows = _rows(dataset, layer)
    base = [r for r in rows if not demo or all(n not in r["meta"].get("rejected_by", []) for n in DEMO_NAMES)]
    out: dict[str, Any] = {"all": _quality(rows, truth)}
    if demo:
        out["demo_filters"] = _quality(base, truth)
    for name, key in (("clipscore", "mean"), ("clipscore_min", "min")):
        kept = [r for r in base if r["scores"][name] >= thresholds[key]]
        out[f"{'demo_filters + ' if demo else ''}{name} >= {thresholds[key]:.4f} (calibrated)"] = _quality(kept, truth)
        ranked = sorted(base, key=lambda r: r["scores"][name], reverse=True)
        for share in (0.9, 0.75, 0.5):
            out[f"top {int(share * 100)}% by {name}"] = _quality(ranked[: round(share * len(ranked))], truth)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch
    from vila2_clipscore.layers import score_layer
    from vila2_clipscore.train import read_calibration

    from vila2.captioning.engine import caption_dataset
    from vila2.world import write_world

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", required=True, help="CLIP checkpoint folder (trained by `vila2 clipscore train`)")
    parser.add_argument("--work", required=True, help="work folder (world, warmed model, captions); reused")
    parser.add_argument("--limit", type=int, default=1000, help="pretraining images recaptioned")
    parser.add_argument("--warmup-steps", type=int, default=1200)
    parser.add_argument("--world", help="an existing world folder (default: the demo world, seed 0, under --work)")
    parser.add_argument("--model", help="recaption with this model folder (default: warm up the demo's starting point)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(args.work)
    record = read_calibration(args.clip)
    if record is None:
        raise SystemExit(f"{args.clip} has no clipscore.json: train it with `vila2 clipscore train`")
    thresholds = record["thresholds"]
    if args.world:
        world = Path(args.world)
        if not (world / "world.json").is_file():
            raise SystemExit(f"{world} holds no world (world.json)")
    else:
        world = write_world(work / "world", seed=0, size="demo")
    model = Path(args.model) if args.model else warm_model(work, world, args.warmup_steps)
    data = subset(world, work / f"subset-{args.limit}", args.limit)
    started = time.perf_counter()
    clip = str(Path(args.clip).resolve())
    summary = caption_dataset(
        data, model=str(model), layer="recap", prompts="long", batch_size=64, max_new_tokens=96,
        filters=[*DEMO_FILTERS, {"name": "clipscore", "model": clip}, {"name": "clipscore_min", "model": clip}],
    )
    seconds = time.perf_counter() - started
    from vila2.data import Dataset

    if "alt-clip" not in Dataset.open(data).layers():
        score_layer(data, "alt", "alt-clip", clip)
    results = {
        "clip": clip, "thresholds": thresholds, "world": str(world), "recaption_model": str(model),
        "recaptions": {"captioned": summary.captioned, "caption_seconds": round(seconds, 1),
                       **compare(data, "recap", world, thresholds, demo=True)},
        "alt_text": compare(data, "alt-clip", world, thresholds, demo=False),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
