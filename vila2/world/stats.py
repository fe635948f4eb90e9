"""Statistics of a world, stored in ``world.json`` and printed by ``vila2 world --stats``.

What each number means:

* ``objects_per_image``: mean and histogram of objects per pretraining image (1–4);
* ``word_rate``: share of pretraining images with a written word;
* ``alt_words`` / ``description_words``: length in words (mean, median, min, max) of the web
  alt-text and of the full description a perfect recaption would give;
* ``alt_object_coverage``: mean share of an image's objects the alt-text names with the right
  colour and shape (the part of each scene the alt-text covers; the rest is what recaptioning
  can add), and ``alt_hallucination``: share of alt-texts that name an object not in the image;
* ``datasets``: images per dataset and benchmark.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from vila2.world.scene import Scene
from vila2.world.scoring import hallucinated, mentions, object_recall


def _lengths(texts: Iterable[str]) -> dict[str, float]:
    counts = [len(t.split()) for t in texts]
    return {"mean": round(statistics.fmean(counts), 2), "median": statistics.median(counts),
            "min": min(counts), "max": max(counts)}


def pretrain_stats(scenes: list[Scene], alts: list[str], descriptions: list[str]) -> dict[str, Any]:
    """Statistics of the pretraining pairs (scenes, their alt-texts and full descriptions)."""
    per_image = Counter(len(s.objects) for s in scenes)
    found = [mentions(a) for a in alts]
    return {
        "images": len(scenes),
        "objects_per_image": {
            "mean": round(statistics.fmean(len(s.objects) for s in scenes), 3),
            "histogram": {str(k): per_image[k] for k in sorted(per_image)},
        },
        "word_rate": round(sum(bool(s.word) for s in scenes) / len(scenes), 3),
        "alt_words": _lengths(alts),
        "description_words": _lengths(descriptions),
        "alt_object_coverage": round(statistics.fmean(
            object_recall(f, s) for f, s in zip(found, scenes, strict=True)), 3),
        "alt_hallucination": round(statistics.fmean(
            bool(hallucinated(f, s)) for f, s in zip(found, scenes, strict=True)), 3),
    }


def format_stats(info: Mapping[str, Any]) -> str:
    """The statistics of ``world.json`` as a short human-readable report."""
    stats = info["stats"]["pretrain"]
    alt, full = stats["alt_words"], stats["description_words"]
    hist = ", ".join(f"{k}: {v}" for k, v in stats["objects_per_image"]["histogram"].items())
    lines = [
        f"world (seed {info['seed']}, size {info['size']}, {info['image_size']}px images)",
        f"  pretraining pairs:     {stats['images']}",
        f"  objects per image:     {stats['objects_per_image']['mean']} on average ({hist})",
        f"  images with a word:    {stats['word_rate']:.1%}",
        f"  alt-text words:        {alt['mean']} on average (median {alt['median']}, "
        f"{alt['min']}–{alt['max']})",
        f"  full description:      {full['mean']} words on average (median {full['median']}, "
        f"{full['min']}–{full['max']})",
        f"  alt-text coverage:     {stats['alt_object_coverage']:.1%} of each image's objects named "
        "correctly",
        f"  alt-text hallucinated: {stats['alt_hallucination']:.1%} name an object not in the image",
        "  datasets:              " + ", ".join(f"{k} {v}" for k, v in info["stats"]["datasets"].items()),
    ]
    return "\n".join(lines)
