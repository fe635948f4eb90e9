"""Text about a scene: the full description (the ground-truth caption) and the web alt-text.

The full description is a fixed template over the scene graph, in a small regular vocabulary a
tiny model can learn: the object count, each object with its size, colour and place, up to two
relations, the object closest to the camera, the written word and the background.

The alt-text is the COYO stand-in: it names ONE object (one time in five with a wrong colour or
shape), wrapped in junk words, about a dozen words in all. It never mentions relations, the other
objects, the word or the background: that is what a recaption can add.
"""

from __future__ import annotations

import itertools
import random

from vila2.world.scene import COLORS, NUMBER_WORDS, SHAPES, Obj, Scene, region, relation

JUNK = (
    "stock photo", "free download", "best price", "hd wallpaper", "royalty free",
    "vector illustration", "high quality", "clipart", "png", "buy now", "for sale", "cheap",
    "new arrival", "icon set", "logo design", "image", "free shipping", "sticker", "print",
    "top rated", "2019", "poster", "art", "best seller",
)
WRONG_ATTRIBUTE_RATE = 0.2
_MAX_RELATIONS = 2
_PLACE = {
    "center": "in the center",
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
_RELATION = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}


#: every phrase :func:`place` can return, one per cell of the 3×3 grid
PLACE_PHRASES = tuple(_PLACE.get(w, f"at the {w}") for w in (
    f"{row} {col}".strip() or "center" for row in ("top", "", "bottom") for col in ("left", "", "right")))


def place(obj_or_box: Obj | tuple[int, int, int, int]) -> str:
    """``"at the top left"``, ``"in the center"``...: where an object (or a box) is."""
    box = obj_or_box.box if isinstance(obj_or_box, Obj) else obj_or_box
    where = region(box)
    return _PLACE.get(where, f"at the {where}")


def relation_sentence(a: Obj, b: Obj) -> str:
    """``"The red circle is to the left of the blue square."``"""
    return f"The {a.name} is {_RELATION[relation(a, b)]} the {b.name}."


def reading_order(scene: Scene) -> list[Obj]:
    """Objects from left to right (ties broken top to bottom): the order descriptions use."""
    return sorted(scene.objects, key=lambda o: (o.center[0], o.center[1]))


def count_sentence(n: int) -> str:
    if n == 1:
        return "There is one object in the image."
    return f"There are {NUMBER_WORDS[n]} objects in the image."


def word_sentence(scene: Scene) -> str:
    if scene.word and scene.word_box:
        return f'The word "{scene.word}" is written {place(scene.word_box)}.'
    return "There is no text in the image."


def closest_sentence(scene: Scene) -> str | None:
    closest = scene.closest()
    return f"The {closest.name} is the closest to the camera." if closest else None


def describe(scene: Scene) -> str:
    """The full description of a scene (30–80 words; see ``vila2 world --stats``)."""
    objects = reading_order(scene)
    sentences = [count_sentence(len(objects))]
    sentences += [f"A {o.size} {o.name} {place(o)}." for o in objects]
    pairs = list(itertools.pairwise(objects))[:_MAX_RELATIONS]
    sentences += [relation_sentence(a, b) for a, b in pairs]
    closest = closest_sentence(scene)
    if closest:
        sentences.append(closest)
    sentences.append(word_sentence(scene))
    sentences.append(f"The background is {scene.background}.")
    return " ".join(sentences)


def alt_text(scene: Scene, rng: random.Random) -> str:
    """Short noisy web alt-text for a scene: one object, maybe a wrong attribute, junk words."""
    obj = rng.choice(scene.objects)
    color, shape = obj.color, obj.shape
    if rng.random() < WRONG_ATTRIBUTE_RATE:
        if rng.random() < 0.6:
            color = rng.choice([c for c in COLORS if c != color])
        else:
            shape = rng.choice([s for s in SHAPES if s != shape])
    phrase = rng.choice((
        f"{color} {shape}", f"{obj.size} {color} {shape}", f"a {color} {shape}",
        f"{color} {shape} shape", f"{color} {shape} icon",
    ))
    junk = rng.sample(JUNK, rng.randint(3, 8))
    cut = rng.randint(0, min(2, len(junk)))
    return " ".join([*junk[:cut], phrase, *junk[cut:]])
