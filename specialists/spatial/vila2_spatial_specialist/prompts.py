"""What the spatial specialist is asked, and with which LoRA settings it is tuned.

``PROMPTS`` are the task-oriented recaption prompts (one drawn per image, docs/METHOD.md). A specialist
answers best the prompt it was tuned on, so this is the wording of the spatial SFT sets (the
embedded world's included). ``QUESTIONS`` is the pool a question is drawn from when the recaption
is appended to the original caption as a question–answer turn.
"""

from __future__ import annotations

PROMPTS: tuple[str, ...] = ("Describe the image in detail, with a focus on spatial relations.",)

QUESTIONS: tuple[str, ...] = (
    "Describe the image in detail, with a focus on spatial relations.",
    "How are the objects in the image arranged relative to each other?",
    "Describe the spatial relations between the objects in the image.",
    "Where is each object in the image, relative to the others?",
)

# Target modules are left to the trainer's per-architecture default.
LORA: dict[str, float | int] = {"r": 16, "alpha": 32, "dropout": 0.05}
