"""The scene graph, rendering and the text built from it (no store involved)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vila2.world import conversations as conv
from vila2.world.captions import JUNK, alt_text, describe
from vila2.world.render import png_bytes, render
from vila2.world.scene import (
    COLORS,
    SHAPES,
    Obj,
    Scene,
    clear_relation,
    region,
    relation,
    sample_scene,
    scene_seed,
)
from vila2.world.scoring import hallucinated, mentions, object_recall

seeds = st.integers(min_value=0, max_value=2**63 - 1)


def test_scene_seeds_differ_by_split_and_index() -> None:
    a = {scene_seed(0, "pretrain", i) for i in range(1000)}
    b = {scene_seed(0, "bench-vqa", i) for i in range(1000)}
    assert len(a) == 1000 and not a & b
    assert scene_seed(0, "pretrain", 5) == scene_seed(0, "pretrain", 5)
    assert scene_seed(1, "pretrain", 5) != scene_seed(0, "pretrain", 5)


@settings(max_examples=200, deadline=None)
@given(seeds)
def test_scene_is_well_formed(seed: int) -> None:
    scene = sample_scene(seed)
    assert scene == sample_scene(seed)
    assert 1 <= len(scene.objects) <= 4
    assert len({(o.color, o.shape) for o in scene.objects}) == len(scene.objects)
    boxes = [o.box for o in scene.objects] + ([scene.word_box] if scene.word_box else [])
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        assert 0 <= x0 < x1 <= 999 and 0 <= y0 < y1 <= 999
        for other in boxes[i + 1:]:
            assert x1 <= other[0] or other[2] <= x0 or y1 <= other[1] or other[3] <= y0
    assert (scene.word is None) == (scene.word_box is None)
    assert Scene.from_dict(scene.to_dict()) == scene


@settings(max_examples=200, deadline=None)
@given(seeds)
def test_full_description_names_every_object_and_nothing_else(seed: int) -> None:
    scene = sample_scene(seed, word_rate=0.5)
    text = describe(scene)
    found = mentions(text)
    assert object_recall(found, scene) == 1.0
    assert not hallucinated(found, scene)
    assert 30 <= len(text.split()) <= 80
    if scene.word:
        assert f'"{scene.word}"' in text


def test_alt_text_is_short_noisy_and_names_one_object() -> None:
    rng = random.Random(0)
    lengths, wrong, covered = [], 0, []
    for i in range(600):
        scene = sample_scene(scene_seed(3, "pretrain", i))
        alt = alt_text(scene, rng)
        lengths.append(len(alt.split()))
        found = mentions(alt)
        assert len(found) == 1, alt
        wrong += bool(hallucinated(found, scene))
        covered.append(object_recall(found, scene))
        assert any(junk in alt for junk in JUNK)
    assert 10 <= sum(lengths) / len(lengths) <= 14
    assert 0.1 <= wrong / 600 <= 0.3  # "sometimes a wrong attribute"
    assert sum(covered) / len(covered) < 0.6  # the alt-text leaves most of a scene undescribed


def test_render_draws_the_scene_at_any_size() -> None:
    scene = Scene(7, "white", (Obj("square", "red", "large", (100, 100, 400, 400)),), "cat", (600, 700, 960, 890))
    image = render(scene, 64)
    assert image.size == (64, 64) and image.mode == "RGB"
    r, g, b = image.getpixel((16, 16))  # inside the red square
    assert r > 180 and g < 90 and b < 90
    assert image.getpixel((40, 10))[0] > 230  # white background
    dark = sum(1 for x in range(38, 62) for y in range(44, 57) if sum(image.getpixel((x, y))) < 300)
    assert dark > 10  # the word is drawn
    assert render(scene, 128).size == (128, 128)
    assert png_bytes(image) == png_bytes(render(scene, 64))


def test_regions_and_relations() -> None:
    a = Obj("circle", "red", "small", (0, 400, 200, 600))
    b = Obj("square", "blue", "small", (700, 420, 900, 620))
    c = Obj("cross", "green", "large", (350, 0, 650, 300))
    assert region(a.box) == "left" and region(c.box) == "top" and region((400, 400, 600, 600)) == "center"
    assert relation(a, b) == "left" and relation(b, a) == "right"
    assert relation(c, a) == "right" and clear_relation(a, b)
    d = Obj("diamond", "green", "small", (420, 700, 620, 900))
    assert relation(d, (Obj("circle", "blue", "small", (420, 100, 620, 300)))) == "below"
    scene = Scene(1, "gray", (a, b, c))
    assert scene.closest() == c


@pytest.mark.parametrize("kind", conv.VQA_KINDS)
def test_vqa_answers_are_true(kind: str) -> None:
    rng = random.Random(1)
    asked = 0
    for i in range(200):
        scene = sample_scene(scene_seed(0, "t", i))
        pair = conv.vqa_question(scene, rng, kind)
        if pair is None:
            continue
        asked += 1
        question, answer = pair
        assert question.endswith(conv.SHORT)
        if kind == "color":
            shape = question.split("the ")[1].split("?")[0]
            assert [o.color for o in scene.objects if o.shape == shape] == [answer]
        elif kind == "shape":
            color = question.split("the ")[1].split(" object")[0]
            assert [o.shape for o in scene.objects if o.color == color] == [answer]
        elif kind == "count" and question.startswith("How many objects"):
            assert answer == str(len(scene.objects))
        elif kind == "exist":
            color, shape = question.split("Is there a ")[1].split("?")[0].split()
            assert answer == ("yes" if scene.find(color, shape) else "no")
    assert asked > 100


def test_domain_conversations_are_llava_turns() -> None:
    rng = random.Random(2)
    for i in range(50):
        scene = sample_scene(scene_seed(0, "t", i), word_rate=0.5)
        for make in (conv.sft_conversation, conv.detail_conversation, conv.spatial_conversation,
                     conv.grounding_conversation, conv.ocr_conversation):
            turns = make(scene, rng)
            assert turns[0]["value"].startswith("<image>\n")
            assert sum("<image>" in t["value"] for t in turns) == 1
            assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
    scene = sample_scene(scene_seed(0, "t", 3))
    narration = conv.grounded_description(scene)
    for obj in scene.objects:
        assert f"{obj.name} {conv.box_text(obj.box)}" in narration
    assert conv.box_text((1, 20, 300, 999)) == "[1,20,300,999]"
    assert conv.plural("cross") == "crosses" and conv.plural("circle") == "circles"


def test_the_spatial_description_comes_after_the_short_questions() -> None:
    # before them, it states every place a *where* question asks for: copied, not seen
    rng = random.Random(3)
    for i in range(50):
        turns = conv.spatial_conversation(sample_scene(scene_seed(0, "t", i)), rng)
        questions = [t["value"].replace("<image>\n", "") for t in turns[::2]]
        assert questions[-1] == conv.SPATIAL_PROMPT and conv.SPATIAL_PROMPT not in questions[:-1]
        assert 1 <= len(questions) - 1 <= 2 and all(q.endswith(conv.SHORT) for q in questions[:-1])


def test_vocabulary_is_small() -> None:
    assert len(SHAPES) == 5 and len(COLORS) == 6
