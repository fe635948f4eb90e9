"""How good a caption layer of the pretraining images is: the data side of the VILA² effect.

For every caption layer a model is trained on (round 0: the web alt-text; round *i*: the
round-(*i* − 1) recaptions; a specialist: its answers), :func:`layer_quality` measures

* ``distinct``: the share of distinct texts among the kept captions (a model that writes the
  same caption for every image scores near 0);
* ``mean_words``: the mean caption length in words;
* against the ground truth, when the images are the embedded world's: ``object_recall`` (mean
  share of an image's objects named with their colour and shape), ``wrong_mention_rate`` (share
  of all object mentions that name no object of their image: corpus-level CHAIR-i),
  ``captions_with_wrong_mention`` (share of captions with at least one),
  ``mentions_per_caption`` and ``place_accuracy`` (share of the objects given a place, "red
  circle at the top left", whose place is right; chance is about 1 in 9).

The world stores no scene for its pretraining images, so that nothing downstream can train on
one; :class:`PretrainTruth` draws each scene again from the world's seed and checks, by
rendering a few, that the drawn scenes are the pictured ones. This is measurement only: the loop
calls it after a layer is written, and nothing it returns reaches training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vila2.world.scene import Scene
from vila2.world.scoring import hallucinated, mentions, object_recall, places

#: how many images :meth:`PretrainTruth.check` renders to confirm the scenes match the pixels
CHECKED_IMAGES = 4
NO_GROUND_TRUTH = "no ground truth"


def _rounded(value: float) -> float:
    # stored rounded, so reruns compare equal and the files stay readable
    return round(float(value), 4)


class PretrainTruth:
    """The ground-truth scenes of the pretraining images of the world in ``world_dir``."""

    def __init__(self, world_dir: str | os.PathLike[str]) -> None:
        info = json.loads((Path(world_dir) / "world.json").read_text(encoding="utf-8"))
        self.seed = int(info["seed"])
        self.image_size = int(info["image_size"])
        self._cache: dict[str, Scene | None] = {}

    def scene(self, sample_id: str) -> Scene | None:
        """The scene of pretraining image ``pretrain-NNNNNN`` (``None`` for any other id)."""
        if sample_id not in self._cache:
            self._cache[sample_id] = pretrain_scene(self.seed, sample_id)
        return self._cache[sample_id]

    def check(self, dataset: Any) -> str | None:
        """Why the scenes cannot be trusted for ``dataset`` (a :class:`vila2.data.Dataset`), or
        ``None``: its first images must be the renderings of the scenes drawn for their ids."""
        from vila2.world.render import render

        for checked, sample in enumerate(dataset.iter_samples()):
            if checked == CHECKED_IMAGES:
                break
            scene = self.scene(sample["id"])
            if scene is None:
                return f"sample {sample['id']!r} is not a world pretraining image"
            if dataset.load_image(sample).tobytes() != render(scene, self.image_size).tobytes():
                return f"sample {sample['id']!r} does not picture the scene drawn for it"
        return None


def pretrain_scene(world_seed: int, sample_id: str) -> Scene | None:
    """The scene of pretraining image ``pretrain-NNNNNN`` of world ``world_seed`` (``None`` for
    any other id), drawn as the world writer draws it."""
    import re

    from vila2.world.scene import sample_scene, scene_seed
    from vila2.world.write import PRETRAIN_WORD_RATE

    match = re.fullmatch(r"pretrain-(\d+)", sample_id)
    if match is None:
        return None
    # exactly as vila2.world.write.WorldWriter.pretrain draws it
    return sample_scene(scene_seed(world_seed, "pretrain", int(match.group(1))), word_rate=PRETRAIN_WORD_RATE)


def text_quality(texts: Mapping[str, str], scenes: Mapping[str, Scene] | None) -> dict[str, Any]:
    """Quality numbers of ``texts`` (``{id: caption}``); against ``scenes`` (``{id: scene}``,
    every id of ``texts``) when given, else ``"ground_truth": "no ground truth"``."""
    values = list(texts.values())
    out: dict[str, Any] = {
        "captions": len(values),
        "distinct": _rounded(len(set(values)) / len(values)) if values else 0.0,
        "mean_words": _rounded(sum(len(t.split()) for t in values) / len(values)) if values else 0.0,
    }
    if scenes is None:
        return {**out, "ground_truth": NO_GROUND_TRUTH}
    recall, mentioned, wrong, any_wrong, placed_right, placed = 0.0, 0, 0, 0, 0, 0
    for sample_id, text in texts.items():
        scene = scenes[sample_id]
        found = mentions(text)
        bad = hallucinated(found, scene)
        recall += object_recall(found, scene)
        mentioned += len(found)
        wrong += len(bad)
        any_wrong += bool(bad)
        right, given = places(text, scene)
        placed_right += right
        placed += given
    n = max(1, len(values))
    return {
        **out, "ground_truth": "world",
        "object_recall": _rounded(recall / n),
        "wrong_mention_rate": _rounded(wrong / mentioned) if mentioned else 0.0,
        "captions_with_wrong_mention": _rounded(any_wrong / n),
        "mentions_per_caption": _rounded(mentioned / n),
        "place_accuracy": _rounded(placed_right / placed) if placed else 0.0,
        "placed_objects": placed,
    }


def layer_quality(dataset: str | os.PathLike[str], layer: str, world: str | os.PathLike[str] | None) -> dict[str, Any]:
    """:func:`text_quality` of the kept captions of ``layer`` of ``dataset``; against the ground
    truth when ``world`` is the embedded world those images come from."""
    from vila2.data import Dataset

    ds = Dataset.open(dataset)
    texts = ds.layer(layer).texts()
    if world is None:
        return text_quality(texts, None)
    truth = PretrainTruth(world)
    problem = truth.check(ds)
    scenes = {i: truth.scene(i) for i in texts}
    if problem is None and any(s is None for s in scenes.values()):
        problem = "some captioned samples are not world pretraining images"
    if problem is not None:
        return {**text_quality(texts, None), "ground_truth_problem": problem}
    return text_quality(texts, {i: s for i, s in scenes.items() if s is not None})


__all__ = ["NO_GROUND_TRUTH", "PretrainTruth", "layer_quality", "pretrain_scene", "text_quality"]
