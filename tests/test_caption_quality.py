"""Caption-layer quality (vila2.world.quality): the data side of the VILA² effect, measured against
the world's ground truth where there is one and never used for training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vila2.data import Dataset
from vila2.world.captions import describe
from vila2.world.conversations import spatial_description
from vila2.world.quality import NO_GROUND_TRUTH, PretrainTruth, layer_quality, text_quality
from vila2.world.scene import Obj, Scene

RED_CIRCLE = Obj("circle", "red", "large", (50, 300, 400, 650))
BLUE_SQUARE = Obj("square", "blue", "small", (700, 100, 880, 280))
GREEN_CROSS = Obj("cross", "green", "small", (600, 600, 800, 800))
SCENES = {
    "a": Scene(1, "gray", (RED_CIRCLE, BLUE_SQUARE)),
    "b": Scene(2, "white", (GREEN_CROSS,)),
}


def test_quality_numbers_on_a_hand_built_case() -> None:
    texts = {
        # names both objects right: recall 1; two mentions, none wrong
        "a": "A red circle and a blue square.",
        # names its cross right and a purple diamond that is not there: recall 1; 1 of 2 wrong
        # (7 and 8 words)
        "b": "A green cross next to a purple diamond.",
    }
    q = text_quality(texts, SCENES)
    assert q == {
        "captions": 2, "distinct": 1.0, "mean_words": 7.5, "ground_truth": "world",
        "object_recall": 1.0, "wrong_mention_rate": 0.25, "captions_with_wrong_mention": 0.5,
        "mentions_per_caption": 2.0, "place_accuracy": 0.0, "placed_objects": 0,
    }
    # a model that writes one caption for every image: half the texts distinct, recall halves
    same = text_quality({"a": "A red circle.", "b": "A red circle."}, SCENES)
    assert same["distinct"] == 0.5 and same["object_recall"] == pytest.approx((0.5 + 0.0) / 2)
    assert same["wrong_mention_rate"] == 0.5 and same["mentions_per_caption"] == 1.0
    # a bare shape names no colour: not recalled, but not wrong either
    bare = text_quality({"a": "some squares"}, SCENES)
    assert bare["object_recall"] == 0.0 and bare["wrong_mention_rate"] == 0.0


def test_places_are_checked_for_the_objects_given_one() -> None:
    # the red circle is on the left (right), the blue square at the top right (given the
    # bottom: wrong); the purple diamond is not in the scene: a wrong mention, not a place
    q = text_quality({"a": "A large red circle on the left. A small blue square at the bottom. "
                           "A purple diamond at the top.", "b": "A green cross at the bottom right."}, SCENES)
    assert q["placed_objects"] == 3 and q["place_accuracy"] == round(2 / 3, 4)
    # "at the top left" is read whole, not as "at the top"
    assert text_quality({"a": "The red circle at the top left."}, SCENES)["placed_objects"] == 1


def test_the_spatial_descriptions_places_are_checked_too(tiny_world: Path) -> None:
    # "The red circle is on the left of the image.": the spatial specialist's form
    q = text_quality({"a": "The red circle is on the left of the image. The blue square is at the bottom "
                           "of the image. The red circle is to the left of the blue square."}, SCENES)
    assert q["placed_objects"] == 2 and q["place_accuracy"] == 0.5
    truth = PretrainTruth(tiny_world)
    ids = list(Dataset.open(tiny_world / "pretrain").layer("alt").texts())[:20]
    scenes = {i: truth.scene(i) for i in ids}
    q = text_quality({i: spatial_description(s) for i, s in scenes.items() if s is not None}, scenes)  # type: ignore[misc]
    assert q["place_accuracy"] == 1.0 and q["placed_objects"] == sum(len(s.objects) for s in scenes.values() if s)


def test_no_ground_truth_still_counts_texts() -> None:
    q = text_quality({"x": "one two three", "y": "one two three", "z": "four"}, None)
    assert q == {"captions": 3, "distinct": round(2 / 3, 4), "mean_words": round(7 / 3, 4),
                 "ground_truth": NO_GROUND_TRUTH}
    assert text_quality({}, None)["captions"] == 0


def test_the_world_alt_text_matches_the_world_statistics(tiny_world: Path) -> None:
    stats = json.loads((tiny_world / "world.json").read_text())["stats"]["pretrain"]
    q = layer_quality(tiny_world / "pretrain", "alt", tiny_world)
    assert q["ground_truth"] == "world" and q["captions"] == stats["images"]
    assert q["object_recall"] == pytest.approx(stats["alt_object_coverage"], abs=1e-3)
    assert q["captions_with_wrong_mention"] == pytest.approx(stats["alt_hallucination"], abs=1e-3)
    assert q["mean_words"] == pytest.approx(stats["alt_words"]["mean"], abs=0.01)
    # real data (no world): the same texts, no ground truth
    plain = layer_quality(tiny_world / "pretrain", "alt", None)
    assert plain["ground_truth"] == NO_GROUND_TRUTH and "object_recall" not in plain
    assert plain["mean_words"] == q["mean_words"]


def test_the_drawn_scenes_are_the_pictured_ones(tiny_world: Path) -> None:
    truth = PretrainTruth(tiny_world)
    assert truth.check(Dataset.open(tiny_world / "pretrain")) is None
    assert truth.scene("seed-000001") is None
    # the SFT set's images are no pretraining images: no ground truth, and the reason is kept
    assert "not a world pretraining image" in (truth.check(Dataset.open(tiny_world / "sft")) or "")
    q = layer_quality(tiny_world / "sft", "conversations", tiny_world)
    assert q["ground_truth"] == NO_GROUND_TRUTH and "pretraining image" in q["ground_truth_problem"]


def test_a_perfect_recaption_scores_perfectly(tiny_world: Path) -> None:
    truth = PretrainTruth(tiny_world)
    ids = list(Dataset.open(tiny_world / "pretrain").layer("alt").texts())[:20]
    scenes = {i: truth.scene(i) for i in ids}
    q = text_quality({i: describe(s) for i, s in scenes.items() if s is not None}, scenes)  # type: ignore[misc]
    assert q["object_recall"] == 1.0 and q["wrong_mention_rate"] == 0.0
    assert q["place_accuracy"] == 1.0 and q["placed_objects"] == sum(len(s.objects) for s in scenes.values() if s)
