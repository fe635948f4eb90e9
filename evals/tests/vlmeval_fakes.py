"""A VLMEvalKit model for the tests, loaded in the VLMEvalKit child process (``module:Class``).

``KeyVLM(config)`` reads ``config`` (JSON): ``answers`` maps a fragment of each question to the
reply, ``log`` is a JSON-lines file where each call records the image sides it received, in order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image
from vlmeval.vlm.base import BaseModel


class KeyVLM(BaseModel):
    INTERLEAVE = True

    def __init__(self, config: str) -> None:
        super().__init__()
        settings = json.loads(Path(config).read_text(encoding="utf-8"))
        self.answers: dict[str, str] = settings["answers"]
        self.log: str = settings["log"]

    def generate_inner(self, message: list[dict[str, Any]], dataset: str | None = None) -> str:
        text = " ".join(m["value"] for m in message if m["type"] == "text")
        sides = [Image.open(m["value"]).size[0] for m in message if m["type"] == "image"]
        (reply,) = [answer for fragment, answer in self.answers.items() if fragment in text]
        with Path(self.log).open("a", encoding="utf-8") as f:
            f.write(json.dumps({"reply": reply, "sides": sides}) + "\n")
        return reply
