"""A counting specialist for vila2: the template for a new domain specialist.

A specialist is fine-tuned (LoRA by default) from the self-augmented model on its domain's
conversations, then recaptions the pretraining images with its task prompt; its answers are
appended to the original captions as question–answer turns, and the generalist is retrained on
them (VILA² specialist-augment). A domain package is its prompts (``prompts.py``), its scoring
(``scoring.py``), its data (``training_data.py``) and this one registration: the ``counting``
specialist, and the ``counting`` evaluator, which scores the count questions of the embedded
world's VQA benchmark.
"""

from __future__ import annotations

import vila2
from vila2_counting_specialist.prompts import LORA, PROMPTS, QUESTIONS
from vila2_counting_specialist.scoring import score, summarise
from vila2_counting_specialist.training_data import DOMAIN, prepare_data

__version__ = "0.1.0"

KIT = vila2.DomainSpecialist(
    DOMAIN, "Counts the objects in an image.", prepare_data, PROMPTS,
    questions=QUESTIONS, lora=LORA, score=score, summarise=summarise, primary="accuracy",
    max_new_tokens=8,  # a count is a word
    benchmark_folder="vqa",  # the world has no counting benchmark: its VQA asks counts among others
    evaluator_description="Counting accuracy on the count questions of the world's VQA benchmark.",
)
register_specialists, register_evaluators = KIT.hookimpls()
