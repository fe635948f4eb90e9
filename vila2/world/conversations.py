"""Question–answer conversations about a scene: general VQA, the detailed-caption seed, and the
spatial, grounding and OCR domain sets.

Every ``*_question(scene, rng, kind)`` returns one ``(question, answer)`` pair with a short answer
(benchmarks ask exactly one); ``*_pairs`` returns several for a training conversation;
:func:`turns` makes LLaVA turns of them. The domain sets also hold the task-oriented prompt
of their specialist (docs/METHOD.md) with a long answer, which is what the specialist learns to write
when it recaptions.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence

from vila2.captioning.prompts import LONG_PROMPTS
from vila2.world.captions import closest_sentence, describe, place, reading_order, relation_sentence
from vila2.world.scene import COLORS, SHAPES, Box, Obj, Scene, clear_relation, region, relation

SHORT = "Answer the question using a single word or phrase."
# The recaption prompts of docs/METHOD.md plus two short ones, so the seed teaches "describe in
# detail" for more than one wording.
DETAIL_PROMPTS = (*LONG_PROMPTS, "Describe the image.", "What is in this image?")
SPATIAL_PROMPT = "Describe the image in detail, with a focus on spatial relations."
GROUNDING_PROMPT = (
    "Describe the objects in the image and specify their location with [xmin,ymin,xmax,ymax]."
)
OCR_PROMPT = "Recognize and describe the text in the image."

VQA_KINDS = ("color", "shape", "count", "exist")
SPATIAL_KINDS = ("relation", "relation_yesno", "closest", "where")
GROUNDING_KINDS = ("box", "object_at")
OCR_KINDS = ("read",)

Pair = tuple[str, str]


def turns(pairs: Sequence[Pair]) -> list[dict[str, str]]:
    """LLaVA turns; the first question carries the ``<image>`` placeholder."""
    out: list[dict[str, str]] = []
    for i, (question, answer) in enumerate(pairs):
        out.append({"from": "human", "value": f"<image>\n{question}" if i == 0 else question})
        out.append({"from": "gpt", "value": answer})
    return out


def box_text(box: Box) -> str:
    """``[x0,y0,x1,y1]`` with integers in 0–999."""
    return "[" + ",".join(str(int(v)) for v in box) + "]"


def plural(shape: str) -> str:
    return f"{shape}es" if shape.endswith("s") else f"{shape}s"


def _short(question: str) -> str:
    return f"{question}\n{SHORT}"


# -- general VQA: colour, shape, count, existence ----------------------------------------------
def vqa_question(scene: Scene, rng: random.Random, kind: str) -> Pair | None:
    """One general VQA pair of ``kind`` (see ``VQA_KINDS``), or None where it cannot be asked."""
    objects = scene.objects
    if kind == "color":
        unique = [o for o in objects if sum(p.shape == o.shape for p in objects) == 1]
        if not unique:
            return None
        obj = rng.choice(unique)
        return _short(f"What color is the {obj.shape}?"), obj.color
    if kind == "shape":
        unique = [o for o in objects if sum(p.color == o.color for p in objects) == 1]
        if not unique:
            return None
        obj = rng.choice(unique)
        return _short(f"What shape is the {obj.color} object?"), obj.shape
    if kind == "count":
        if rng.random() < 0.5:
            return _short("How many objects are there?"), str(len(objects))
        shape = rng.choice(SHAPES)
        return _short(f"How many {plural(shape)} are there?"), str(sum(o.shape == shape for o in objects))
    if kind == "exist":
        if rng.random() < 0.5:
            obj = rng.choice(objects)
            return _short(f"Is there a {obj.color} {obj.shape}?"), "yes"
        absent = [(c, s) for c in COLORS for s in SHAPES if scene.find(c, s) is None]
        color, shape = rng.choice(absent)
        return _short(f"Is there a {color} {shape}?"), "no"
    raise ValueError(f"unknown VQA question kind {kind!r}; known: {', '.join(VQA_KINDS)}")


# -- spatial ---------------------------------------------------------------------------------
def _clear_pairs(scene: Scene) -> list[tuple[Obj, Obj]]:
    return [(a, b) for a in scene.objects for b in scene.objects if a is not b and clear_relation(a, b)]


def spatial_question(scene: Scene, rng: random.Random, kind: str) -> Pair | None:
    """One spatial pair of ``kind`` (see ``SPATIAL_KINDS``), or None where it cannot be asked."""
    if kind in ("relation", "relation_yesno"):
        pairs = _clear_pairs(scene)
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        if kind == "relation":
            return _short(f"Where is the {a.name} relative to the {b.name}?"), relation(a, b)
        asked = rng.choice(("left", "right", "above", "below"))
        words = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
        answer = "yes" if asked == relation(a, b) else "no"
        return _short(f"Is the {a.name} {words[asked]} the {b.name}?"), answer
    if kind == "closest":
        closest = scene.closest()
        if closest is None or len(scene.objects) < 2:
            return None
        return _short("Which object is the closest to the camera?"), closest.name
    if kind == "where":
        obj = rng.choice(scene.objects)
        return _short(f"Where is the {obj.name} in the image?"), region(obj.box)
    raise ValueError(f"unknown spatial question kind {kind!r}; known: {', '.join(SPATIAL_KINDS)}")


def spatial_description(scene: Scene) -> str:
    """The answer to :data:`SPATIAL_PROMPT`: every object's place, the relation of every pair
    of objects where it is clear (the full description gives at most two), and the object
    closest to the camera."""
    objects = reading_order(scene)
    sentences = [f"The {o.name} is {place(o)} of the image." for o in objects]
    sentences += [relation_sentence(a, b) for a, b in itertools.combinations(objects, 2) if clear_relation(a, b)]
    closest = closest_sentence(scene)
    return " ".join([*sentences, closest] if closest else sentences)


# -- grounding -------------------------------------------------------------------------------
def grounding_question(scene: Scene, rng: random.Random, kind: str) -> Pair | None:
    """One grounding pair of ``kind`` (see ``GROUNDING_KINDS``); boxes are 0–999 integers."""
    obj = rng.choice(scene.objects)
    if kind == "box":
        return f"Give the bounding box of the {obj.name}.", box_text(obj.box)
    if kind == "object_at":
        return _short(f"What object is at {box_text(obj.box)}?"), obj.name
    raise ValueError(f"unknown grounding question kind {kind!r}; known: {', '.join(GROUNDING_KINDS)}")


def grounded_description(scene: Scene) -> str:
    """The answer to :data:`GROUNDING_PROMPT`: each object (and the word) with its box."""
    parts = [f"A {o.size} {o.name} {box_text(o.box)}." for o in reading_order(scene)]
    if scene.word and scene.word_box:
        parts.append(f'The word "{scene.word}" {box_text(scene.word_box)}.')
    return " ".join(parts)


# -- OCR -------------------------------------------------------------------------------------
def ocr_question(scene: Scene, rng: random.Random, kind: str = "read") -> Pair:
    """``What word is written in the image?`` -> the word, or ``none``."""
    if kind != "read":
        raise ValueError(f"unknown OCR question kind {kind!r}; known: {', '.join(OCR_KINDS)}")
    return _short("What word is written in the image?"), scene.word or "none"


def ocr_description(scene: Scene) -> str:
    """The answer to :data:`OCR_PROMPT`."""
    if scene.word and scene.word_box:
        return f'The word "{scene.word}" is written in black {place(scene.word_box)} of the image.'
    return "There is no text in the image."


#: the domains whose short questions the general SFT mix carries a few of, with their askers
DOMAIN_ASKERS: dict[str, tuple[Callable[[Scene, random.Random, str], Pair | None], Sequence[str]]] = {
    "spatial": (spatial_question, SPATIAL_KINDS),
    "grounding": (grounding_question, GROUNDING_KINDS),
    "ocr": (ocr_question, OCR_KINDS),
}


# -- training conversations --------------------------------------------------------------------
def _pairs(
    scene: Scene, rng: random.Random, ask: Callable[[Scene, random.Random, str], Pair | None],
    kinds: Sequence[str], k: int,
) -> list[Pair]:
    pairs = [pair for kind in rng.sample(list(kinds), len(kinds)) if (pair := ask(scene, rng, kind))]
    return pairs[:k]


def sft_conversation(scene: Scene, rng: random.Random) -> list[dict[str, str]]:
    """General SFT: two or three VQA turns (colour, shape, count, existence)."""
    return turns(_pairs(scene, rng, vqa_question, VQA_KINDS, rng.randint(2, 3)))


def with_description(conversation: list[dict[str, str]], scene: Scene, rng: random.Random) -> list[dict[str, str]]:
    """``conversation`` with a "describe in detail" turn (the full description) added at a
    random place."""
    pairs = [(conversation[i]["value"].replace("<image>\n", ""), conversation[i + 1]["value"])
             for i in range(0, len(conversation), 2)]
    pairs.insert(rng.randint(0, len(pairs)), (rng.choice(DETAIL_PROMPTS), describe(scene)))
    return turns(pairs)


def domain_question(scene: Scene, rng: random.Random) -> Pair | None:
    """One short spatial, grounding or OCR question about ``scene`` (the domain drawn at random).

    A real SFT mix carries a little of every task's format (LLaVA's holds RefCOCO boxes,
    OCR-VQA, Visual Genome relations), so the generalist knows how such a question is answered;
    what it knows about places, boxes and words has to come from elsewhere: its captions.
    """
    ask, kinds = DOMAIN_ASKERS[rng.choice(tuple(DOMAIN_ASKERS))]
    for kind in rng.sample(list(kinds), len(kinds)):
        pair = ask(scene, rng, kind)
        if pair is not None:
            return pair
    return None


def with_turn(conversation: list[dict[str, str]], pair: Pair) -> list[dict[str, str]]:
    """``conversation`` with one more question–answer turn at the end."""
    return [*conversation, {"from": "human", "value": pair[0]}, {"from": "gpt", "value": pair[1]}]


def detail_conversation(scene: Scene, rng: random.Random) -> list[dict[str, str]]:
    """The detailed-caption seed: a "describe in detail" prompt and the full description."""
    return turns([(rng.choice(DETAIL_PROMPTS), describe(scene))])


def spatial_conversation(scene: Scene, rng: random.Random) -> list[dict[str, str]]:
    """Spatial SFT: one or two short spatial questions, then the spatial prompt.

    The description comes last: it states every object's place, so a *where* question after it
    is answered by copying the text above, and teaches copying, not looking (placed anywhere,
    the specialist answered *where* at chance; benchmarks/RESULTS.md, "The spatial set's order").
    """
    pairs = _pairs(scene, rng, spatial_question, SPATIAL_KINDS, rng.randint(1, 2))
    return turns([*pairs, (SPATIAL_PROMPT, spatial_description(scene))])


def grounding_conversation(scene: Scene, rng: random.Random) -> list[dict[str, str]]:
    """Grounding SFT: object ↔ box questions and the grounded narration."""
    pairs = _pairs(scene, rng, grounding_question, GROUNDING_KINDS, 2)
    pairs.insert(rng.randint(0, len(pairs)), (GROUNDING_PROMPT, grounded_description(scene)))
    return turns(pairs)


def ocr_conversation(scene: Scene, rng: random.Random) -> list[dict[str, str]]:
    """OCR SFT: read the word, and describe the text."""
    pairs = [ocr_question(scene, rng), (OCR_PROMPT, ocr_description(scene))]
    rng.shuffle(pairs)
    return turns(pairs)
