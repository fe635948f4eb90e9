"""Does a CLIP rank an image's true description above another image's? (vila2-clipscore)

    python benchmarks/clipscore_auc.py --clip models/clip --world runs/world [--n 500] [--json out.json]

Held-out images, none of them seen in training (`vila2 clipscore train` checks its scenes are
disjoint from the world's, and these are not its training scenes either):

* ``bench``: the world's caption benchmark (``<world>/bench/caption``; each image's true
  description is its reference answer);
* ``own``: scenes of the package's held-out split drawn past the ones calibration used.

For every image, the true description is scored against the image, and so is another image's
description (the next image's, in a fixed shuffle); AUC = P(true scores higher), ties half. Also:
the true description against the same description with one sentence made wrong (a harder
test: one wrong mention among 6–12 true sentences). Scores: ``mean`` and ``min`` over
sentences (the filters ``clipscore`` and ``clipscore_min``) and ``whole`` (the description
encoded at once, truncated at the text encoder's 77 tokens).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any


def _bench(world: Path, n: int) -> tuple[list[Any], list[bytes]]:
    from vila2.data import Dataset
    from vila2.world.scene import Scene

    ds = Dataset.open(world / "bench" / "caption")
    scenes, images = [], []
    for sample in ds.iter_samples(layers=["truth"]):
        scenes.append(Scene.from_dict(json.loads(sample["truth"])))
        images.append(sample["image"])
        if len(scenes) == n:
            break
    return scenes, images


def measure(clip: str, scenes: list[Any], images: list[bytes], seed: int = 0) -> dict[str, Any]:
    """AUCs of true vs another image's description, and true vs one wrong sentence."""
    from vila2_clipscore.scorer import ClipScorer
    from vila2_clipscore.segments import sentences
    from vila2_clipscore.train import auc
    from vila2_clipscore.worlddata import wrong_sentence

    from vila2.world.captions import describe

    rng = random.Random(seed)
    scorer = ClipScorer(clip)
    true = [describe(s) for s in scenes]
    order = list(range(len(scenes)))
    rng.shuffle(order)
    other = {order[k]: true[order[(k + 1) % len(order)]] for k in range(len(order))}
    others = [other[i] for i in range(len(scenes))]
    wrong = []
    for scene, text in zip(scenes, true, strict=True):
        parts = sentences(text)
        parts[rng.randrange(len(parts))] = wrong_sentence(scene, rng)[0]
        wrong.append(" ".join(parts))
    started = time.perf_counter()
    scored = {name: scorer.score_captions(images, texts) for name, texts in
              (("true", true), ("other", others), ("wrong", wrong))}
    whole = {name: scorer.score_whole(images, texts) for name, texts in
             (("true", true), ("other", others), ("wrong", wrong))}
    seconds = time.perf_counter() - started
    out: dict[str, Any] = {"images": len(scenes), "seconds": round(seconds, 1)}
    for how in ("mean", "min"):
        t = [s.pooled(how) for s in scored["true"]]
        out[how] = {"auc_other_description": round(auc(t, [s.pooled(how) for s in scored["other"]]), 4),
                    "auc_one_wrong_sentence": round(auc(t, [s.pooled(how) for s in scored["wrong"]]), 4)}
    out["whole"] = {"auc_other_description": round(auc(whole["true"], whole["other"]), 4),
                    "auc_one_wrong_sentence": round(auc(whole["true"], whole["wrong"]), 4)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch
    from vila2_clipscore import worlddata

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", required=True, help="CLIP checkpoint folder")
    parser.add_argument("--world", required=True, help="the world the CLIP was trained for")
    parser.add_argument("--n", type=int, default=500, help="images per held-out set")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    world = Path(args.world)
    info = worlddata.world_info(world)
    results: dict[str, Any] = {"clip": args.clip, "world": str(world)}
    scenes, images = _bench(world, args.n)
    results["bench"] = measure(args.clip, scenes, images)
    # past the first 100,000 held-out scenes: calibration uses the first few hundred
    own = worlddata.own_scenes(int(info["seed"]), worlddata.HELDOUT_SPLIT, args.n, start=100_000)
    pngs = [worlddata.render_png(s, int(info["image_size"])) for s in own]
    worlddata.check_disjoint(world, own, pngs)
    results["own"] = measure(args.clip, own, pngs)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
