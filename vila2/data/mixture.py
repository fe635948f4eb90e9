"""Training mixtures: dataset layers + a template -> training conversations.

A mixture is a list of entries, each naming a dataset, its layers and a template::

    {"dataset": "world/pretrain", "layers": ["alt", "self_r1"], "template": "concat"}
    {"dataset": "world/sft", "layers": ["conversations"], "template": "conversation"}
    {"dataset": "world/pretrain", "layers": ["alt", "spatial_r0", "ocr_r0"], "template": "qa",
     "questions": {"spatial_r0": ["Where are the objects?"]}, "max_turns": 2}

Templates (caption layers; a row with ``kept=False`` counts as missing):

* ``concat``: the texts of all listed layers present for a sample, joined with a space — original
  alt-text + recaption, which beats the recaption alone (docs/METHOD.md).
* ``replace``: the last listed layer present (the recaption, falling back to the original).
* ``qa``: the first layer (the original caption) answers a caption prompt; each later layer's
  text is appended as a question–answer turn, in a seeded shuffled order, the question drawn from
  ``questions[layer]`` (or the caption prompts), at most ``max_turns`` extra turns.
* ``conversation``: a conversation layer, used as it is.

Each caption turn asks ``prompt`` when given, else a prompt drawn from :data:`CAPTION_PROMPTS`
seeded by the sample id, so the same sample always gets the same prompt. ``weight`` repeats
(``2``) or sub-samples (``0.5``) an entry, again seeded by sample id.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vila2.errors import MixtureError

#: Neutral caption prompts: they ask for a caption without asking for detail, so a short alt-text
#: answer never teaches the model to be brief when it is asked to describe in detail.
CAPTION_PROMPTS: tuple[str, ...] = (
    "Describe the image.",
    "Write a caption for this image.",
    "What does this image show?",
    "Caption this picture.",
    "Summarize the image in a sentence.",
)
TEMPLATES = ("concat", "replace", "qa", "conversation")



class MixtureEntry(BaseModel):
    """One line of a training mixture (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    layers: list[str] = Field(min_length=1)
    template: Literal["concat", "replace", "qa", "conversation"] = "concat"
    prompt: str | None = None
    weight: float = Field(default=1.0, ge=0)
    questions: dict[str, list[str]] = Field(default_factory=dict)
    max_turns: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> MixtureEntry:
        if self.template == "conversation" and len(self.layers) != 1:
            raise ValueError(f"template 'conversation' takes exactly one layer, got {self.layers}")
        unknown = sorted(set(self.questions) - set(self.layers[1:]))
        if unknown:
            raise ValueError(f"questions given for {unknown}, which are not answer layers of {self.layers}")
        return self

    @classmethod
    def parse(cls, value: Mapping[str, Any] | MixtureEntry, where: str = "mixture entry") -> MixtureEntry:
        """Validate a dict; errors name ``where`` and the key at fault."""
        if isinstance(value, MixtureEntry):
            return value
        if not isinstance(value, Mapping):
            raise MixtureError(f"{where}: expected a mapping, got {type(value).__name__}")
        try:
            return cls.model_validate(dict(value))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
            )
            raise MixtureError(f"{where}: {problems}") from None


def _rng(*parts: Any) -> random.Random:
    # string seeds hash with sha512: the same in every process, unlike hash()
    return random.Random(":".join(str(p) for p in parts))


def _copies(entry: MixtureEntry, sample_id: str, seed: int) -> int:
    whole = math.floor(entry.weight)
    extra = 1 if _rng(seed, "weight", sample_id).random() < entry.weight - whole else 0
    return whole + extra


def _caption_turn(entry: MixtureEntry, sample_id: str, seed: int, answer: str) -> list[dict[str, str]]:
    prompt = entry.prompt or _rng(seed, "prompt", sample_id).choice(CAPTION_PROMPTS)
    return [{"from": "human", "value": f"<image>\n{prompt}"}, {"from": "gpt", "value": answer}]


def _parse_conversation(text: str, where: str) -> list[dict[str, str]]:
    try:
        turns = json.loads(text)
    except ValueError as exc:
        raise MixtureError(f"{where}: conversation is not JSON ({exc})") from None
    if not isinstance(turns, list) or len(turns) < 2:
        raise MixtureError(f"{where}: conversation must be a list of at least two turns")
    for i, turn in enumerate(turns):
        expected = "human" if i % 2 == 0 else "gpt"
        if not isinstance(turn, Mapping) or turn.get("from") != expected or not isinstance(turn.get("value"), str):
            raise MixtureError(f"{where}: turn {i} must be {{'from': {expected!r}, 'value': str}}, got {turn!r}")
    if len(turns) % 2:
        raise MixtureError(f"{where}: conversation ends with a human turn")
    return [{"from": t["from"], "value": t["value"]} for t in turns]


def conversation_for(entry: MixtureEntry, sample: Mapping[str, Any], seed: int = 0) -> list[dict[str, str]] | None:
    """The training conversation of one sample (layer texts under their layer names), or
    ``None`` when the sample has no usable text for this entry."""
    sample_id = str(sample["id"])
    texts = [sample.get(name) for name in entry.layers]
    present = [(name, t.strip()) for name, t in zip(entry.layers, texts, strict=True) if t and t.strip()]
    if entry.template == "conversation":
        if not present:
            return None
        return _parse_conversation(present[0][1], f"{entry.dataset} layer {entry.layers[0]!r} sample {sample_id!r}")
    if entry.template == "concat":
        return _caption_turn(entry, sample_id, seed, " ".join(t for _, t in present)) if present else None
    if entry.template == "replace":
        return _caption_turn(entry, sample_id, seed, present[-1][1]) if present else None
    # qa: the original caption first, then the specialists' answers as extra turns
    original = texts[0].strip() if texts[0] else ""
    if not original:
        return None
    turns = _caption_turn(entry, sample_id, seed, original)
    answers = [(name, t) for name, t in present if name != entry.layers[0]]
    rng = _rng(seed, "qa", sample_id)
    rng.shuffle(answers)
    for name, answer in answers[: entry.max_turns]:
        question = rng.choice(entry.questions.get(name) or CAPTION_PROMPTS)
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return turns


def entry_examples(entry: MixtureEntry | Mapping[str, Any], *, seed: int = 0,
                   shards: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
    """Stream one entry's training examples ``{"id", "image", "conversations"}``."""
    from vila2.data import Dataset

    entry = MixtureEntry.parse(entry)
    path = Path(entry.dataset)
    if not (path / "manifest.json").is_file():
        raise MixtureError(f"mixture dataset {entry.dataset} is not a vila2 dataset (no manifest.json)")
    dataset = Dataset.open(path)
    for name in entry.layers:
        kind = dataset.layer(name).kind
        wanted = "conversation" if entry.template == "conversation" else "caption"
        if kind != wanted:
            raise MixtureError(
                f"{entry.dataset}: layer {name!r} is a {kind} layer; template {entry.template!r} needs {wanted} layers"
            )
    for sample in dataset.iter_samples(shards=shards, layers=entry.layers):
        turns = conversation_for(entry, sample, seed)
        if turns is None:
            continue
        for _ in range(_copies(entry, str(sample["id"]), seed)):
            yield {"id": str(sample["id"]), "image": sample["image"], "conversations": turns}


def build_examples(mixture: Sequence[MixtureEntry | Mapping[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """All training examples of a mixture, entry after entry (the trainer shuffles them)."""
    if not mixture:
        raise MixtureError("the training mixture is empty")
    entries = [MixtureEntry.parse(e, f"mixture entry {i}") for i, e in enumerate(mixture)]
    examples: list[dict[str, Any]] = []
    for entry in entries:
        examples.extend(entry_examples(entry, seed=seed))
    if not examples:
        raise MixtureError(f"the training mixture yields no examples: {[e.dataset for e in entries]}")
    return examples


__all__ = [
    "CAPTION_PROMPTS",
    "TEMPLATES",
    "MixtureEntry",
    "MixtureError",
    "build_examples",
    "conversation_for",
    "entry_examples",
]
