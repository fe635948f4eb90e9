"""A counting specialist for vila2: the template for a new domain specialist.

A specialist is fine-tuned (LoRA by default) from the self-augmented model on its domain's
conversations, then recaptions the pretraining images with its task prompt; its answers are
appended to the original captions as question–answer turns, and the generalist is retrained on
them (VILA² specialist-augment). This package registers one specialist, ``counting``; its
benchmark is the world's general ``vqa``, which asks how many objects an image holds.
"""

from __future__ import annotations

from typing import Any

import vila2
from vila2_counting_specialist.training_data import prepare_data

__version__ = "0.1.0"

# The task prompt it recaptions with. A specialist answers best the prompt it was tuned on: this
# is how the embedded world's SFT set asks for a count.
PROMPTS = ("How many objects are there?",)

# The questions put before its answers when they are appended to a caption as QA turns.
QUESTIONS = (
    "How many objects are there?",
    "How many objects can you see in the image?",
    "Count the objects in the image.",
)


@vila2.hookimpl
def register_specialists(register: Any) -> None:
    register(vila2.Specialist(
        name="counting",
        prepare_data=prepare_data,
        prompts=PROMPTS,
        questions=QUESTIONS,
        description="Counts the objects in an image.",
        lora={"r": 8, "alpha": 16, "dropout": 0.05},
        evaluator="vqa",
        settings={"pip": "vila2-counting-specialist"},
    ))
