"""The grounding specialist for vila2: objects with their boxes ``[x0,y0,x1,y1]`` on a 0–999 grid.

Installed, it registers (through the ``vila2`` entry point):

* the ``grounding`` specialist: fine-tuned (LoRA) from the self-augmented model on grounding
  conversations (GRIT-derived style), it recaptions the pretraining images naming each object
  with its box; boxes in its answers are rewritten in the canonical form (an answer cut off
  inside a box is cut back to its last full sentence), and an answer with a malformed box (or
  none) is rejected, recorded in its layer, and left out of the final model's
  data;
* the ``grounding`` evaluator: accuracy at IoU >= 0.5 on the grounding benchmark.
"""

from __future__ import annotations

import vila2
from vila2_grounding_specialist.boxes import clean_answer, well_formed
from vila2_grounding_specialist.prompts import LORA, PROMPTS, QUESTIONS
from vila2_grounding_specialist.scoring import score, summarise
from vila2_grounding_specialist.training_data import DOMAIN, prepare_data

__version__ = "0.1.0"

KIT = vila2.DomainSpecialist(
    DOMAIN, "Objects with their bounding boxes [x0,y0,x1,y1] on a 0–999 grid.", prepare_data,
    PROMPTS, questions=QUESTIONS, lora=LORA, clean_answer=clean_answer,
    check_answer=well_formed,
    score=score, summarise=summarise, primary="accuracy",
    max_new_tokens=32,  # "[123,456,789,999]" is about a dozen tokens
    evaluator_description="Grounding accuracy: boxes at IoU >= 0.5, object names by match.",
)
register_specialists, register_evaluators = KIT.hookimpls()
