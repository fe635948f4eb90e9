"""Turn training conversations into model inputs, with the loss only on answer tokens.

The processor's own chat template renders the conversation, so any image-text-to-text model
trains on exactly the text it is prompted with at inference. The rendered text is split into
prompt and answer pieces by rendering growing prefixes of the conversation: the text a prefix
adds after its generation prompt is that turn's answer (including the end-of-turn marker, so the
model learns to stop). Prompt pieces — the image tokens among them — get the label -100.

The processor encodes the first prompt piece with the image; the later pieces are tokenized as
plain text and appended, so every per-token tensor the processor returned is extended along its
token dimension to cover them (see :meth:`ExampleEncoder.extend`): type ids with the text type,
any other per-token tensor (Mllama's ``cross_attention_mask``: batch × tokens × images × tiles)
with the last prompt token's entry. Where ``token_type_ids`` are segment ids — 0 over the whole
first prompt, image included, as PaliGemma's prefix — every later piece gets 1, the mark
PaliGemma's processor gives a ``suffix``, so the answers are attended causally, never as prefix.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from vila2.errors import EncodingError
from vila2.models.checkpoint import apply_template, strip_image_marker

IGNORE_INDEX = -100
# Per-token outputs of a processor, padded with these values. Any other integer output whose
# second dimension is the prompt's length is per token too (padded with 0); the rest is per image.
_TOKEN_KEYS = {"input_ids": None, "attention_mask": 0, "labels": IGNORE_INDEX, "mm_token_type_ids": 0,
               "token_type_ids": 0, "cross_attention_mask": 0}
# Per-token type ids: the appended text pieces get the text type 0 (but see ExampleEncoder.extend).
_TYPE_KEYS = ("token_type_ids", "mm_token_type_ids")


class Encoded(dict):
    """One encoded example: a dict of tensors that also names its per-token keys (``token_keys``),
    so :func:`collate` pads those along the tokens and concatenates the rest."""

    token_keys: frozenset[str] = frozenset()


def to_messages(turns: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """LLaVA turns (``from``/``value``) -> chat messages, the image in the first user turn."""
    roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
    messages: list[dict[str, Any]] = []
    for turn in turns:
        role = roles.get(turn["from"])
        if role is None:
            raise EncodingError(f"unknown speaker {turn['from']!r} (use human/gpt)")
        text = turn["value"]
        if role == "user" and not any(m["role"] == "user" for m in messages):
            content = [{"type": "image"}, {"type": "text", "text": strip_image_marker(text)}]
        else:
            content = [{"type": "text", "text": text.replace("<image>", "").strip()}]
        messages.append({"role": role, "content": content})
    return messages


def segments(processor: Any, turns: Sequence[Mapping[str, str]]) -> list[tuple[str, bool]]:
    """The rendered conversation as ``[(text, is_answer), ...]``; the first piece holds the image."""
    messages = to_messages(turns)
    pieces: list[tuple[str, bool]] = []
    done = ""
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = apply_template(processor, messages[:k], add_generation_prompt=True)
        full = apply_template(processor, messages[: k + 1], add_generation_prompt=False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise EncodingError(
                "the chat template does not render conversations prefix by prefix; "
                "answer tokens cannot be located"
            )
        pieces += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    if not pieces:
        raise EncodingError("the conversation has no assistant answer")
    return pieces


class ExampleEncoder:
    """``encoder(example) -> dict`` of tensors for one example ``{"id", "image", "conversations"}``.

    ``lengths(examples)`` estimates encoded lengths cheaply, to group examples into batches.
    """

    def __init__(self, processor: Any, max_length: int) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.max_length = max_length
        self._image_tokens: int | None = None

    def _image(self, example: Mapping[str, Any]) -> Any:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(example["image"])) as image:
                return image.convert("RGB")
        except Exception as exc:
            raise EncodingError(f"sample {example.get('id')!r}: unreadable image ({exc})") from exc

    def __call__(self, example: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        sample_id = example.get("id")
        try:
            pieces = segments(self.processor, example["conversations"])
        except (EncodingError, KeyError, TypeError) as exc:
            raise EncodingError(f"sample {sample_id!r}: {exc}") from exc
        first = self.processor(images=[self._image(example)], text=[pieces[0][0]], add_special_tokens=False,
                               return_tensors="pt")
        ids = [first["input_ids"][0]]
        labels = [torch.full_like(ids[0], IGNORE_INDEX)]
        for text, is_answer in pieces[1:]:
            piece = torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
            ids.append(piece)
            labels.append(piece.clone() if is_answer else torch.full_like(piece, IGNORE_INDEX))
        input_ids, label_ids = torch.cat(ids), torch.cat(labels)
        prompt_length = len(ids[0])
        if prompt_length >= self.max_length:
            raise EncodingError(
                f"sample {sample_id!r}: the first prompt with its image takes {prompt_length} tokens, "
                f"more than max_length={self.max_length}"
            )
        input_ids, label_ids = input_ids[: self.max_length], label_ids[: self.max_length]
        out = Encoded(first)
        out.token_keys = frozenset(self.token_keys(first)) | {"input_ids", "attention_mask", "labels"}
        for key in out.token_keys - {"input_ids", "attention_mask", "labels"}:
            out[key] = self.extend(key, out[key][0], len(input_ids))
        out["input_ids"], out["labels"] = input_ids, label_ids
        out["attention_mask"] = torch.ones_like(input_ids)
        if self._image_tokens is None:
            self._image_tokens = prompt_length - len(self.tokenizer(pieces[0][0], add_special_tokens=False)["input_ids"])
        return out

    @staticmethod
    def token_keys(first: Mapping[str, Any]) -> list[str]:
        """The per-token outputs of the processor for the first prompt (batch of one): the known
        ones, and any integer or boolean tensor (ids, masks — not pixels) shaped (1, prompt length, ...)."""
        length = first["input_ids"].shape[1]
        return [key for key, value in first.items()
                if key in _TOKEN_KEYS or (tuple(getattr(value, "shape", ())[:2]) == (1, length)
                                          and not value.is_floating_point())]

    @staticmethod
    def extend(key: str, value: Any, length: int) -> Any:
        """One per-token tensor of the first prompt (tokens first), extended (or cut) to ``length``
        tokens for the plain-text pieces appended after it.

        Type ids give the text type 0 — except ``token_type_ids`` that are 0 all over the first
        prompt, image tokens included: those are segment ids (PaliGemma's prefix 0, suffix 1, whose
        mask attends the prefix bidirectionally), so everything after the first prompt gets 1 and is
        attended causally. Any other per-token tensor repeats the last prompt token's entry: the
        appended text continues where the prompt ends (Mllama's ``cross_attention_mask`` row: which
        image tiles a text token after the image attends to).
        """
        import torch

        extra = length - len(value)
        if extra <= 0:
            return value[:length]
        if key in _TYPE_KEYS:
            segment = key == "token_type_ids" and not bool(value.any())
            tail = torch.full((extra, *value.shape[1:]), 1 if segment else 0, dtype=value.dtype)
        else:
            tail = value[-1:].expand(extra, *value.shape[1:])
        return torch.cat([value, tail])

    def lengths(self, examples: Sequence[Mapping[str, Any]], chunk: int = 1024) -> list[int]:
        """Estimated encoded lengths (used to group examples of similar length into batches).

        The turn texts are tokenized in batches; the image tokens and the chat template's tokens
        per question-answer pair are measured once, on the first example, and added.
        """
        if not examples:
            return []
        first = examples[0]
        measured = len(self(first)["input_ids"])
        content = self._content_tokens([first])[0]
        pairs = max(1, len(first["conversations"]) // 2)
        image = int(self._image_tokens or 0)
        per_pair = max(0.0, (measured - content - image) / pairs)
        out: list[int] = []
        for start in range(0, len(examples), chunk):
            part = examples[start:start + chunk]
            for example, count in zip(part, self._content_tokens(part), strict=True):
                estimate = count + image + per_pair * max(1, len(example["conversations"]) // 2)
                out.append(min(self.max_length, round(estimate)))
        return out

    def _content_tokens(self, examples: Sequence[Mapping[str, Any]]) -> list[int]:
        texts = ["\n".join(strip_image_marker(t["value"]) for t in e["conversations"]) for e in examples]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]


class EncodedExamples:
    """A map-style dataset: training examples, encoded when fetched (images stay compressed
    in memory until then).

    With ``cache_bytes``, encoded examples are kept, up to that many bytes of tensors, and a
    later epoch reuses them instead of decoding the image and rendering the chat template again:
    encoding is a tenth of a small model's training step, and a run of several epochs over a
    small mixture encodes each example several times. Encoding is deterministic, so a cached
    example is exactly the one encoding would give. Each ``DataLoader`` worker keeps its own.
    """

    def __init__(self, examples: Sequence[Mapping[str, Any]], encoder: ExampleEncoder,
                 cache_bytes: int = 0) -> None:
        self.examples = examples
        self.encoder = encoder
        self.cache_bytes = cache_bytes
        self.cached_bytes = 0
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        encoded = self.encoder(self.examples[index])
        if self.cache_bytes:
            size = sum(v.numel() * v.element_size() for v in encoded.values() if hasattr(v, "element_size"))
            if self.cached_bytes + size <= self.cache_bytes:
                self._cache[index] = encoded
                self.cached_bytes += size
        return encoded


def collate(features: Sequence[Mapping[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Right-pad per-token tensors to the longest in the batch; concatenate image tensors.

    Per-token tensors (the known keys, and those an :class:`Encoded` example names) are padded
    along their first (token) dimension, and along any further one (the images and tiles of
    Mllama's ``cross_attention_mask``) to the batch's largest, with 0 (``input_ids``: the pad
    token, ``labels``: -100). Image tensors whose shapes differ past the first dimension (a
    varying number of image tiles) are zero-padded along the second, which models such as
    Idefics3 skip as empty images.
    """
    import torch
    import torch.nn.functional as F

    token_keys = set(_TOKEN_KEYS).union(*(getattr(f, "token_keys", ()) for f in features))
    batch: dict[str, Any] = {}
    for key in features[0]:
        values = [f[key] for f in features]
        if key in token_keys:
            pad = pad_token_id if key == "input_ids" else _TOKEN_KEYS.get(key, 0)
            sizes = [max(v.shape[d] for v in values) for d in range(values[0].dim())]
            padded = []
            for v in values:
                spec = [p for d in reversed(range(v.dim())) for p in (0, sizes[d] - v.shape[d])]
                padded.append(F.pad(v, spec, value=pad))
            batch[key] = torch.stack(padded)
        elif all(v.shape[1:] == values[0].shape[1:] for v in values):
            batch[key] = torch.cat(values)
        else:
            most = max(v.shape[1] for v in values)
            padded = []
            for v in values:
                spec = [0, 0] * (v.dim() - 2) + [0, most - v.shape[1]]
                padded.append(F.pad(v, spec))
            batch[key] = torch.cat(padded)
    return batch


__all__ = ["IGNORE_INDEX", "Encoded", "EncodedExamples", "EncodingError", "ExampleEncoder", "collate", "segments", "to_messages"]
