"""What the counting specialist is asked, and with which LoRA settings it is tuned.

``PROMPTS`` are the task-oriented recaption prompts (one drawn per image). A specialist answers best
the prompt it was tuned on, so this is how the embedded world's SFT set asks for a count.
``QUESTIONS`` is the pool a question is drawn from when the recaption is appended to the original
caption as a question–answer turn.
"""

from __future__ import annotations

PROMPTS: tuple[str, ...] = ("How many objects are there?",)

QUESTIONS: tuple[str, ...] = (
    "How many objects are there?",
    "How many objects can you see in the image?",
    "Count the objects in the image.",
)

# Target modules are left to the trainer's per-architecture default.
LORA: dict[str, float | int] = {"r": 8, "alpha": 16, "dropout": 0.05}
