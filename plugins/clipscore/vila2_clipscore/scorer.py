"""Image–text agreement with any CLIP or SigLIP checkpoint folder.

:class:`ClipScorer` opens

* a transformers folder whose ``config.json`` says ``clip`` or ``siglip`` (``CLIPModel``,
  ``SiglipModel``; any other dual encoder with ``get_image_features`` / ``get_text_features``
  is tried the same way), with its tokenizer and image processor;
* an open_clip folder (``open_clip_config.json`` plus ``open_clip_model.safetensors`` or
  ``open_clip_pytorch_model.bin``, the layout open_clip pushes to the Hub), when ``open_clip_torch``
  is installed (``pip install vila2-clipscore[openclip]``).

Images and texts are embedded in batches (``batch_size``), on the GPU when there is one, and
L2-normalised; a similarity is the cosine of the two embeddings (−1 to 1). A caption is scored
piece by piece (:mod:`vila2_clipscore.segments`): every piece fits the text encoder whole, so a
wrong sentence at the end of a long caption counts as much as one at the start. Text
embeddings are cached (captions repeat sentences such as "There is no text in the image.").
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vila2_clipscore.segments import pool, segments

#: text embeddings kept per scorer (a few MB for small encoders)
TEXT_CACHE = 50_000
OPEN_CLIP_CONFIG = "open_clip_config.json"
_SIGLIP_TYPES = ("siglip", "siglip2")


class ClipScoreError(ValueError):
    """A checkpoint folder that cannot be scored with (names the folder and why)."""


@dataclass(frozen=True)
class CaptionScore:
    """One caption scored against one image: its pieces and their cosine similarities."""

    pieces: tuple[str, ...]
    similarities: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean similarity over the pieces (``-1.0`` for a caption with no words)."""
        return pool(self.similarities, "mean") if self.similarities else -1.0

    @property
    def min(self) -> float:
        """Lowest similarity of any piece (``-1.0`` for a caption with no words)."""
        return pool(self.similarities, "min") if self.similarities else -1.0

    def pooled(self, how: str) -> float:
        """``mean`` or ``min``."""
        return self.mean if how == "mean" else self.min if how == "min" else pool(self.similarities, how)


def checkpoint_kind(path: str | os.PathLike[str]) -> str:
    """``"open_clip"``, ``"siglip"`` or ``"clip"`` (any other transformers dual encoder) for a
    checkpoint folder; raises :class:`ClipScoreError` naming the folder when it is neither."""
    folder = Path(path)
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return "open_clip"
    config = folder / "config.json"
    if not config.is_file():
        raise ClipScoreError(
            f"{folder} is not a CLIP/SigLIP checkpoint folder: it has neither config.json (transformers) "
            f"nor {OPEN_CLIP_CONFIG} (open_clip); train one with `vila2 clipscore train --world W --out DIR`"
        )
    model_type = str(json.loads(config.read_text(encoding="utf-8")).get("model_type", ""))
    return "siglip" if model_type in _SIGLIP_TYPES else "clip"


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _as_image(image: Any) -> Any:
    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    return image.convert("RGB")


class ClipScorer:
    """A CLIP/SigLIP/open_clip checkpoint, loaded once, that embeds and compares in batches."""

    def __init__(self, path: str | os.PathLike[str], *, device: str | None = None, batch_size: int = 64,
                 dtype: str | None = None) -> None:
        import torch

        self.path = Path(path)
        self.kind = checkpoint_kind(self.path)
        self.device = torch.device(device or default_device())
        self.batch_size = max(1, int(batch_size))
        self._dtype = getattr(torch, dtype) if dtype else torch.float32
        self._texts: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        if self.kind == "open_clip":
            self._load_open_clip()
        else:
            self._load_transformers()
        self.model.eval()

    # ------------------------------------------------------------------ loading
    def _load_transformers(self) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        try:
            self.model = AutoModel.from_pretrained(self.path, dtype=self._dtype).to(self.device)
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.image_processor = AutoImageProcessor.from_pretrained(self.path)
        except Exception as exc:  # a folder the user named: say which and why
            raise ClipScoreError(f"could not load the CLIP/SigLIP checkpoint {self.path}: {exc}") from exc
        for method in ("get_image_features", "get_text_features"):
            if not hasattr(self.model, method):
                raise ClipScoreError(f"{self.path} holds a {type(self.model).__name__}, which has no "
                                     f"{method}: not a dual image/text encoder")
        text_config = getattr(self.model.config, "text_config", self.model.config)
        limit = int(getattr(text_config, "max_position_embeddings", 77))
        self.max_tokens = min(limit, int(getattr(self.tokenizer, "model_max_length", limit) or limit))

    def _load_open_clip(self) -> None:
        try:
            import open_clip
        except ImportError as exc:
            raise ClipScoreError(f"{self.path} is an open_clip checkpoint; install open_clip_torch "
                                 "(pip install 'vila2-clipscore[openclip]') to score with it") from exc
        name = f"local-dir:{self.path.resolve()}"
        try:
            model, preprocess = open_clip.create_model_from_pretrained(name, device=self.device)
            self.tokenizer = open_clip.get_tokenizer(name)
        except Exception as exc:
            raise ClipScoreError(f"could not load the open_clip checkpoint {self.path}: {exc}") from exc
        self.model = model.to(self._dtype)
        self.image_processor = preprocess
        self.max_tokens = int(getattr(self.tokenizer, "context_length", 77))

    # ------------------------------------------------------------------ tokens
    def token_count(self, text: str) -> int:
        """Tokens ``text`` takes in the text encoder, start and end tokens included."""
        if self.kind == "open_clip":
            inner = getattr(self.tokenizer, "tokenizer", None)  # open_clip's HFTokenizer
            if inner is not None and callable(inner):
                return len(inner(text)["input_ids"])
            return len(self.tokenizer.encode(text)) + 2
        return len(self.tokenizer(text, truncation=False)["input_ids"])

    def fits(self, text: str) -> bool:
        """Whether the text encoder sees all of ``text`` (no truncation)."""
        return self.token_count(text) <= self.max_tokens

    # ------------------------------------------------------------------ embeddings
    def _features(self, out: Any) -> Any:
        import torch

        features = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def embed_images(self, images: Sequence[Any]) -> Any:
        """L2-normalised embeddings (CPU float tensor, one row per image) of PIL images or
        encoded image bytes, in batches of ``batch_size``."""
        import torch

        rows = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = [_as_image(im) for im in images[start:start + self.batch_size]]
                if self.kind == "open_clip":
                    pixels = torch.stack([self.image_processor(im) for im in batch])
                    out = self.model.encode_image(pixels.to(self.device, self._dtype))
                else:
                    pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"]
                    out = self.model.get_image_features(pixel_values=pixels.to(self.device, self._dtype))
                rows.append(self._features(out).cpu())
        dim = rows[0].shape[-1] if rows else 0
        return torch.cat(rows) if rows else torch.zeros(0, dim)

    def _encode_texts(self, texts: list[str]) -> Any:
        import torch

        if self.kind == "open_clip":
            tokens = self.tokenizer(texts).to(self.device)
            return self._features(self.model.encode_text(tokens))
        # SigLIP pools the last position: it was trained on texts padded to the full length
        padding = "max_length" if self.kind == "siglip" else True
        batch = self.tokenizer(texts, padding=padding, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        if self.kind == "siglip":
            inputs.pop("attention_mask", None)  # SigLIP attends to its padding, as in training
        with torch.inference_mode():
            return self._features(self.model.get_text_features(**inputs))

    def embed_texts(self, texts: Sequence[str]) -> Any:
        """L2-normalised embeddings (CPU float tensor) of ``texts``, truncated to the encoder's
        length; each distinct text is encoded once (and remembered)."""
        import torch

        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._texts))
            with torch.inference_mode():
                for start in range(0, len(missing), self.batch_size):
                    chunk = missing[start:start + self.batch_size]
                    for text, row in zip(chunk, self._encode_texts(chunk).cpu(), strict=True):
                        self._texts[text] = row
            rows = []
            for text in texts:
                self._texts.move_to_end(text)
                rows.append(self._texts[text])
            while len(self._texts) > TEXT_CACHE:
                self._texts.popitem(last=False)
        return torch.stack(rows) if rows else torch.zeros(0, 0)

    # ------------------------------------------------------------------ scores
    def pieces(self, caption: str) -> list[str]:
        """The pieces :meth:`score_captions` scores ``caption`` by (sentences, long ones in windows)."""
        return segments(caption, self.fits)

    def score_captions(self, images: Sequence[Any], captions: Sequence[str]) -> list[CaptionScore]:
        """Score ``captions[i]`` against ``images[i]`` piece by piece; images and every piece of
        every caption are embedded in batches."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions")
        pieces = [self.pieces(c) for c in captions]
        image_rows = self.embed_images(images)
        flat = [p for ps in pieces for p in ps]
        text_rows = self.embed_texts(flat) if flat else None
        out, at = [], 0
        for i, ps in enumerate(pieces):
            sims: tuple[float, ...] = ()
            if ps:
                assert text_rows is not None
                sims = tuple(float(v) for v in text_rows[at:at + len(ps)] @ image_rows[i])
            out.append(CaptionScore(tuple(ps), sims))
            at += len(ps)
        return out

    def score_whole(self, images: Sequence[Any], captions: Sequence[str]) -> list[float]:
        """The usual whole-caption CLIPScore view: each caption encoded at once (truncated to the
        encoder's length), its cosine with its image."""
        image_rows = self.embed_images(images)
        text_rows = self.embed_texts(list(captions))
        return [float(v) for v in (image_rows * text_rows).sum(-1)]

    def similarity_matrix(self, images: Sequence[Any], texts: Sequence[str]) -> Any:
        """Cosine of every image with every text (whole texts, truncated): ``[images, texts]``."""
        return self.embed_images(images) @ self.embed_texts(list(texts)).T


_SCORERS: dict[tuple[str, str, int, str | None], ClipScorer] = {}
_SCORERS_LOCK = threading.Lock()


def get_scorer(path: str | os.PathLike[str], *, device: str | None = None, batch_size: int = 64,
               dtype: str | None = None) -> ClipScorer:
    """A :class:`ClipScorer` for ``path``, loaded once per process and settings."""
    key = (str(Path(path).resolve()), device or default_device(), int(batch_size), dtype)
    with _SCORERS_LOCK:
        if key not in _SCORERS:
            _SCORERS[key] = ClipScorer(path, device=key[1], batch_size=batch_size, dtype=dtype)
        return _SCORERS[key]


__all__ = ["CaptionScore", "ClipScoreError", "ClipScorer", "checkpoint_kind", "default_device", "get_scorer"]
