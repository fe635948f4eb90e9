"""The world's scoring functions, without a model."""

from __future__ import annotations

import itertools
import json

import pytest

from vila2.world.captions import describe
from vila2.world.scene import Obj, Scene
from vila2.world.scoring import (
    bleu4,
    caption_score,
    chair_i,
    hallucinated,
    mention_spans,
    mentions,
    normalize_answer,
    object_recall,
    vqa_score,
)

SCENE = Scene(
    11, "gray",
    (Obj("circle", "red", "large", (50, 300, 400, 650)), Obj("square", "blue", "small", (700, 100, 880, 280))),
    "cat", (600, 700, 960, 890),
)
SAMPLE = {"id": "caption-00001", "truth": json.dumps(SCENE.to_dict())}


def test_normalize_answer() -> None:
    assert normalize_answer("The Red.") == "red"
    assert normalize_answer(" three ") == "3"
    assert normalize_answer("Yes!") == "yes"
    assert normalize_answer("a blue  square") == "blue square"


def test_vqa_score_is_exact_match_after_normalisation() -> None:
    assert vqa_score("Red.", "red") == {"accuracy": 1.0}
    assert vqa_score("two", "2") == {"accuracy": 1.0}
    assert vqa_score("dark red", "red") == {"accuracy": 0.0}
    assert vqa_score("", "red") == {"accuracy": 0.0}


def test_mentions_read_colour_and_shape() -> None:
    text = 'A large red circle and two small squares. A "circle" is written.'
    assert mentions(text) == {("red", "circle"), (None, "square")}
    assert mentions("a big green cross and the yellow triangles") == {("green", "cross"), ("yellow", "triangle")}
    assert mentions("a red stock photo circle") == {(None, "circle")}  # colour too far away
    assert mentions("free download hd wallpaper") == set()


def test_hallucination_and_recall() -> None:
    found = mentions("A red circle, a green circle and a square.")
    assert hallucinated(found, SCENE) == {("green", "circle")}
    assert object_recall(found, SCENE) == 0.5
    assert object_recall(mentions(describe(SCENE)), SCENE) == 1.0
    assert not hallucinated(mentions(describe(SCENE)), SCENE)


def test_bleu4() -> None:
    reference = describe(SCENE)
    assert bleu4(reference, reference) == pytest.approx(1.0)
    assert bleu4("", reference) == 0.0
    assert bleu4("zebra giraffe", reference) == 0.0
    half = " ".join(reference.split()[: len(reference.split()) // 2])
    assert 0.0 < bleu4(half, reference) < 0.5  # precise but short: the brevity penalty bites
    assert bleu4(reference + " " + reference, reference) < 1.0


def test_caption_score() -> None:
    perfect = caption_score(describe(SCENE), describe(SCENE), SAMPLE)
    assert perfect == {"bleu4": pytest.approx(1.0), "object_recall": 1.0, "hallucination": 0.0,
                       "mentioned": 2.0, "hallucinated": 0.0}
    alt = caption_score("purple circle stock photo free download", describe(SCENE), SAMPLE)
    assert alt["object_recall"] == 0.0 and alt["hallucination"] == 1.0 and alt["bleu4"] < 0.1
    empty = caption_score("", describe(SCENE), SAMPLE)
    assert empty["hallucination"] == 0.0 and empty["mentioned"] == 0.0
    with pytest.raises(ValueError, match=r"caption-9.*truth"):
        caption_score("a red circle", "x", {"id": "caption-9"})


def test_chair_i_is_the_ratio_of_averaged_counts() -> None:
    assert chair_i({"mentioned": 2.0, "hallucinated": 0.5}) == 0.25
    assert chair_i({"mentioned": 0.0, "hallucinated": 0.0}) == 0.0


def test_mention_spans_find_the_mentions_in_place() -> None:
    texts = ['A large red circle and two small squares. A "circle" is written.',
             "a big green cross and the yellow triangles", "a red stock photo circle", "RED Circle!", "",
             describe(SCENE)]
    for text in texts:
        spans = mention_spans(text)
        assert {m for *_, m in spans} == mentions(text), text
        starts = [s for s, _, _ in spans]
        assert starts == sorted(starts) and all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    text = 'A large red circle and two small squares. A "circle" is written.'
    spans = mention_spans(text)
    assert [(text[s:e], m) for s, e, m in spans] == [("red circle", ("red", "circle")), ("squares", (None, "square"))]
    text = "RED Circle!"
    assert [text[s:e] for s, e, _ in mention_spans(text)] == ["RED Circle"]
