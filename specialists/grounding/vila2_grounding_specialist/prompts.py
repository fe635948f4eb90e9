"""What the grounding specialist is asked, and with which LoRA settings it is tuned.

``PROMPTS`` are the task-oriented recaption prompts (one drawn per image, docs/METHOD.md). A specialist
answers best the prompt it was tuned on, so this is the wording of the grounding SFT sets (the
embedded world's included); boxes are integers on a 0–999 grid. ``QUESTIONS`` is the pool a
question is drawn from when the recaption is appended to the original caption as a
question–answer turn.
"""

from __future__ import annotations

PROMPTS: tuple[str, ...] = (
    "Describe the objects in the image and specify their location with [xmin,ymin,xmax,ymax].",
)

QUESTIONS: tuple[str, ...] = (
    "Describe the objects in the image and specify their location with [xmin,ymin,xmax,ymax].",
    "Where are the objects in the image? Give each one's location as [xmin,ymin,xmax,ymax].",
    "List the objects in the image with their bounding boxes [xmin,ymin,xmax,ymax].",
)

# Target modules are left to the trainer's per-architecture default.
LORA: dict[str, float | int] = {"r": 16, "alpha": 32, "dropout": 0.05}
