"""A vila2 model answering benchmark prompts whose text says where each image goes.

Benchmarks interleave images and text: MMMU's ``"... <image> ... (A) <image>"`` carries one
``<image>`` per image, in order. A request whose single image sits where the chat template puts it
anyway (no marker, or one at the start or end) goes through :class:`vila2.models.generation.Generator`;
any other request is laid out item by item in the model's chat template (text, image, text...),
so each image lands at its own marker. Both paths batch requests of similar length.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

IMAGE = "<image>"

Request = tuple[Sequence[Any], str]


def fits_generator(images: Sequence[Any], prompt: str) -> bool:
    """True when the one image of a request goes where the chat template puts it."""
    if len(images) != 1:
        return False
    count = prompt.count(IMAGE)
    text = prompt.strip()
    return count == 0 or (count == 1 and (text.startswith(IMAGE) or text.endswith(IMAGE)))


def interleaved_messages(images: Sequence[Any], prompt: str) -> list[dict[str, Any]]:
    """One user turn whose content alternates text and image items at the ``<image>`` markers.

    Images beyond the markers are put in front of the text (the LLaVA convention); a prompt with
    more markers than images is an error naming both counts.
    """
    parts = prompt.split(IMAGE)
    markers = len(parts) - 1
    if markers > len(images):
        raise ValueError(f"prompt has {markers} {IMAGE} markers but only {len(images)} images")
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(len(images) - markers)]
    for i, part in enumerate(parts):
        if part.strip():  # text kept verbatim, as lm-eval's hf-multimodal lays it out
            content.append({"type": "text", "text": part})
        if i < markers:
            content.append({"type": "image"})
    return [{"role": "user", "content": content}]


class Answerer:
    """Loads a model folder once; ``answerer(requests, max_new_tokens=, stop=)`` answers
    ``[(images, prompt)]`` greedily, in order.

    ``device`` defaults to the first GPU when there is one; ``batch_size`` bounds each batch.
    """

    def __init__(self, model: str | os.PathLike[str], *, batch_size: int = 8, device: Any = None,
                 dtype: Any = None) -> None:
        from vila2.models.checkpoint import load

        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else None
        self.model, self.processor = load(model, dtype=dtype, device=device, merge=True)
        self.batch_size = batch_size
        self._generators: dict[tuple[int, tuple[str, ...]], Any] = {}

    def generator(self, max_new_tokens: int, stop: Sequence[str]) -> Any:
        """The :class:`vila2.models.generation.Generator` for one set of generation settings (cached)."""
        key = (max_new_tokens, tuple(stop))
        if key not in self._generators:
            from vila2.models.generation import Generator

            self._generators[key] = Generator((self.model, self.processor), batch_size=self.batch_size,
                                              max_new_tokens=max_new_tokens, stop=stop)
        return self._generators[key]

    def __call__(self, requests: Sequence[Request], *, max_new_tokens: int = 64,
                 stop: Sequence[str] = ()) -> list[str]:
        gen = self.generator(max_new_tokens, stop)
        answers: list[str] = [""] * len(requests)
        simple = [i for i, (imgs, text) in enumerate(requests) if fits_generator(imgs, text)]
        if simple:
            got = gen([requests[i][0][0] for i in simple], [requests[i][1] for i in simple])
            for i, text in zip(simple, got, strict=True):
                answers[i] = text
        done = set(simple)
        # requests with and without images cannot share a processor call
        for group in ([i for i in range(len(requests)) if i not in done and requests[i][0]],
                      [i for i in range(len(requests)) if i not in done and not requests[i][0]]):
            for i, text in zip(group, self._interleaved(gen, [requests[i] for i in group]), strict=True):
                answers[i] = text
        return answers

    def _interleaved(self, gen: Any, requests: list[Request]) -> list[str]:
        """Answer requests laid out item by item in the chat template, batched by length."""
        import torch

        from vila2.models.checkpoint import apply_template
        from vila2.models.generation import cut_at_stop, length_buckets

        texts = [apply_template(self.processor, interleaved_messages(imgs, prompt), add_generation_prompt=True)
                 for imgs, prompt in requests]
        answers: list[str] = [""] * len(requests)
        lengths = [(len(text), len(imgs)) for text, (imgs, _) in zip(texts, requests, strict=True)]
        for batch in length_buckets(lengths, self.batch_size):
            images = [list(requests[i][0]) for i in batch]
            inputs = self.processor(images=images if any(images) else None, text=[texts[i] for i in batch],
                                    return_tensors="pt", padding=True, padding_side=gen.padding_side)
            inputs = inputs.to(self.model.device)
            pixels = inputs.get("pixel_values")
            if pixels is not None and pixels.is_floating_point():
                inputs["pixel_values"] = pixels.to(self.model.dtype)
            with torch.inference_mode():
                out = self.model.generate(**inputs, **gen.generate_kwargs)
            if not getattr(self.model.config, "is_encoder_decoder", False):
                out = out[:, inputs["input_ids"].shape[1]:]
            for i, text in zip(batch, gen.tokenizer.batch_decode(out, skip_special_tokens=True), strict=True):
                answers[i] = cut_at_stop(text, gen.stop).strip()
        return answers
