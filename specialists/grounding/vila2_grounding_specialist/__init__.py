"""The grounding specialist for vila2: objects with their boxes ``[x0,y0,x1,y1]`` on a 0–999 grid.

Installed, it registers (through the ``vila2`` entry point):

* the ``grounding`` specialist: fine-tuned (LoRA) from the self-augmented model on grounding
  conversations (GRIT-derived style), it recaptions the pretraining images naming each object
  with its box; boxes in its answers are rewritten in the canonical form;
* the ``grounding`` evaluator: accuracy at IoU >= 0.5 on the grounding benchmark.
"""

from __future__ import annotations

from typing import Any

import vila2
from vila2_grounding_specialist.boxes import canonicalise
from vila2_grounding_specialist.evaluator import evaluate
from vila2_grounding_specialist.prompts import LORA, PROMPTS, QUESTIONS
from vila2_grounding_specialist.training_data import DOMAIN, prepare_data

__version__ = "0.1.0"
PIP_NAME = "vila2-grounding-specialist"


@vila2.hookimpl
def register_specialists(register: Any) -> None:
    register(vila2.Specialist(
        name=DOMAIN,
        prepare_data=prepare_data,
        prompts=PROMPTS,
        questions=QUESTIONS,
        description="Objects with their bounding boxes [x0,y0,x1,y1] on a 0–999 grid.",
        lora=LORA,
        evaluator=DOMAIN,
        clean_answer=canonicalise,
        settings={"pip": PIP_NAME},
    ))


@vila2.hookimpl
def register_evaluators(register: Any) -> None:
    register(vila2.Evaluator(
        name=DOMAIN,
        run=evaluate,
        benchmarks=(DOMAIN,),
        backend="builtin",
        description="Grounding accuracy: boxes at IoU >= 0.5, object names by match.",
    ))
