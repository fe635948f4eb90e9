"""A multiple-choice benchmark about world images in MMMU's exact schema.

The Parquet file has the columns of the HF ``MMMU/MMMU`` dataset, in its order, with images as
HF ``Image`` structs (``{"bytes", "path"}``, null where a question has fewer images) and the HF
features in the schema metadata, so ``datasets.load_dataset("parquet", ...)`` decodes images to
PIL and lm-eval's ``mmmu`` task functions (``doc_to_text``, ``doc_to_image``, ``process_results``)
run on its rows unchanged. Questions: single-image multiple choice (colour, shape, count,
relation), multi-image multiple choice ("which image shows..."), and open questions (count,
the written word, the total count over two images).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vila2.world.conversations import plural
from vila2.world.scene import COLORS, SHAPES, Scene, clear_relation, relation

MAX_IMAGES = 7
COLUMNS = (
    "id", "question", "options", "explanation", *(f"image_{i}" for i in range(1, MAX_IMAGES + 1)),
    "img_type", "answer", "topic_difficulty", "question_type", "subfield",
)
IMG_TYPE = "['Diagrams']"
LETTERS = "ABCDEFGHI"

# a question: (subfield, difficulty, question_type, question, options, answer, explanation)
Question = tuple[str, str, str, str, list[str], str, str]
# draws the scenes it needs from ``next_scene`` and asks about them
Asker = Callable[[Callable[[], Scene], random.Random], tuple[list[Scene], Question] | None]


def _choices(correct: str, pool: list[str], rng: random.Random, k: int = 4) -> tuple[list[str], str]:
    options = [correct, *rng.sample([p for p in pool if p != correct], k - 1)]
    rng.shuffle(options)
    return options, LETTERS[options.index(correct)]


def _color(next_scene: Callable[[], Scene], rng: random.Random) -> tuple[list[Scene], Question] | None:
    scene = next_scene()
    unique = [o for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]
    if not unique:
        return None
    obj = rng.choice(unique)
    options, answer = _choices(obj.color, list(COLORS), rng)
    return [scene], ("Color", "Easy", "multiple-choice", f"<image 1> What color is the {obj.shape}?",
                     options, answer, f"The {obj.shape} is {obj.color}.")


def _shape(next_scene: Callable[[], Scene], rng: random.Random) -> tuple[list[Scene], Question] | None:
    scene = next_scene()
    unique = [o for o in scene.objects if sum(p.color == o.color for p in scene.objects) == 1]
    if not unique:
        return None
    obj = rng.choice(unique)
    options, answer = _choices(obj.shape, list(SHAPES), rng)
    return [scene], ("Shape", "Easy", "multiple-choice",
                     f"What shape is the {obj.color} object in <image 1>?",
                     options, answer, f"The {obj.color} object is a {obj.shape}.")


def _count(next_scene: Callable[[], Scene], rng: random.Random) -> tuple[list[Scene], Question]:
    scene = next_scene()
    n = str(len(scene.objects))
    options, answer = _choices(n, ["1", "2", "3", "4"], rng)
    return [scene], ("Counting", "Easy", "multiple-choice",
                     "How many objects are shown in <image 1>?", options, answer,
                     f"There are {n} objects.")


def _relation(next_scene: Callable[[], Scene], rng: random.Random) -> tuple[list[Scene], Question] | None:
    scene = next_scene()
    pairs = [(a, b) for a in scene.objects for b in scene.objects if a is not b and clear_relation(a, b)]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    words = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
    correct = words[relation(a, b)]
    options, answer = _choices(correct, list(words.values()), rng)
    return [scene], ("Spatial", "Medium", "multiple-choice",
                     f"In <image 1>, where is the {a.name} relative to the {b.name}?",
                     options, answer, f"The {a.name} is {correct} the {b.name}.")


def _which_image(next_scene: Callable[[], Scene], rng: random.Random) -> tuple[list[Scene], Question] | None:
    k = rng.randint(2, 4)
    scenes = [next_scene() for _ in range(k)]
    target = rng.choice(scenes[0].objects)
    holders = [i for i, s in enumerate(scenes) if s.find(target.color, target.shape)]
    if len(holders) != 1:
        return None
    rng.shuffle(scenes)
    index = next(i for i, s in enumerate(scenes) if s.find(target.color, target.shape))
    listing = " ".join(f"Image {i + 1}: <image {i + 1}>" for i in range(k))
    options = [f"Image {i + 1}" for i in range(k)]
    return scenes, ("Comparison", "Medium", "multiple-choice",
                    f"Which image contains a {target.name}? {listing}", options, LETTERS[index],
                    f"Only image {index + 1} contains a {target.name}.")


def _count_open(next_scene: Callable[[], Scene], rng: random.Random) -> tuple[list[Scene], Question]:
    scene = next_scene()
    shape = rng.choice([o.shape for o in scene.objects])
    n = sum(o.shape == shape for o in scene.objects)
    return [scene], ("Counting", "Easy", "open", f"How many {plural(shape)} are there in <image 1>?",
                     [], str(n), f"There are {n} {plural(shape)}.")


def _word_open(next_scene: Callable[[], Scene], rng: random.Random) -> tuple[list[Scene], Question] | None:
    scene = next_scene()
    if not scene.word:
        return None
    return [scene], ("Text", "Medium", "open", "What word is written in <image 1>?", [], scene.word,
                     f'The word "{scene.word}" is written in the image.')


def _total_open(next_scene: Callable[[], Scene], rng: random.Random) -> tuple[list[Scene], Question]:
    scenes = [next_scene(), next_scene()]
    total = sum(len(s.objects) for s in scenes)
    return scenes, ("Counting", "Hard", "open",
                    "How many objects are there in <image 1> and <image 2> together?", [], str(total),
                    f"{len(scenes[0].objects)} plus {len(scenes[1].objects)} is {total}.")


# the mix of question kinds: mostly single-image multiple choice, some multi-image, some open
ASKERS: tuple[Asker, ...] = (
    _color, _shape, _count, _relation, _which_image, _color, _count_open, _word_open, _relation,
    _total_open,
)


def mmmu_questions(
    next_scene: Callable[[], Scene], n: int, rng: random.Random
) -> list[tuple[list[Scene], Question]]:
    """``n`` questions, each with the scenes it shows; kinds rotate through :data:`ASKERS`."""
    out: list[tuple[list[Scene], Question]] = []
    i = 0
    while len(out) < n:
        asked = ASKERS[i % len(ASKERS)](next_scene, rng)
        i += 1
        if asked is not None:
            out.append(asked)
    return out


def mmmu_row(index: int, question: Question, images: list[bytes]) -> dict[str, Any]:
    """One row in MMMU's schema; ``images`` are the PNG bytes of ``<image 1>``, ``<image 2>``..."""
    subfield, difficulty, qtype, text, options, answer, explanation = question
    row_id = f"validation_World_{index + 1}"
    row: dict[str, Any] = {
        "id": row_id, "question": text, "options": str(options), "explanation": explanation,
        "img_type": IMG_TYPE, "answer": answer, "topic_difficulty": difficulty,
        "question_type": qtype, "subfield": subfield,
    }
    for i in range(1, MAX_IMAGES + 1):
        png = images[i - 1] if i <= len(images) else None
        row[f"image_{i}"] = {"bytes": png, "path": f"{row_id}_image_{i}.png"} if png else None
    return row


def hf_features() -> dict[str, Any]:
    """The HF ``datasets`` features of MMMU, as stored in Parquet schema metadata."""
    features: dict[str, Any] = {}
    for column in COLUMNS:
        if column.startswith("image_"):
            features[column] = {"_type": "Image"}
        else:
            features[column] = {"dtype": "string", "_type": "Value"}
    return features


def write_mmmu(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write MMMU-schema rows to a Parquet file (``validation.parquet``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    fields = [pa.field(c, image if c.startswith("image_") else pa.string()) for c in COLUMNS]
    metadata = {"huggingface": json.dumps({"info": {"features": hf_features()}})}
    schema = pa.schema(fields, metadata=metadata)
    table = pa.Table.from_pylist([{c: row[c] for c in COLUMNS} for row in rows], schema=schema)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
