"""World images and texts for training and measuring a CLIP, from scenes no world split uses.

The embedded world draws scene *i* of split *s* from ``scene_seed(world_seed, s, i)``, a 63-bit
hash. This package draws its own scenes from split names of its own (:data:`TRAIN_SPLIT`,
:data:`HELDOUT_SPLIT`), then *checks* that none of them is a scene of the world: no seed equal to
a seed of the world's training sets (``pretrain``, ``sft``, ``spatial``, ``grounding``, ``ocr``)
or of its benchmarks (``bench/*``, read from their ``truth`` layers), and no rendered image equal,
pixel for pixel, to any image the world holds (MMMU's included). :func:`check_disjoint` raises
when one is found.

Texts come from the world's own writers (:func:`vila2.world.captions.describe`): the full
description and its sentences. :func:`corrupt` makes the hard negatives — the same scene with
one thing changed (an object's colour, shape, size or place, an object that is not there, the
word, the background) — whose changed sentences are exactly the kind of wrong mention a
recaption makes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vila2.world.captions import describe
from vila2.world.render import png_bytes, render
from vila2.world.scene import (
    COLORS,
    NUMBER_WORDS,
    SHAPES,
    SIZES,
    WORDS,
    Obj,
    Scene,
    sample_scene,
    scene_seed,
)
from vila2.world.write import PRETRAIN_WORD_RATE

#: split names of this package's own scenes (never a split the world writes)
TRAIN_SPLIT = "vila2-clipscore/train"
HELDOUT_SPLIT = "vila2-clipscore/heldout"
#: the world's training sets, by the split name their scenes are drawn from
WORLD_TRAIN_SPLITS = ("pretrain", "sft", "spatial", "grounding", "ocr")
CORRUPTIONS = ("colour", "shape", "size", "place", "extra", "word", "background")
WHOLE_RATE = 0.1
_CORRUPTION_WEIGHTS = (0.3, 0.25, 0.1, 0.1, 0.15, 0.05, 0.05)


class DisjointError(ValueError):
    """A scene of this package is also a scene (or an image) of the world."""


def world_info(world: str | os.PathLike[str]) -> dict[str, Any]:
    """``world.json`` of a finished world (seed, sizes, image size)."""
    path = Path(world) / "world.json"
    if not path.is_file():
        raise FileNotFoundError(f"{world} holds no finished world (no world.json); run `vila2 world --out {world}`")
    return json.loads(path.read_text(encoding="utf-8"))


def own_scenes(world_seed: int, split: str, count: int, start: int = 0) -> list[Scene]:
    """Scenes ``start .. start + count - 1`` of this package's ``split``."""
    return [sample_scene(scene_seed(world_seed, split, i), word_rate=PRETRAIN_WORD_RATE)
            for i in range(start, start + count)]


def world_seeds(world: str | os.PathLike[str]) -> set[int]:
    """Every scene seed of the world's training sets and benchmarks."""
    from vila2.data import Dataset

    info = world_info(world)
    seed, sizes = int(info["seed"]), info["sizes"]
    seeds = {scene_seed(seed, split, i) for split in WORLD_TRAIN_SPLITS for i in range(int(sizes[split]))}
    bench = Path(world) / "bench"
    for folder in sorted(p for p in bench.iterdir() if (p / "manifest.json").is_file()) if bench.is_dir() else []:
        ds = Dataset.open(folder)
        if "truth" in ds.layers():
            seeds |= {int(json.loads(t)["seed"]) for t in ds.layer("truth").texts().values()}
    return seeds


def world_image_hashes(world: str | os.PathLike[str]) -> set[bytes]:
    """SHA-1 of every image the world holds (every dataset, and MMMU's parquet)."""
    import pyarrow.parquet as pq

    from vila2.data import Dataset

    root = Path(world)
    hashes: set[bytes] = set()
    for manifest in sorted(root.rglob("manifest.json")):
        ds = Dataset.open(manifest.parent)
        for sample in ds.iter_samples():
            hashes.add(hashlib.sha1(sample["image"]).digest())
    for table in sorted((root / "bench" / "mmmu").glob("*.parquet")):
        data = pq.read_table(table)
        for column in (c for c in data.column_names if c.startswith("image_")):
            for cell in data.column(column).to_pylist():
                if isinstance(cell, dict) and cell.get("bytes"):
                    hashes.add(hashlib.sha1(cell["bytes"]).digest())
    return hashes


def check_disjoint(world: str | os.PathLike[str], scenes: list[Scene], pngs: list[bytes]) -> dict[str, int]:
    """Raise :class:`DisjointError` if any of ``scenes`` (rendered as ``pngs``) is a world scene or
    image; returns what was compared."""
    seeds = world_seeds(world)
    shared = [s.seed for s in scenes if s.seed in seeds]
    if shared:
        raise DisjointError(f"{len(shared)} scene(s) share a seed with the world {world} (first: {shared[0]})")
    hashes = world_image_hashes(world)
    same = [s.seed for s, png in zip(scenes, pngs, strict=True) if hashlib.sha1(png).digest() in hashes]
    if same:
        raise DisjointError(f"{len(same)} image(s) equal an image of the world {world} (first scene: {same[0]})")
    return {"scenes": len(scenes), "world_seeds": len(seeds), "world_images": len(hashes)}


def render_png(scene: Scene, image_size: int) -> bytes:
    """The scene rendered as the world renders it (PNG bytes)."""
    return png_bytes(render(scene, image_size))


def _free_pairs(scene: Scene, keep: Obj | None = None) -> list[tuple[str, str]]:
    taken = {(o.color, o.shape) for o in scene.objects if o is not keep}
    return [(c, s) for c in COLORS for s in SHAPES if (c, s) not in taken]


def _replace(scene: Scene, old: Obj, new: Obj) -> Scene:
    return dataclasses.replace(scene, objects=tuple(new if o is old else o for o in scene.objects))


def _shifted(box: tuple[int, int, int, int], rng: random.Random) -> tuple[int, int, int, int]:
    side_x, side_y = box[2] - box[0], box[3] - box[1]
    x0, y0 = rng.randint(20, 979 - side_x), rng.randint(20, 979 - side_y)
    return (x0, y0, x0 + side_x, y0 + side_y)


def corrupt(scene: Scene, rng: random.Random, kind: str | None = None) -> tuple[Scene, str]:
    """``scene`` with one thing changed, and what: ``colour``, ``shape`` (of one object, to a
    pair not in the scene), ``size``, ``place`` (an object moved), ``extra`` (an object added
    that is not in the picture), ``word`` or ``background``. The description of the result has
    at least one sentence the true description has not."""
    kind = kind or rng.choices(CORRUPTIONS, weights=_CORRUPTION_WEIGHTS)[0]
    obj = rng.choice(scene.objects) if scene.objects else None
    if kind == "extra" and len(scene.objects) >= len(NUMBER_WORDS) - 1 and obj is not None:
        kind = "colour"  # the world's scenes hold at most four objects: no fifth to add
    if kind in ("colour", "shape") and obj is not None:
        pairs = [p for p in _free_pairs(scene, obj)
                 if (p[1] == obj.shape if kind == "colour" else p[0] == obj.color) and p != (obj.color, obj.shape)]
        color, shape = rng.choice(pairs)
        return _replace(scene, obj, dataclasses.replace(obj, color=color, shape=shape)), kind
    if kind == "size" and obj is not None:
        other = next(s for s in SIZES if s != obj.size)
        return _replace(scene, obj, dataclasses.replace(obj, size=other)), kind
    if kind == "place" and obj is not None:
        for _ in range(20):
            moved = dataclasses.replace(obj, box=_shifted(obj.box, rng))
            changed = _replace(scene, obj, moved)
            if describe(changed) != describe(scene):
                return changed, kind
    if kind == "word":
        word = rng.choice([w for w in WORDS if w != scene.word])
        box = scene.word_box or (300, 400, 300 + 110 * len(word) + 40, 590)
        return dataclasses.replace(scene, word=word, word_box=box), kind
    if kind == "background":
        from vila2.world.scene import BACKGROUNDS

        return dataclasses.replace(scene, background=rng.choice([b for b in BACKGROUNDS if b != scene.background])), kind
    # "extra", and the fallback when the chosen change does not apply
    color, shape = rng.choice(_free_pairs(scene))
    side = rng.randint(150, 370)
    x0, y0 = rng.randint(20, 979 - side), rng.randint(20, 979 - side)
    new = Obj(shape, color, "small" if side < 250 else "large", (x0, y0, x0 + side, y0 + side))
    return dataclasses.replace(scene, objects=(*scene.objects, new)), "extra"


def wrong_sentence(scene: Scene, rng: random.Random, kind: str | None = None) -> tuple[str, str]:
    """A sentence false of ``scene`` in the world's own words (from :func:`corrupt`), and its kind."""
    from vila2_clipscore.segments import sentences

    true = set(sentences(describe(scene)))
    for _ in range(20):
        changed, made = corrupt(scene, rng, kind)
        new = [s for s in sentences(describe(changed)) if s not in true]
        # an object's own sentence carries the change best; a count or relation change is a bonus
        about = [s for s in new if s.startswith(("A ", "The word", "The background"))]
        if about or new:
            return rng.choice(about or new), made
    raise ValueError(f"scene {scene.seed}: no corruption changed its description")


def iter_pairs(scenes: list[Scene], rng: random.Random) -> Iterator[tuple[int, str]]:
    """Forever: ``(scene index, a true text)`` — the full description one time in ten
    (:data:`WHOLE_RATE`), else one of its sentences (what the filter scores)."""
    from vila2_clipscore.segments import sentences

    while True:
        i = rng.randrange(len(scenes))
        text = describe(scenes[i])
        yield i, text if rng.random() < WHOLE_RATE else rng.choice(sentences(text))


__all__ = [
    "CORRUPTIONS", "HELDOUT_SPLIT", "TRAIN_SPLIT", "DisjointError", "check_disjoint", "corrupt",
    "iter_pairs", "own_scenes", "render_png", "world_image_hashes", "world_info", "world_seeds",
    "wrong_sentence",
]
