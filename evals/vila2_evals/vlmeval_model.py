"""A VLMEvalKit ``BaseModel`` for vila2 model folders. Imported only in the VLMEvalKit child
process (:mod:`vila2_evals.vlmeval_worker`): importing ``vlmeval`` turns off TLS verification for
the whole process.
"""

from __future__ import annotations

from typing import Any

from vlmeval.vlm.base import BaseModel

from vila2_evals.answerer import IMAGE, Answerer


class Vila2VLM(BaseModel):
    """Answers VLMEvalKit messages (``[{"type": "image"|"text", "value": ...}]``) in their order:
    each image goes where it stands among the texts."""

    INTERLEAVE = True

    def __init__(self, model: str, *, max_new_tokens: int = 32, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.answerer = Answerer(model, batch_size=1, device=device, dtype=dtype)
        self.max_new_tokens = max_new_tokens

    def generate_inner(self, message: list[dict[str, Any]], dataset: str | None = None) -> str:
        from PIL import Image

        images, parts = [], []
        for item in message:
            if item["type"] == "image":
                with Image.open(item["value"]) as image:
                    images.append(image.convert("RGB"))
                parts.append(IMAGE)
            elif item["type"] == "text":
                parts.append(str(item["value"]))
            else:
                raise ValueError(f"vila2 models take images and text, not {item['type']!r}")
        return self.answerer([(images, "\n".join(parts))], max_new_tokens=self.max_new_tokens)[0]
