"""The spatial specialist for vila2: relations between objects and to the camera.

Installed, it registers (through the ``vila2`` entry point):

* the ``spatial`` specialist: fine-tuned (LoRA) from the self-augmented model on spatial
  question–answer data, it recaptions the pretraining images "with a focus on spatial relations";
* the ``spatial`` evaluator: accuracy on the spatial benchmark by normalised answer match.
"""

from __future__ import annotations

import vila2
from vila2_spatial_specialist.prompts import LORA, PROMPTS, QUESTIONS
from vila2_spatial_specialist.scoring import score
from vila2_spatial_specialist.training_data import DOMAIN, prepare_data

__version__ = "0.1.0"

KIT = vila2.DomainSpecialist(
    DOMAIN, "Spatial relations between objects and to the camera.", prepare_data, PROMPTS,
    questions=QUESTIONS, lora=LORA, score=score, primary="accuracy",
    max_new_tokens=16,  # answers are a word or two ("left", "top left", "red circle")
    evaluator_description="Spatial VQA accuracy (normalised answer match).",
)
register_specialists, register_evaluators = KIT.hookimpls()
