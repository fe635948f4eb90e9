"""Batched generation: a loaded image-text-to-text model answers one prompt per image.

:class:`Generator` is what the ``self`` captioner and every evaluator call. It loads the model once,
builds each prompt with the processor's chat template (one image + text), sorts requests by prompt
length so a batch carries little padding, pads on the left (decoder-only models continue from the
right edge), generates with the KV cache under ``torch.inference_mode`` and returns only the
decoded answers, in the order the requests came::

    gen = Generator("runs/round1/model", batch_size=32, max_new_tokens=128)
    answers = gen(images, ["Describe the image in detail."] * len(images))
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from typing import Any


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    end = len(text)
    for s in stop:
        at = text.find(s)
        if s and 0 <= at < end:
            end = at
    return text[:end]


#: ``model.generate`` arguments that are not generation settings but are safe to pass from code
_GENERATE_ARGUMENTS = frozenset({"logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn",
                                 "streamer", "assistant_model", "negative_prompt_ids",
                                 "negative_prompt_attention_mask"})
#: settings that would run code from a folder, or return something other than one text per request
_REFUSED = {
    "custom_generate": "runs generate.py from a folder or the hub",
    "trust_remote_code": "runs code from a folder or the hub",
    "return_dict_in_generate": "changes what generate returns",
    "num_return_sequences": "returns several answers per request",
}


def check_generate_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Refuse ``model.generate`` settings that run code or break one answer per request, and
    misspelt ones (a recipe's ``temprature`` fails here, not after the model is loaded)."""
    from transformers import GenerationConfig

    for key in kwargs:
        if key in _REFUSED:
            raise ValueError(f"generation setting {key!r} is not allowed: it {_REFUSED[key]}")
    known = set(GenerationConfig().to_dict()) | _GENERATE_ARGUMENTS
    unknown = sorted(k for k in kwargs if k not in known or k.startswith("_"))
    if unknown:
        hints = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
        said = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise ValueError(f"unknown generation setting {said}")


def length_buckets(lengths: Sequence[Any], batch_size: int) -> list[list[int]]:
    """Split request indices into batches of similar length (stable, so ties keep their order).

    ``lengths`` are sort keys: token counts, or tuples such as ``(tokens, pixels)``.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class Generator:
    """Answer ``prompts`` about ``images`` with one model, in batches.

    ``model`` is a model folder (anything ``vila2.models.checkpoint.load`` opens, PEFT adapters included),
    loaded onto ``device`` (by default this process's accelerator, else the CPU), or an already
    loaded ``(model, processor)`` pair, used where it is unless ``device``/``dtype`` (a
    ``torch.dtype`` here) are given.
    Decoding is greedy unless ``do_sample``; ``temperature`` and ``top_p`` apply only when
    sampling. Each answer is cut at the first of the ``stop`` strings (generation also stops
    there). ``generate_kwargs`` go to ``model.generate`` (``repetition_penalty``,
    ``suppress_tokens``... any ``GenerationConfig`` field); unknown names, and settings that
    would run code (``custom_generate``, ``trust_remote_code``), are refused.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | tuple[Any, Any],
        *,
        batch_size: int = 32,
        max_new_tokens: int = 128,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        dtype: Any = None,
        device: Any = None,
        **generate_kwargs: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        check_generate_kwargs(generate_kwargs)
        if isinstance(model, (str, os.PathLike)):
            from vila2.distributed import process_state
            from vila2.models.checkpoint import load

            # a LoRA adapter folded into its base weights generates as fast as a plain model;
            # by default each process takes its own accelerator (or the CPU)
            self.model, self.processor = load(
                model, dtype=dtype, device=process_state().device if device is None else device, merge=True
            )
        else:
            self.model, self.processor = model
            if device is not None or dtype is not None:
                self.model = self.model.to(device=device, dtype=dtype)
        self.model.eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        if self.tokenizer.pad_token is None:
            # batching needs a pad token; the mask hides it, so EOS serves
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
        # decoder-only models continue from the right edge, so padding goes on the left
        self.padding_side = "right" if self.encoder_decoder else "left"
        self.batch_size = batch_size
        self.stop = tuple(s for s in stop if s)
        self.generate_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "use_cache": True,
            "pad_token_id": self.tokenizer.pad_token_id,
            **generate_kwargs,
        }
        if do_sample:
            self.generate_kwargs.update(temperature=temperature, top_p=top_p)
        if self.stop:
            self.generate_kwargs.update(stop_strings=list(self.stop), tokenizer=self.tokenizer)
        self._chat: dict[str, tuple[str, int]] = {}

    def _chat_text(self, prompt: str) -> tuple[str, int]:
        """The templated text for one prompt and its token count (cached: prompts repeat)."""
        if prompt not in self._chat:
            from vila2.models.checkpoint import chat_prompt

            text = chat_prompt(self.processor, prompt)
            self._chat[prompt] = (text, len(self.tokenizer(text, add_special_tokens=False)["input_ids"]))
        return self._chat[prompt]

    def __call__(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        """One answer per ``(image, prompt)`` pair, in order."""
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        import torch

        chats = [self._chat_text(p) for p in prompts]
        # image size joins the key: processors that tile by resolution emit more tokens for larger images
        lengths = [(n, _pixels(img)) for (_, n), img in zip(chats, images, strict=True)]
        answers: list[str] = [""] * len(images)
        with torch.inference_mode():
            for batch in length_buckets(lengths, self.batch_size):
                texts = self._generate([images[i] for i in batch], [chats[i][0] for i in batch])
                for i, text in zip(batch, texts, strict=True):
                    answers[i] = text
        return answers

    def _generate(self, images: list[Any], texts: list[str]) -> list[str]:
        # one image per prompt, as a nested list: processors that read images per sample (Mllama's
        # cross-attention masks) require it, and every other processor accepts it
        inputs = self.processor(
            images=[[image] for image in images], text=texts, return_tensors="pt", padding=True,
            padding_side=self.padding_side,
        )
        inputs = inputs.to(self.model.device)
        pixels = inputs.get("pixel_values")
        if pixels is not None and pixels.is_floating_point():
            inputs["pixel_values"] = pixels.to(self.model.dtype)
        out = self.model.generate(**inputs, **self.generate_kwargs)
        if not self.encoder_decoder:  # decoder-only output repeats the prompt first
            out = out[:, inputs["input_ids"].shape[1] :]
        decoded = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [cut_at_stop(text, self.stop).strip() for text in decoded]


def _pixels(image: Any) -> int:
    size = getattr(image, "size", None)
    return size[0] * size[1] if isinstance(size, tuple) and len(size) == 2 else 0


__all__ = ["Generator", "cut_at_stop", "length_buckets"]
