"""Precision and recall of ``vila2 dedup`` on a labelled set made from world images.

::

    python -m vila2_dedup.benchmark OUT [--originals 300] [--copies 180] [--seed 0]
                                        [--radius R] [--thumb-distance D] [--no-colour-check]

writes a dataset of embedded-world pretraining images (distinct scenes) plus copies of some of
them made with Pillow — resized, recompressed, slightly cropped, brightened, and all of those
at once — each copy with an edited copy of the original's caption, runs the deduplication and
prints precision and recall per kind of copy. Copy ids sort after their original's, so the
original is the one kept. Each wrong drop is described from the world's own scenes: what tells
its two originals apart (background, object colours, shapes, sizes, places, a written word) and
the share of their pixels that differ; a pair of distinct originals that picture the same scene
(``twin``) is counted apart, as a duplicate at the image level.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: how each copy is made; "slight" means at most 5% of the width and height cropped away
TRANSFORMS = ("resize", "upscale", "jpeg", "crop", "bright", "combo")
CROP = 0.05


def _encode(image: Any, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _crop(image: Any, fraction: float, rng: random.Random) -> Any:
    w, h = image.size
    dx, dy = round(w * fraction), round(h * fraction)
    left, top = rng.randint(0, dx), rng.randint(0, dy)
    return image.crop((left, top, w - (dx - left), h - (dy - top)))


def make_copy(image: Any, transform: str, rng: random.Random) -> tuple[bytes, int, int]:
    """A near-duplicate of ``image`` made with ``transform``: encoded bytes, width, height."""
    from PIL import Image, ImageEnhance

    w, h = image.size
    fmt, kwargs = "PNG", {}
    if transform == "resize":
        image = image.resize((max(8, round(w * 0.6)), max(8, round(h * 0.6))), Image.Resampling.BICUBIC)
    elif transform == "upscale":
        image = image.resize((w * 2, h * 2), Image.Resampling.BICUBIC)
    elif transform == "jpeg":
        fmt, kwargs = "JPEG", {"quality": 50}
    elif transform == "crop":
        image = _crop(image, CROP, rng)
    elif transform == "bright":
        image = ImageEnhance.Brightness(image).enhance(1.25)
    elif transform == "combo":
        image = _crop(image, 0.04, rng)
        image = image.resize((round(image.width * 0.75), round(image.height * 0.75)),
                             Image.Resampling.BICUBIC)
        image = ImageEnhance.Brightness(image).enhance(1.2)
        fmt, kwargs = "JPEG", {"quality": 60}
    else:
        raise ValueError(f"unknown transform {transform!r}")
    return _encode(image, fmt, **kwargs), image.width, image.height


def edit_caption(text: str, rng: random.Random) -> str:
    """A near-duplicate caption: one word dropped or repeated, case and punctuation changed."""
    words = text.split()
    if len(words) > 6:
        i = rng.randrange(len(words))
        words = words[:i] + words[i + 1:] if rng.random() < 0.5 else words[:i + 1] + words[i:]
    out = " ".join(words)
    return (out.capitalize() if out[:1].islower() else out.lower()).rstrip(".") + "."


def build_set(world: Path, out: Path, *, originals: int = 300, copies: int = 180, seed: int = 0
              ) -> dict[str, str]:
    """Write the labelled dataset to ``out`` (images + caption layer ``alt``); return
    ``{id: group}`` (the original's id) for every sample."""
    from vila2.data import Dataset

    rng = random.Random(seed)
    source = Dataset.open(world / "pretrain")
    picked: list[dict[str, Any]] = []
    for sample in source.iter_samples(layers=["alt"]):
        picked.append(sample)
        if len(picked) == originals:
            break
    chosen = rng.sample(range(len(picked)), min(copies, len(picked)))
    group: dict[str, str] = {}
    texts: dict[str, str] = {}
    ds = Dataset.create(out)
    with ds.writer(shard_size=100, source="dedup benchmark") as writer:
        for sample in picked:
            writer.add(sample["id"], sample["image"], sample["width"], sample["height"])
            group[sample["id"]] = sample["id"]
            texts[sample["id"]] = sample["alt"] or ""
        for k, index in enumerate(chosen):
            sample = picked[index]
            transform = TRANSFORMS[k % len(TRANSFORMS)]
            image = ds.load_image(sample)
            data, w, h = make_copy(image, transform, rng)
            copy_id = f"{sample['id']}~{transform}"
            writer.add(copy_id, data, w, h)
            group[copy_id] = sample["id"]
            texts[copy_id] = edit_caption(sample["alt"] or "", rng)
    layer = ds.create_layer("alt", "caption", producer="dedup benchmark")
    for shard in layer.pending_shards():
        layer.write_shard(shard, [{"id": i, "text": texts[i]} for i in ds.shard_ids(shard)])
    return group


#: objects whose box centres lie this close (in the scene's 0-999 units) count as at the same place
SAME_PLACE = 50
#: a pixel differs when one of its channels differs by more than this (of 255)
PIXEL_DIFFERENCE = 40


def scene_difference(world_seed: int, a: str, b: str) -> dict[str, Any]:
    """What tells apart the world's pretraining scenes ``a`` and ``b`` (sample ids): the list of
    ``background``, ``word``, ``colour``, ``shape``, ``size``, ``place`` that differ (empty for a
    ``twin``: same background and word, objects pairing up in shape, colour and size at the same
    places), and the share of pixels that differ between the two rendered images."""
    import numpy as np

    from vila2.world.quality import pretrain_scene
    from vila2.world.render import render

    x, y = pretrain_scene(world_seed, a), pretrain_scene(world_seed, b)
    if x is None or y is None:
        raise ValueError(f"{a if x is None else b!r} is not a pretraining image of world {world_seed}")
    differ = [name for name, same in (("background", x.background == y.background),
                                      ("word", x.word == y.word)) if not same]
    for name, key in (("colour", lambda o: o.color), ("shape", lambda o: o.shape),
                      ("size", lambda o: o.size)):
        if sorted(map(key, x.objects)) != sorted(map(key, y.objects)):
            differ.append(name)
    if not differ:  # the same objects: are they at the same places?
        for obj in x.objects:
            twin = y.find(obj.color, obj.shape)
            if twin is None or max(abs(p - q) for p, q in zip(obj.center, twin.center, strict=True)) > SAME_PLACE:
                differ.append("place")
                break
    pixels = np.abs(np.asarray(render(x), np.int16) - np.asarray(render(y), np.int16)).max(axis=-1)
    return {"differ": differ, "twin": not differ,
            "pixels_differing": round(float((pixels > PIXEL_DIFFERENCE).mean()), 4)}


def score(dataset: Path, layer: str, group: dict[str, str], world_seed: int | None = None
          ) -> dict[str, Any]:
    """Precision and recall of a dedup layer against the labels, overall and per transform.

    A dropped sample is right when the id it names is in its own group; recall counts the
    copies (each group of k samples has k - 1 to drop). With ``world_seed`` (the world the
    originals come from), every wrong drop is described (:func:`scene_difference`), and drops
    between twin scenes are counted apart (``twin_drops``, ``precision_with_twins``).
    """
    from vila2.data import Dataset

    dropped = {row["id"]: row["meta"]["duplicate_of"] for row in Dataset.open(dataset).layer(layer).iter_rows()
               if "duplicate_of" in row["meta"]}
    right = {i for i, of in dropped.items() if group[i] == group[of]}
    copies = [i for i, g in group.items() if i != g]
    per: dict[str, dict[str, float]] = {}
    for transform in TRANSFORMS:
        mine = [i for i in copies if i.endswith("~" + transform)]
        per[transform] = {"copies": len(mine), "recall": _ratio(sum(i in right for i in mine), len(mine))}
    wrong = sorted(set(dropped) - right)
    out: dict[str, Any] = {
        "samples": len(group), "copies": len(copies), "dropped": len(dropped),
        "true_positives": len(right), "false_positives": len(wrong),
        "precision": _ratio(len(right), len(dropped)), "recall": _ratio(len(right), len(copies)),
        "distinct_originals_dropped": sum(group[i] == i for i in wrong),
        "per_transform": per, "false_positive_examples": [[i, dropped[i]] for i in wrong[:5]],
    }
    if world_seed is not None:
        pairs = {(group[i], group[dropped[i]]) for i in wrong}  # the originals behind each wrong drop
        described = {pair: scene_difference(world_seed, *pair) for pair in sorted(pairs)}
        twins = sum(described[(group[i], group[dropped[i]])]["twin"] for i in wrong)
        out["wrong_pairs"] = [{"originals": list(pair), **info} for pair, info in described.items()]
        out["twin_drops"] = twins
        out["precision_with_twins"] = _ratio(len(right) + twins, len(dropped))
    return out


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 1.0


def run(out: Path, *, originals: int, copies: int, seed: int, world: Path | None = None,
        log: Callable[[str], None] = print, **settings: Any) -> dict[str, Any]:
    """Build the set (and a world, unless given), deduplicate images and captions, score."""
    from vila2.world import write_world
    from vila2_dedup.dedup import dedup

    if world is None:
        size = "tiny" if originals <= 300 else str(originals)
        world = write_world(out / "world", seed=seed, size=size)
    data = out / "set"
    group = build_set(world, data, originals=originals, copies=copies, seed=seed)
    world_seed = int(json.loads((world / "world.json").read_text())["seed"])
    results: dict[str, Any] = {}
    for name, kwargs in {"images": {"images": True}, "captions": {"captions": "alt"}}.items():
        report = dedup(data, f"dedup-{name}", log=log, **kwargs, **settings)
        results[name] = {**score(data, f"dedup-{name}", group, world_seed), "seconds": report.seconds}
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--originals", type=int, default=300)
    parser.add_argument("--copies", type=int, default=180)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--radius", type=int, default=None, help="as vila2 dedup --radius")
    parser.add_argument("--thumb-distance", type=float, default=None,
                        help="as vila2 dedup --thumb-distance")
    parser.add_argument("--no-colour-check", action="store_true", help="as vila2 dedup")
    args = parser.parse_args(argv)
    settings: dict[str, Any] = {"colour_check": not args.no_colour_check}
    if args.radius is not None:
        settings["radius"] = args.radius
    if args.thumb_distance is not None:
        settings["thumb_distance"] = args.thumb_distance
    results = run(args.out, originals=args.originals, copies=args.copies, seed=args.seed,
                  log=lambda line: print(line, file=sys.stderr), **settings)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
