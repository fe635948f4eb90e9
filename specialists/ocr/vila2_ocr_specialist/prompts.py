"""What the OCR specialist is asked, and with which LoRA settings it is tuned.

``PROMPTS`` are the task-oriented recaption prompts (one drawn per image, docs/METHOD.md). A specialist
answers best the prompt it was tuned on, so this is the wording of the OCR SFT sets (the embedded
world's included). ``QUESTIONS`` is the pool a question is drawn from when the recaption is
appended to the original caption as a question–answer turn.
"""

from __future__ import annotations

PROMPTS: tuple[str, ...] = ("Recognize and describe the text in the image.",)

QUESTIONS: tuple[str, ...] = (
    "Recognize and describe the text in the image.",
    "What text appears in the image, and where?",
    "Is there any writing in the image? What does it say?",
)

# Target modules are left to the trainer's per-architecture default.
LORA: dict[str, float | int] = {"r": 16, "alpha": 32, "dropout": 0.05}
