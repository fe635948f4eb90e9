"""MMMU: reading the benchmark in its own schema, and scoring it with lm-eval's official functions.

A local file is a Parquet table in the hub's ``MMMU/MMMU`` schema: ``id`` (``validation_<Subject>_<n>``),
``question``, ``options`` (a Python-literal list), ``answer`` (a letter, or free text for open
questions), ``question_type`` (``multiple-choice`` or ``open``), ``image_1`` .. ``image_7`` (images
as ``{"bytes", "path"}`` structs or raw bytes, missing ones null) and the descriptive columns
``explanation``, ``img_type``, ``topic_difficulty``, ``subfield``.

Prompts, image order and answer parsing are lm-eval's ``lm_eval/tasks/mmmu/utils.py`` (the MMMU
authors' parser), so every back end scores the same way:

* :func:`prompt` — ``doc_to_text``: the question and lettered options, ``<image>`` where each image goes;
* :func:`images` — ``doc_to_image``: one image per ``<image>``, in order (repeats included);
* :func:`is_correct` — ``process_results``.
"""

from __future__ import annotations

import ast
import io
import random
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

IMAGE_KEYS = tuple(f"image_{i}" for i in range(1, 8))
REQUIRED_COLUMNS = ("id", "question", "options", "answer", "question_type", *IMAGE_KEYS)
QUESTION_TYPES = ("multiple-choice", "open")
WORLD_FILE = "bench/mmmu/validation.parquet"

_ID = re.compile(r"^[a-z]+_(?P<subject>.+)_\d+$")
_IMAGE_REF = re.compile(r"<image ([1-7])>")


class MMMUDataError(ValueError):
    """A local MMMU file is malformed; the message names the file, the sample and the key."""


def _official() -> Any:
    from lm_eval.tasks.mmmu import utils

    return utils


def subject(doc: dict[str, Any]) -> str:
    """``validation_Art_Theory_12`` -> ``Art_Theory`` (MMMU ids carry the subject)."""
    match = _ID.match(str(doc["id"]))
    return match.group("subject") if match else str(doc.get("subfield") or "unknown")


def prompt(doc: dict[str, Any]) -> str:
    """The official prompt, with ``<image>`` where each image goes."""
    return _official().doc_to_text(doc)


def images(doc: dict[str, Any]) -> list[Any]:
    """The official image list: one PIL image per ``<image>`` of :func:`prompt`, in order."""
    return _official().doc_to_image(doc)


def is_correct(doc: dict[str, Any], response: str) -> bool:
    """The official verdict on one response (a multiple-choice response that names no option is
    answered at random by the official parser; :func:`seeded` makes that repeatable)."""
    return bool(_official().process_results(doc, [response])["acc"])


@contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Seed the global ``random`` the official parser draws from, and restore it afterwards."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _decode_image(value: Any, where: str) -> Any:
    from PIL import Image

    data = value.get("bytes") if isinstance(value, dict) else value
    if isinstance(value, dict) and data is None and value.get("path"):
        data = Path(value["path"]).read_bytes()
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise MMMUDataError(f"{where}: expected encoded image bytes, got {type(data).__name__}")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:
        raise MMMUDataError(f"{where}: cannot decode image ({exc})") from exc
    return image


def check_doc(doc: dict[str, Any], where: str) -> None:
    """Raise :class:`MMMUDataError` if ``doc`` cannot be asked or scored; ``where`` names it."""
    if doc["question_type"] not in QUESTION_TYPES:
        raise MMMUDataError(f"{where}: question_type {doc['question_type']!r} is not one of {QUESTION_TYPES}")
    try:
        options = ast.literal_eval(str(doc["options"]))
    except (ValueError, SyntaxError) as exc:
        raise MMMUDataError(f"{where}: options {doc['options']!r} is not a Python list literal") from exc
    if not isinstance(options, list):
        raise MMMUDataError(f"{where}: options must be a list, got {type(options).__name__}")
    if doc["question_type"] == "multiple-choice":
        letters = [chr(ord("A") + i) for i in range(len(options))]
        if not options or doc["answer"] not in letters:
            raise MMMUDataError(f"{where}: answer {doc['answer']!r} is not one of the option letters {letters}")
    for number in sorted(set(_IMAGE_REF.findall(f"{doc['question']} {doc['options']}"))):
        if doc.get(f"image_{number}") is None:
            raise MMMUDataError(f"{where}: the text refers to <image {number}> but image_{number} is empty")


def read(path: str | Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The docs of a local MMMU Parquet file, images decoded to PIL, each checked."""
    import pyarrow.parquet as pq

    file = Path(path)
    if not file.is_file():
        raise MMMUDataError(f"MMMU file {file} does not exist")
    try:
        table = pq.read_table(file)
    except Exception as exc:
        raise MMMUDataError(f"{file}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise MMMUDataError(f"{file}: missing MMMU column(s) {', '.join(missing)}")
    rows = table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist()
    seen: set[str] = set()
    for row in rows:
        where = f"{file}: sample {row['id']!r}"
        if row["id"] in seen:
            raise MMMUDataError(f"{where}: duplicate id")
        seen.add(row["id"])
        for key in IMAGE_KEYS:
            if row[key] is not None:
                row[key] = _decode_image(row[key], f"{where}, {key}")
        check_doc(row, where)
    return rows


def world_file(settings: dict[str, Any]) -> Path | None:
    """The embedded world's MMMU-schema benchmark, when ``settings`` name a world folder."""
    world = settings.get("world")
    return Path(world) / WORLD_FILE if world else None


def resolve(data: str | None, settings: dict[str, Any]) -> Path:
    """The local MMMU file to read: ``data``, else the world's, else a clear error."""
    if data:
        return Path(data)
    found = world_file(settings)
    if found is None:
        raise MMMUDataError("MMMU needs a local Parquet file: pass --data PATH or --world DIR")
    return found


def ask_and_score(
    docs: Sequence[dict[str, Any]],
    answer: Callable[[list[tuple[list[Any], str]]], list[str]],
) -> list[dict[str, Any]]:
    """Ask every doc through ``answer`` (``[(images, prompt)] -> [response]``) and score it.

    Returns one record per doc: ``id``, ``subject``, ``question_type``, ``prompt``, ``n_images``,
    ``response``, ``answer`` and ``correct``.
    """
    requests = [(images(doc), prompt(doc)) for doc in docs]
    responses = answer(requests)
    if len(responses) != len(docs):
        raise RuntimeError(f"the model returned {len(responses)} answers for {len(docs)} questions")
    with seeded():
        return [
            {
                "id": doc["id"],
                "subject": subject(doc),
                "question_type": doc["question_type"],
                "prompt": text,
                "n_images": len(visuals),
                "response": response,
                "answer": doc["answer"],
                "correct": is_correct(doc, response),
            }
            for doc, (visuals, text), response in zip(docs, requests, responses, strict=True)
        ]
