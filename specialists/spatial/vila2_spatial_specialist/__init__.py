"""The spatial specialist for vila2: relations between objects and to the camera.

Installed, it registers (through the ``vila2`` entry point):

* the ``spatial`` specialist: fine-tuned (LoRA) from the self-augmented model on spatial
  question–answer data, it recaptions the pretraining images "with a focus on spatial relations";
* the ``spatial`` evaluator: accuracy on the spatial benchmark by normalised answer match.
"""

from __future__ import annotations

from typing import Any

import vila2
from vila2_spatial_specialist.evaluator import evaluate
from vila2_spatial_specialist.prompts import LORA, PROMPTS, QUESTIONS
from vila2_spatial_specialist.training_data import DOMAIN, prepare_data

__version__ = "0.1.0"
PIP_NAME = "vila2-spatial-specialist"


@vila2.hookimpl
def register_specialists(register: Any) -> None:
    register(vila2.Specialist(
        name=DOMAIN,
        prepare_data=prepare_data,
        prompts=PROMPTS,
        questions=QUESTIONS,
        description="Spatial relations between objects and to the camera.",
        lora=LORA,
        evaluator=DOMAIN,
        settings={"pip": PIP_NAME},
    ))


@vila2.hookimpl
def register_evaluators(register: Any) -> None:
    register(vila2.Evaluator(
        name=DOMAIN,
        run=evaluate,
        benchmarks=(DOMAIN,),
        backend="builtin",
        description="Spatial VQA accuracy (normalised answer match).",
    ))
